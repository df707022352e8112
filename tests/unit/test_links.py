import pytest

from shared.links import Grant, LinkError, action_links, sign, verify

KEY = "x0z4PZk2cOrm9dCcZzZbZxkl7S_JHQq1zcx4Nqo1nsI="


def test_round_trip_and_expiry() -> None:
    grant = Grant("cpl_a", "rit_1@20261122T200000Z", "prt_s", "snooze", 1_000, 15)
    assert verify(KEY, sign(KEY, grant), now=999) == grant
    with pytest.raises(LinkError, match="expired"):
        verify(KEY, sign(KEY, grant), now=1_001)


def test_tampering_and_other_keys_are_refused() -> None:
    token = sign(KEY, Grant("cpl_a", "occ", "prt_s", "done", 10**10))
    other = sign(KEY, Grant("cpl_b", "occ", "prt_s", "done", 10**10))
    forged = other.split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(LinkError, match="signature"):
        verify(KEY, forged)
    with pytest.raises(LinkError, match="signature"):
        verify("another-key", token)
    with pytest.raises(LinkError, match="malformed"):
        verify(KEY, "nonsense")


def test_action_links_cover_done_snooze_skip() -> None:
    links = action_links(KEY, "http://127.0.0.1:8080/", "cpl", "occ", "prt", now=0)
    assert set(links) == {"done", "snooze", "skip", "stop"}
    snooze = verify(KEY, links["snooze"].split("/a/")[1], now=1)
    assert (snooze.action, snooze.minutes) == ("snooze", 15)
