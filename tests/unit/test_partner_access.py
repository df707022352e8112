"""Partners' access rules: stop links, codes, who may see what, when a couple may fire."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.scheduler.partners import (
    ChannelRecord,
    ChannelState,
    Membership,
    Status,
    history_for,
    hold_reason,
    status,
    view_for,
)
from services.scheduler.verification import code_digest, code_message, new_code, normalize
from shared.links import (
    Grant,
    LinkError,
    StopGrant,
    sign,
    sign_stop,
    stop_link,
    verify,
    verify_stop,
)

KEY = "k1"
NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_stop_links_verify_and_cannot_pass_for_action_links() -> None:
    url = stop_link(KEY, "https://t.example/", "cpl_1", "prt_a", "chn_1", now=0)
    token = url.removeprefix("https://t.example/s/")
    grant = verify_stop([KEY, "old"], token, now=1)
    assert (grant.couple_id, grant.partner_id, grant.channel_id) == ("cpl_1", "prt_a", "chn_1")
    assert grant.expires > 300 * 86400  # a List-Unsubscribe header lives with its channel
    with pytest.raises(LinkError, match="signature"):
        verify(KEY, token)  # not an action link
    with pytest.raises(LinkError, match="expired"):
        verify_stop(KEY, sign_stop(KEY, StopGrant("c", "p", None, 10)), now=11)
    with pytest.raises(LinkError, match="signature"):
        verify_stop("another", token, now=1)
    action = sign(KEY, Grant("c", "o", "p", "done", 10))
    with pytest.raises(LinkError):
        verify_stop(KEY, action, now=1)


def test_codes_are_six_digits_and_bound_to_their_channel() -> None:
    codes = {new_code() for _ in range(50)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 40
    assert normalize(" 123-456 ") == "123456"
    assert code_digest(KEY, "chn_1", "123 456") == code_digest(KEY, "chn_1", "123456")
    assert code_digest(KEY, "chn_1", "123456") != code_digest(KEY, "chn_2", "123456")
    assert code_digest(KEY, "chn_1", "123456") != code_digest("k2", "chn_1", "123456")
    title, body = code_message("123456", "Sam & Alex")
    assert title and "123 456" in body and "Sam & Alex" in body


def record(partner: str, state: ChannelState) -> ChannelRecord:
    return ChannelRecord(
        id=f"chn_{partner}",
        partner_id=partner,
        kind="push",
        redacted="json://…",
        state=state,
        secret="x",
        created_at=NOW,
    )


def test_a_started_couple_is_active_once_both_joined_and_verified() -> None:
    one = Membership(couple_id="c", joined=["a"])
    two = Membership(couple_id="c", joined=["a", "b"])
    assert status(None, []) is Status.ACTIVE  # an integrator's couple
    assert status(one, [record("a", ChannelState.ACTIVE)]) is Status.WAITING_FOR_PARTNER
    pending = [record("a", ChannelState.ACTIVE), record("b", ChannelState.PENDING)]
    assert status(two, pending) is Status.WAITING_FOR_CHANNELS
    paused = [record("a", ChannelState.ACTIVE), record("b", ChannelState.PAUSED)]
    assert status(two, paused) is Status.ACTIVE
    left = Membership(couple_id="c", joined=["a", "b"], left=["b"], activated=True)
    assert status(left, paused) is Status.LEFT
    assert hold_reason(Status.ACTIVE) is None
    assert "joins" in (hold_reason(Status.WAITING_FOR_PARTNER) or "")
    assert "code" in (hold_reason(Status.WAITING_FOR_CHANNELS) or "")


def test_a_partner_sees_only_their_own_channels() -> None:
    view = {
        "id": "c",
        "partners": [
            {"id": "a", "channels": [{"id": "1"}], "calendar_feed": "fa"},
            {"id": "b", "channels": [{"id": "2"}], "calendar_feed": "fb"},
        ],
    }
    mine = view_for(view, "a")
    assert mine["partners"][0]["channels"] == [{"id": "1"}]
    assert mine["partners"][1]["channels"] == [] and mine["partners"][1]["calendar_feed"] is None
    assert view_for(view, None) is view


def test_a_partner_sees_the_others_answers_but_not_their_channels_in_history() -> None:
    nudges = [
        {
            "occurrence_id": "o",
            "partners": {
                "a": {"status": "delivered", "channel": "ntfy://…/sam", "answer": "done"},
                "b": {"status": "delivered", "channel": "mailto://…", "channel_id": "c"},
            },
        }
    ]
    seen = history_for(nudges, "a")[0]["partners"]
    assert seen["a"]["channel"] == "ntfy://…/sam"
    assert seen["b"] == {"status": "delivered"}
    assert history_for(nudges, None) is nudges
