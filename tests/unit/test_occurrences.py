"""What a firing says: one constructor per reason a ritual fires (scheduler.occurrences)."""

from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler import occurrences, planning, rituals
from services.scheduler.rituals import Channel, Couple, Partner, Ritual, ScheduleSpec
from shared.events import RitualKept, WeeklySummary
from shared.ids import OccurrenceId
from shared.settings import ADMIN_TOKEN_MISSING, SECRET_KEY_MISSING, Settings

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
ALEX = Partner(
    id="prt_a",
    name="Alex",
    timezone="Europe/Berlin",
    channels=[
        Channel(id="chn_ap", kind="push", redacted="ntfy://…"),
        Channel(id="chn_as", kind="sms", redacted="sms://…"),
    ],
)
SAM = Partner(
    id="prt_s",
    name="Sam",
    timezone="America/New_York",
    channels=[Channel(id="chn_ss", kind="sms", redacted="sms://…")],
)
COUPLE = Couple(id="cpl_1", name="Alex & Sam", partners=[ALEX, SAM], created_at=CREATED)


def ritual(kind: str = "evening_checkin", **kw: object) -> Ritual:
    fields: dict[str, object] = {
        "id": f"rit_{kind}",
        "couple_id": COUPLE.id,
        "kind": kind,
        "title": "Ours",
        "schedule": ScheduleSpec(
            rrule="FREQ=DAILY;BYHOUR=21;BYMINUTE=0", start=datetime(2026, 1, 1, 21)
        ),
        "rotation": "alternate",
        "created_at": CREATED,
        **kw,
    }
    return Ritual.model_validate(fields)


def first_slot(r: Ritual, track: rituals.Track, after: datetime) -> rituals.recurrence.Slot:
    slot = rituals.next_slot(COUPLE, r, track, after)
    assert slot is not None
    return slot


def test_a_scheduled_ritual_carries_its_catch_up_and_goals() -> None:
    r = ritual("relationship_checkin")
    (track,) = rituals.tracks(COUPLE, r)
    slot = first_slot(r, track, datetime(2026, 11, 22, tzinfo=UTC))
    due = occurrences.scheduled_due(COUPLE, r, track, slot, catch_up=True, goals=["walk"])
    assert due.occurrence_id == str(OccurrenceId(r.id, slot.instant))
    assert (due.purpose, due.trigger, due.catch_up, due.goals) == (
        "ritual",
        "schedule",
        True,
        ["walk"],
    )
    assert due.scheduled_for == slot.instant and due.wall_time == slot.wall_time
    assert due.planner == COUPLE.partners[slot.ordinal % 2].id
    assert [p.id for p in due.recipients] == ["prt_a", "prt_s"] and due.summary is None
    with pytest.raises(ValueError):
        occurrences.scheduled_due(
            COUPLE,
            r,
            track,
            slot,
            numbers=WeeklySummary(week_start=slot.wall_time.date(), rituals=[]),
        )


def test_a_weekly_summary_carries_its_numbers() -> None:
    r = ritual("weekly_summary")
    (track,) = rituals.tracks(COUPLE, r)
    slot = first_slot(r, track, datetime(2026, 11, 22, tzinfo=UTC))
    numbers = WeeklySummary(
        week_start=slot.wall_time.date(),
        rituals=[RitualKept(ritual_id="rit_k", title="Kiss", kept=5, total=7, streak=3)],
    )
    due = occurrences.scheduled_due(COUPLE, r, track, slot, numbers=numbers)
    assert due.purpose == "summary" and due.summary == numbers and due.goals == []
    with pytest.raises(ValueError):
        occurrences.scheduled_due(COUPLE, r, track, slot, goals=["walk"])


def test_a_local_ritual_fires_per_partner() -> None:
    r = ritual(delivery="local")
    alex, sam = rituals.tracks(COUPLE, r)
    assert (alex.id, sam.id) == ("rit_evening_checkin/prt_a", "rit_evening_checkin/prt_s")
    assert rituals.ritual_of_track(sam.id) == r.id == rituals.ritual_of_track(r.id)
    slot = first_slot(r, sam, datetime(2026, 11, 22, tzinfo=UTC))
    due = occurrences.scheduled_due(COUPLE, r, sam, slot)
    assert due.occurrence_id == str(OccurrenceId(r.id, slot.instant, "prt_s"))
    assert [p.id for p in due.recipients] == ["prt_s"] and len(due.partners) == 2


def test_a_manual_trigger_is_its_own_second_with_the_next_firings_turn() -> None:
    r = ritual()
    (track,) = rituals.tracks(COUPLE, r)
    now = datetime(2026, 11, 22, 12, 0, 5, 999_999, tzinfo=UTC)
    upcoming = first_slot(r, track, now)
    due = occurrences.manual_due(COUPLE, r, track, now, "0badcafe")
    assert due.trigger == "manual" and due.purpose == "ritual"
    assert due.scheduled_for == now.replace(microsecond=0) and due.ordinal == upcoming.ordinal
    assert due.occurrence_id == "rit_evening_checkin@20261122T120005Z~manual.0badcafe"
    assert due.wall_time == datetime(2026, 11, 22, 13, 0, 5)  # Berlin
    # the answer finds the same slot from the id alone
    ref = OccurrenceId.parse(due.occurrence_id)
    assert rituals.slot_at(COUPLE, r, track, ref.instant).ordinal == due.ordinal
    # and a manual trigger on a weekly summary is a summary (without numbers)
    summary = ritual("weekly_summary")
    (summary_track,) = rituals.tracks(COUPLE, summary)
    assert occurrences.manual_due(COUPLE, summary, summary_track, now, "0badcafe").purpose == (
        "summary"
    )


def test_two_manual_triggers_in_one_second_are_two_occurrences() -> None:
    r = ritual(delivery="local")
    now = datetime(2026, 11, 22, 12, 0, 5, tzinfo=UTC)
    first = planning.manual_trigger(COUPLE, r, now)
    second = planning.manual_trigger(COUPLE, r, now)
    assert len(first) == len(second) == 2  # one per partner's track
    assert not {e.id for e in first} & {e.id for e in second}
    for event in first:  # each names its own partner, its second and the trigger's nonce
        ref = OccurrenceId.parse(event.id)
        assert ref.manual is not None and ref.instant == now and ref.derivation is None
    # the tracks of one trigger share its nonce
    assert len({OccurrenceId.parse(e.id).manual for e in first}) == 1


def test_a_scheduled_instant_belongs_to_its_slot() -> None:
    r = ritual()
    (track,) = rituals.tracks(COUPLE, r)
    slot = first_slot(r, track, datetime(2026, 11, 22, tzinfo=UTC))
    assert rituals.slot_at(COUPLE, r, track, slot.instant) == slot


def test_a_snooze_refires_for_one_partner_under_its_own_id() -> None:
    r = ritual()
    (track,) = rituals.tracks(COUPLE, r)
    slot = first_slot(r, track, datetime(2026, 11, 22, tzinfo=UTC))
    origin = OccurrenceId(r.id, slot.instant)
    at = slot.instant + timedelta(minutes=15)
    due = occurrences.snooze_due(COUPLE, r, slot, origin, SAM, at)
    assert due.occurrence_id == f"{origin}/prt_s~snooze"
    assert due.origin_occurrence_id == str(origin) and due.trigger == "snooze"
    assert due.scheduled_for == at and due.wall_time == slot.wall_time
    assert [p.id for p in due.recipients] == ["prt_s"] and due.purpose == "ritual"


@pytest.mark.parametrize(("sms", "reached"), [(False, ["prt_a"]), (True, ["prt_a", "prt_s"])])
def test_a_celebration_skips_sms_unless_asked(sms: bool, reached: list[str]) -> None:
    r = ritual(celebrate=True, celebrate_sms=sms)
    (track,) = rituals.tracks(COUPLE, r)
    slot = first_slot(r, track, datetime(2026, 11, 22, tzinfo=UTC))
    at = slot.instant + timedelta(hours=1)
    due = occurrences.celebration_due(COUPLE, r, slot, at=at, streak=4)
    assert due.occurrence_id == f"{r.id}@{slot.wall_time:%Y%m%dT%H%M}~both"
    assert (due.purpose, due.streak, due.scheduled_for) == ("celebration", 4, at)
    assert [p.id for p in due.recipients] == reached
    assert [c.kind for c in due.recipients[0].channels] == (["push", "sms"] if sms else ["push"])


def test_settings_requirements_say_how_to_meet_them() -> None:
    with pytest.raises(ValueError, match="tandem keygen"):
        Settings(secret_key=None).require_secret_key()
    with pytest.raises(ValueError) as caught:
        Settings(admin_token="").require_admin_token()
    assert str(caught.value) == ADMIN_TOKEN_MISSING
    assert Settings(secret_key="k").require_secret_key() == "k"
    assert SECRET_KEY_MISSING.startswith("TANDEM_SECRET_KEY must be set")
