"""The web app's pure parts: the schedule form over RRULE text, what the pages show of the
store's answers, and the session key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.scheduler.rituals import Couple, Partner
from services.scheduler.web import schedule_form, views
from services.scheduler.web.catalogue import CARDS
from services.scheduler.web.session import session_key


def test_a_weekly_rule_shows_its_time_and_days() -> None:
    rule = schedule_form.view("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=7;BYMINUTE=30")
    assert rule == schedule_form.RuleView("07:30", ("MO", "TU", "WE", "TH", "FR"), True)
    assert schedule_form.describe(rule) == "weekdays"
    daily = schedule_form.view("FREQ=DAILY;BYHOUR=21;BYMINUTE=0")
    assert daily.days == schedule_form.DAYS and schedule_form.describe(daily) == "every day"


def test_a_quarterly_rule_keeps_its_days_and_changes_only_its_time() -> None:
    quarterly = "FREQ=MONTHLY;INTERVAL=3;BYDAY=1SU;BYHOUR=10;BYMINUTE=0"
    assert not schedule_form.view(quarterly).by_days
    edited = schedule_form.edited(quarterly, "09:15", ["MO"])
    assert edited == "FREQ=MONTHLY;INTERVAL=3;BYDAY=1SU;BYHOUR=9;BYMINUTE=15"


def test_days_make_a_weekly_or_daily_rule() -> None:
    daily = "FREQ=DAILY;BYHOUR=21;BYMINUTE=0"
    assert schedule_form.edited(daily, "20:45", ["SA", "SU"]) == (
        "FREQ=WEEKLY;BYHOUR=20;BYMINUTE=45;BYDAY=SA,SU"
    )
    weekly = "FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0"
    assert schedule_form.edited(weekly, "17:00", list(schedule_form.DAYS)) == (
        "FREQ=DAILY;BYHOUR=17;BYMINUTE=0"
    )


@pytest.mark.parametrize(
    ("time", "days", "said"),
    [
        ("9pm", ["MO"], "HH:MM"),
        ("24:00", ["MO"], "HH:MM"),
        ("21:00", [], "at least one day"),
        ("21:00", ["XX"], "at least one day"),
    ],
)
def test_a_bad_form_says_how_to_fix_it(time: str, days: list[str], said: str) -> None:
    with pytest.raises(schedule_form.FormError, match=said):
        schedule_form.edited("FREQ=DAILY;BYHOUR=21;BYMINUTE=0", time, days)


def test_every_card_of_the_catalogue_has_an_editable_default() -> None:
    kinds = {card.kind for card in CARDS}
    assert {"morning_kiss", "evening_checkin", "hug", "date_night", "phone_stack"} <= kinds
    assert {"weekly_questions", "relationship_checkin"} <= kinds
    for card in CARDS:
        rule = schedule_form.view(card.default_rule)
        assert card.why and rule.time
        assert schedule_form.describe(rule) or card.cadence, card.key


def _couple() -> Couple:
    partners = [
        Partner(id="prt_a", name="Sam", timezone="Europe/Berlin", channels=[]),
        Partner(id="prt_b", name="Alex", timezone="America/New_York", channels=[]),
    ]
    return Couple(id="cpl_x", name="S & A", partners=partners, created_at=datetime.now(UTC))


def test_each_partner_sees_the_next_firing_in_their_own_zone() -> None:
    upcoming = [
        {
            "occurrence_id": "rit_x@1",
            "scheduled_for": {"prt_a": "2026-11-27T20:00:00Z", "prt_b": "2026-11-27T20:00:00Z"},
            "planner": "prt_b",
            "wall_time": "2026-11-27T21:00:00",
        }
    ]
    shown = views.next_for_each(_couple(), upcoming)  # type: ignore[arg-type]
    assert [(n["name"], n["when"], n["planner"]) for n in shown] == [
        ("Sam", "Fri 27 Nov, 21:00", "Alex"),
        ("Alex", "Fri 27 Nov, 15:00", "Alex"),
    ]


def test_a_test_nudge_is_settled_once_each_phone_got_it_or_failed() -> None:
    partners: dict[str, dict[str, str]] = {"prt_a": {"status": "delivered", "answer": "done"}}
    nudge = {"occurrence_id": "rit_x@t", "partners": partners}
    status = views.delivery_status(_couple(), [nudge], ["rit_x@t"])
    assert status["partners"][0] == {
        "id": "prt_a",
        "name": "Sam",
        "status": "delivered",
        "answer": "done",
    }
    assert status["partners"][1]["status"] == "pending" and not status["settled"]
    partners["prt_b"] = {"status": "failed"}
    assert views.delivery_status(_couple(), [nudge], ["rit_x@t"])["settled"]
    assert not views.delivery_status(_couple(), [nudge], ["rit_other"])["settled"]


def test_the_session_key_is_derived_not_the_secret_itself() -> None:
    assert session_key("k1") != "k1" and session_key("k1") != session_key("k2")
    assert session_key("k1") == session_key("k1")
