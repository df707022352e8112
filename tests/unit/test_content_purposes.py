"""What content says beyond the ritual itself: action links, snooze lineage, "you both did
it", the weekly summary and the quarterly goals -- and what it refuses."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.content.choosing import selection_key
from services.content.compose import (
    BODY_MAX,
    TITLE_MAX,
    celebration_nudge,
    compose,
    summary_nudge,
)
from services.content.decks import load_catalog
from services.content.worker import Content
from shared.events import RitualDue, RitualKept, WeeklySummary
from shared.kafka import Poison
from shared.links import ACTIONS, STOP, verify
from tests.support.content import SAM, recipient, ritual_due

CATALOG = load_catalog()
KEY = "test-secret"
GOALS = ["Save for the trip to Lisbon", "One phone-free evening a week", "Call Mum more"]


def due(kind: str = "evening_checkin", **kw: object) -> RitualDue:
    return ritual_due(kind, **{"title": "Evening check-in", "ordinal": 3, **kw})


class NoStore:
    """A store that must not be asked: celebrations and summaries touch no deck."""

    async def pick(self, *args: object, **kw: object) -> object:
        raise AssertionError("deck history touched")


def content(store: object = None, key: str | None = KEY) -> Content:
    return Content(
        CATALOG,
        store or NoStore(),  # type: ignore[arg-type]
        link_key=key,
        public_url="https://tandem.example/",
        clock=lambda: 1_790_000_000.0,
    )


# -- action links ----------------------------------------------------------------------


def test_ritual_messages_carry_each_partners_signed_links() -> None:
    occurrence = due()
    deck = CATALOG.get("evening-highs-and-lows")
    assert deck is not None
    nudge = compose(occurrence, deck, deck.prompts[0], actions=content().actions(occurrence))
    for partner in ("p_alex", "p_sam"):
        message = nudge.message_for(partner)
        assert set(message.actions) == {*ACTIONS, STOP}
        assert len(message.body) <= BODY_MAX and "https://" not in message.body
        for action in ACTIONS:
            url = message.actions[action]
            assert url.startswith("https://tandem.example/a/")
            grant = verify(KEY, url.rsplit("/", 1)[1], now=1_790_000_000.0)
            assert (grant.couple_id, grant.occurrence_id) == ("cpl_1", occurrence.occurrence_id)
            assert (grant.partner_id, grant.action) == (partner, action)
    # one partner's link is not the other's
    assert nudge.message_for("p_alex").actions["done"] != nudge.message_for("p_sam").actions["done"]


def test_no_key_no_links() -> None:
    assert content(key=None).actions(due()) == {}
    deck = CATALOG.get("evening-highs-and-lows")
    assert deck is not None
    nudge = compose(due(), deck, deck.prompts[0])
    assert all(m.actions == {} for m in nudge.messages)


# -- snoozes ---------------------------------------------------------------------------


def test_a_snooze_selects_under_its_origin() -> None:
    original = due()
    snooze = due(
        occurrence_id="rit_1@20261123T200000Z/p_sam~snooze",
        origin_occurrence_id=original.occurrence_id,
        trigger="snooze",
        scheduled_for=datetime(2026, 11, 23, 20, 15, tzinfo=UTC),
        recipients=[recipient(SAM)],
    )
    assert selection_key(snooze) == selection_key(original) == original.occurrence_id
    # local: the snooze keeps the original's wall time, so the couple-day key already holds
    local = due(delivery="local", occurrence_id="rit_1@20261123T063000Z/p_alex")
    local_snooze = local.model_copy(
        update={
            "occurrence_id": "rit_1@20261123T063000Z/p_alex~snooze",
            "origin_occurrence_id": local.occurrence_id,
            "scheduled_for": datetime(2026, 11, 23, 6, 45, tzinfo=UTC),
        }
    )
    assert selection_key(local_snooze) == selection_key(local) == "rit_1@2026-11-23T21:00"


# -- "you both did it" -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("streak", "wall_hour", "expected"),
    [
        (5, 21, "Evening check-in: done together tonight. 5 in a row."),
        (1, 7, "Evening check-in: done together today. A new streak starts here."),
        (0, 12, "Evening check-in: done together today. A new streak starts here."),
    ],
)
def test_celebration(streak: int, wall_hour: int, expected: str) -> None:
    occurrence = due(
        occurrence_id="rit_1@20261123T2100~both",
        purpose="celebration",
        streak=streak,
        wall_time=datetime(2026, 11, 23, wall_hour, 0),
    )
    nudge = celebration_nudge(occurrence)
    assert (nudge.prompt.deck, nudge.prompt.prompt_id) == ("tandem", "celebration")
    assert [m.partner_id for m in nudge.messages] == ["p_alex", "p_sam"]
    for message in nudge.messages:
        assert message.title == "You both did it"
        assert message.body == expected
        assert message.actions == {}  # nothing left to answer
    assert "Alex and Sam" in (nudge.message_for("p_alex").long_body or "")


async def test_celebration_and_summary_never_touch_a_deck() -> None:
    worker = content()
    celebration = await worker.nudge(due(purpose="celebration", streak=3))
    assert celebration.prompt.prompt_id == "celebration"
    summary = await worker.nudge(weekly())
    assert summary.prompt.prompt_id == "weekly-summary"
    assert all(m.actions == {} for m in (*celebration.messages, *summary.messages))


# -- the weekly summary ----------------------------------------------------------------


def weekly(**kw: object) -> RitualDue:
    summary = WeeklySummary(
        week_start=date(2026, 11, 16),
        rituals=[
            RitualKept(ritual_id="rit_k", title="Six-second kiss", kept=5, total=7, streak=12),
            RitualKept(ritual_id="rit_e", title="Evening check-in", kept=3, total=3, streak=3),
            RitualKept(ritual_id="rit_d", title="Date night", kept=1, total=1, streak=1),
        ],
        # 18:30 UTC: 19:30 in Berlin, 13:30 in New York
        next_date_night=datetime(2026, 11, 27, 18, 30, tzinfo=UTC),
        next_planner="p_sam",
    )
    fields: dict[str, object] = dict(
        occurrence_id="rit_w@20261122T180000Z",
        purpose="summary",
        title="Weekly summary",
        summary=summary,
    )
    fields.update(kw)
    return due(str(fields.pop("kind", "weekly_summary")), **fields)


def test_summary_reads_the_week() -> None:
    nudge = summary_nudge(weekly())
    assert (nudge.prompt.deck, nudge.prompt.prompt_id) == ("tandem", "weekly-summary")
    alex, sam = nudge.message_for("p_alex"), nudge.message_for("p_sam")
    assert alex.title == sam.title == "Your week together"
    assert alex.body == (
        "Alex, your week with Sam: 9/11 rituals kept together. "
        "Next date night: Fri 27 Nov, 19:30, Sam plans. "
        "Best streak: Six-second kiss, 12 in a row."
    )
    assert sam.body.startswith("Sam, your week with Alex: 9/11 rituals kept together.")
    assert "Next date night: Fri 27 Nov, 13:30, your turn to plan." in sam.body  # own zone
    for message in (alex, sam):
        assert len(message.body) <= BODY_MAX and len(message.title) <= TITLE_MAX
        long_body = message.long_body or ""
        assert "week of Mon 16 Nov" in long_body
        assert "- Six-second kiss: 5/7 kept, 12 in a row" in long_body
        assert "- Evening check-in: 3/3 kept, 3 in a row" in long_body
        assert "- Date night: 1/1 kept" in long_body


def test_summary_body_drops_whole_lines_rather_than_cut_one() -> None:
    long_title = "A ritual with a rather long name " * 5
    occurrence = weekly()
    assert occurrence.summary is not None
    rituals = [
        r.model_copy(update={"title": long_title.strip()}) for r in occurrence.summary.rituals
    ]
    nudge = summary_nudge(
        weekly(summary=occurrence.summary.model_copy(update={"rituals": rituals}))
    )
    body = nudge.message_for("p_alex").body
    assert len(body) <= BODY_MAX and not body.endswith("…")
    assert "Next date night" in body and "Best streak" not in body


def test_a_quiet_week_and_no_date_night() -> None:
    empty = WeeklySummary(week_start=date(2026, 11, 16), rituals=[])
    message = summary_nudge(weekly(summary=empty)).message_for("p_alex")
    assert message.body == "Alex, a quiet week with Sam: no rituals were due."


@pytest.mark.parametrize(
    "fields",
    [
        {"summary": None},  # a summary without its numbers
        {"summary": None, "purpose": "ritual"},  # the kind alone says it is one
        {"purpose": "celebration"},  # nothing to celebrate in a summary
        {"summary": None, "kind": "custom"},  # purpose "summary" on a deck kind, no summary
    ],
)
async def test_impossible_combinations_are_poison(fields: dict[str, object]) -> None:
    with pytest.raises(Poison) as caught:
        await content().nudge(weekly(**fields))
    assert "rit_w@20261122T180000Z" in str(caught.value)


# -- the quarterly check-in's goals ----------------------------------------------------


def test_goals_are_counted_on_the_lock_screen_and_listed_in_the_email() -> None:
    deck = CATALOG.get("relationship-checkin")
    assert deck is not None
    occurrence = due("relationship_checkin", title="Quarterly check-in", goals=GOALS)
    for message in compose(occurrence, deck, deck.prompts[0]).messages:
        assert "revisit the 3 goals you set last quarter" in message.body
        assert deck.prompts[0].text in message.body and len(message.body) <= BODY_MAX
        assert not any(goal in message.body or goal in message.title for goal in GOALS)
        long_body = message.long_body or ""
        assert all(f"- {goal}" in long_body for goal in GOALS)
    one = compose(due("relationship_checkin", goals=["Call Mum\nmore"]), deck, deck.prompts[0])
    message = one.message_for("p_alex")
    assert "revisit the goal you set last quarter" in message.body
    assert "- Call Mum more" in (message.long_body or "")  # the partners' words on one line
    easy = compose(
        due("relationship_checkin", goals=GOALS, transition_mode=True), deck, deck.prompts[0]
    )
    assert "on your 3 shared goals:" in easy.message_for("p_sam").body


def test_goals_on_other_kinds_are_ignored_and_no_goals_reads_as_before() -> None:
    deck = CATALOG.get("relationship-checkin")
    assert deck is not None
    plain = compose(due("relationship_checkin"), deck, deck.prompts[0]).message_for("p_alex")
    assert plain.body.startswith("Alex, time for your quarterly check-in with Sam. Start here:")
    other = compose(due(goals=GOALS), deck, deck.prompts[0]).message_for("p_alex")
    assert not any(goal in (other.long_body or "") for goal in GOALS)
