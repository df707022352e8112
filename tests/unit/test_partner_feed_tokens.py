"""A partner's calendar feed token: the couple's feed key, the partner id in the MAC, the
couple's feed generation."""

from __future__ import annotations

from cryptography.fernet import Fernet

from services.scheduler.api.feeds import feed_matches, feed_token, feed_url

A, B = (Fernet.generate_key().decode() for _ in range(2))


def test_a_partners_token_opens_only_their_feed() -> None:
    couple = feed_token(A, "cpl_1", "0")
    sam = feed_token(A, "cpl_1", "0", "prt_sam")
    alex = feed_token(A, "cpl_1", "0", "prt_alex")
    assert len({couple, sam, alex}) == 3
    assert feed_matches(sam, [A], "cpl_1", "0", "prt_sam")
    assert not feed_matches(sam, [A], "cpl_1", "0", "prt_alex")
    assert not feed_matches(sam, [A], "cpl_1", "0")  # not the couple's feed
    assert not feed_matches(couple, [A], "cpl_1", "0", "prt_sam")
    assert not feed_matches(sam, [A], "cpl_2", "0", "prt_sam")


def test_a_partners_token_rotates_with_the_couples_generation_and_keys() -> None:
    sam = feed_token(A, "cpl_1", "0", "prt_sam")
    assert not feed_matches(sam, [A], "cpl_1", "1f2e", "prt_sam")
    assert feed_matches(sam, [B, A], "cpl_1", "0", "prt_sam")  # an old key still accepted
    assert not feed_matches(sam, [B], "cpl_1", "0", "prt_sam")


def test_a_partners_feed_url() -> None:
    url = feed_url("https://t.example", A, "cpl_1", "0", "prt_sam")
    token = feed_token(A, "cpl_1", "0", "prt_sam")
    assert url == f"https://t.example/v1/couples/cpl_1/partners/prt_sam/calendar.ics?feed={token}"
    assert feed_url("https://t.example", A, "cpl_1", "0").endswith(
        f"/v1/couples/cpl_1/calendar.ics?feed={feed_token(A, 'cpl_1', '0')}"
    )
