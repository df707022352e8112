"""The recurrence domain: DST policy, rule shapes, validation, and properties of the slots."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler.recurrence import (
    MAX_SLOTS_BETWEEN,
    Schedule,
    ScheduleError,
    Slot,
    cadence,
    slots_after,
    slots_between,
    validate,
)
from tests.support.recurrence import DST_ZONES, assert_well_formed, by_definition, local

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def walls(slots: list[Slot]) -> list[datetime]:
    return [slot.wall_time for slot in slots]


def on(day: date, zone: str, schedule: Schedule) -> list[Slot]:
    """The slots firing on the local day ``day``."""
    midnight = datetime.combine(day, datetime.min.time(), ZoneInfo(zone))
    next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(zone))
    return slots_between(schedule, zone, midnight, next_midnight)


# --- DST policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "wall", "fires_at"),
    [
        ("Europe/Berlin", datetime(2025, 3, 30, 2, 30), datetime(2025, 3, 30, 3, 30)),
        ("America/New_York", datetime(2025, 3, 9, 2, 30), datetime(2025, 3, 9, 3, 30)),
        ("Australia/Adelaide", datetime(2025, 10, 5, 2, 30), datetime(2025, 10, 5, 3, 30)),
        ("Australia/Lord_Howe", datetime(2025, 10, 5, 2, 10), datetime(2025, 10, 5, 2, 40)),
        ("Pacific/Chatham", datetime(2025, 9, 28, 2, 50), datetime(2025, 9, 28, 3, 50)),
    ],
)
def test_a_time_in_the_spring_gap_fires_once_shifted_by_the_gap(
    zone: str, wall: datetime, fires_at: datetime
) -> None:
    schedule = Schedule(zone, "FREQ=DAILY", wall - timedelta(days=3))

    [slot] = on(wall.date(), zone, schedule)

    assert (slot.wall_time, local(slot, zone), slot.ordinal) == (wall, fires_at, 3)
    [next_day] = on(wall.date() + timedelta(days=1), zone, schedule)
    assert local(next_day, zone) == wall + timedelta(days=1)


@pytest.mark.parametrize(
    ("zone", "wall", "instant"),
    [
        ("Europe/Berlin", datetime(2025, 10, 26, 2, 30), utc(2025, 10, 26, 0, 30)),
        ("America/New_York", datetime(2025, 11, 2, 1, 30), utc(2025, 11, 2, 5, 30)),
        ("Australia/Adelaide", datetime(2025, 4, 6, 2, 30), utc(2025, 4, 5, 16, 0)),
        ("Australia/Lord_Howe", datetime(2025, 4, 6, 1, 45), utc(2025, 4, 5, 14, 45)),
        ("Pacific/Chatham", datetime(2025, 4, 6, 2, 50), utc(2025, 4, 5, 13, 5)),
    ],
)
def test_a_time_repeated_at_fall_back_fires_once_at_its_first_occurrence(
    zone: str, wall: datetime, instant: datetime
) -> None:
    schedule = Schedule(zone, "FREQ=DAILY", wall - timedelta(days=3))

    [slot] = on(wall.date(), zone, schedule)

    assert (slot.wall_time, slot.instant, slot.ordinal) == (wall, instant, 3)


@pytest.mark.parametrize(
    ("zone", "instant"),
    [("Asia/Kolkata", utc(2025, 3, 30, 2, 0)), ("Asia/Kathmandu", utc(2025, 3, 30, 1, 45))],
)
def test_odd_offset_zones(zone: str, instant: datetime) -> None:
    schedule = Schedule(zone, "FREQ=DAILY", datetime(2025, 3, 1, 7, 30))

    slots = slots_after(schedule, zone, instant - timedelta(seconds=1), 3)

    assert [slot.instant for slot in slots] == [instant + timedelta(days=n) for n in range(3)]
    assert [slot.ordinal for slot in slots] == [29, 30, 31]


@pytest.mark.parametrize(
    ("zone", "start", "utc_hours"),
    [
        ("Europe/Berlin", datetime(2025, 3, 28, 7, 30), [6, 6, 5, 5]),
        ("America/New_York", datetime(2025, 10, 31, 7, 30), [11, 11, 12, 12]),
    ],
)
def test_a_daily_time_keeps_its_local_time_across_a_dst_change(
    zone: str, start: datetime, utc_hours: list[int]
) -> None:
    schedule = Schedule(zone, "FREQ=DAILY;BYHOUR=7;BYMINUTE=30", start)

    slots = slots_after(schedule, zone, NOW, 4)

    assert [local(slot, zone) for slot in slots] == [start + timedelta(days=n) for n in range(4)]
    assert [slot.instant.hour for slot in slots] == utc_hours


def test_across_the_gap_no_two_slots_share_an_instant_and_ordinals_keep_rule_positions() -> None:
    schedule = Schedule("Europe/Berlin", "FREQ=HOURLY;BYMINUTE=0,30", datetime(2025, 3, 30, 1))

    slots = slots_between(schedule, "Europe/Berlin", NOW, utc(2025, 3, 30, 2, 0))

    # 03:00 and 03:30 are where 02:00 and 02:30 fire: those, first in rule order, stay.
    assert [(f"{s.wall_time:%H:%M}", s.ordinal, f"{s.instant:%H:%M}") for s in slots] == [
        ("01:00", 0, "00:00"),
        ("01:30", 1, "00:30"),
        ("02:00", 2, "01:00"),
        ("02:30", 3, "01:30"),
        ("04:00", 6, "02:00"),
    ]


def test_a_real_time_can_fire_before_a_shifted_gap_time_put_earlier_by_the_rule() -> None:
    schedule = Schedule("Europe/Berlin", "FREQ=MINUTELY;INTERVAL=40", datetime(2025, 3, 30, 1, 20))

    slots = slots_after(schedule, "Europe/Berlin", NOW, 5)

    assert [local(s, "Europe/Berlin").strftime("%H:%M") for s in slots] == [
        "01:20",
        "03:00",
        "03:20",
        "03:40",
        "04:00",
    ]
    assert [s.ordinal for s in slots] == [0, 1, 3, 2, 4]
    assert_well_formed(slots, "Europe/Berlin")


def test_an_hourly_rule_does_not_fire_twice_in_the_repeated_hour() -> None:
    schedule = Schedule("America/New_York", "FREQ=HOURLY", datetime(2025, 11, 2, 0))

    slots = slots_after(schedule, "America/New_York", NOW, 4)

    assert [s.instant.hour for s in slots] == [4, 5, 7, 8]
    assert [s.ordinal for s in slots] == [0, 1, 2, 3]


@pytest.mark.parametrize("start", [datetime(2011, 12, 27, 9), datetime(2005, 1, 1, 9)])
def test_a_skipped_day_fires_on_the_next_one_only_once(start: datetime) -> None:
    # Samoa moved across the date line: 2011-12-30 never happened in Apia.
    schedule = Schedule("Pacific/Apia", "FREQ=DAILY", start)

    slots = slots_after(schedule, "Pacific/Apia", utc(2011, 12, 28, 20), 3)

    assert [local(s, "Pacific/Apia").day for s in slots] == [29, 31, 1]
    assert [s.wall_time.day for s in slots] == [29, 30, 1]
    first = (date(2011, 12, 29) - start.date()).days
    assert [s.ordinal for s in slots] == [first, first + 1, first + 3]


# --- rule shapes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rrule", "start", "expected"),
    [
        (
            "FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=20;BYMINUTE=0",
            datetime(2025, 1, 1, 20),
            [date(2025, 1, 2), date(2025, 1, 6), date(2025, 1, 9), date(2025, 1, 13)],
        ),
        (
            "FREQ=MONTHLY;BYDAY=1FR",
            datetime(2025, 1, 1, 19),
            [date(2025, 1, 3), date(2025, 2, 7), date(2025, 3, 7), date(2025, 4, 4)],
        ),
        (
            "FREQ=MONTHLY;BYDAY=-1SU",
            datetime(2025, 1, 1, 19),
            [date(2025, 1, 26), date(2025, 2, 23), date(2025, 3, 30), date(2025, 4, 27)],
        ),
        (
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            datetime(2025, 1, 1, 19),
            [date(2025, 1, 31), date(2025, 2, 28), date(2025, 3, 31), date(2025, 4, 30)],
        ),
        (
            "FREQ=MONTHLY;INTERVAL=3",
            datetime(2025, 1, 15, 19),
            [date(2025, 1, 15), date(2025, 4, 15), date(2025, 7, 15), date(2025, 10, 15)],
        ),
        (
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=14",
            datetime(2025, 1, 1, 19),
            [date(2025, 2, 14), date(2026, 2, 14), date(2027, 2, 14), date(2028, 2, 14)],
        ),
        (
            "FREQ=YEARLY",
            datetime(2024, 2, 29, 19),
            [date(2024, 2, 29), date(2028, 2, 29), date(2032, 2, 29), date(2036, 2, 29)],
        ),
    ],
)
def test_rule_shapes(rrule: str, start: datetime, expected: list[date]) -> None:
    schedule = Schedule("Europe/Berlin", rrule, start)
    validate(schedule, now=NOW)

    slots = slots_after(schedule, "Europe/Berlin", utc(2024, 1, 1), 4)

    assert [s.wall_time.date() for s in slots] == expected
    assert [s.wall_time.time() for s in slots] == [start.time()] * 4
    assert [s.ordinal for s in slots] == [0, 1, 2, 3]


def test_count_ends_the_rule() -> None:
    schedule = Schedule("Europe/Berlin", "FREQ=DAILY;COUNT=3", datetime(2025, 1, 1, 9))

    slots = slots_after(schedule, "Europe/Berlin", NOW, 10)

    assert [s.ordinal for s in slots] == [0, 1, 2]
    assert slots_after(schedule, "Europe/Berlin", slots[-1].instant, 1) == []


@pytest.mark.parametrize(
    ("zone", "until", "last_day"),
    [
        ("Europe/Berlin", "20250105T090000", 5),
        ("Europe/Berlin", "20250105T085959", 4),
        ("Europe/Berlin", "20250105", 5),  # a bare date: the whole local day
        ("Europe/Berlin", "20250105T080000Z", 5),  # 09:00 CET
        ("Europe/Berlin", "20250105T075959Z", 4),
        ("America/New_York", "20250105T140000Z", 5),  # 09:00 EST
        ("America/New_York", "20250105T135959Z", 4),
    ],
)
def test_until_is_inclusive_in_local_or_utc_form(zone: str, until: str, last_day: int) -> None:
    schedule = Schedule(zone, f"FREQ=DAILY;UNTIL={until}", datetime(2025, 1, 1, 9))
    validate(schedule, now=NOW)

    slots = slots_after(schedule, zone, NOW, 10)

    assert [s.wall_time.day for s in slots] == list(range(1, last_day + 1))


def test_a_utc_until_bounds_the_instant_a_gap_time_fires_at() -> None:
    # 01:00Z is 03:00 in Berlin that day; 02:30 fires at 03:30, after it.
    schedule = Schedule(
        "Europe/Berlin", "FREQ=DAILY;UNTIL=20250330T010000Z", datetime(2025, 3, 28, 2, 30)
    )

    assert [s.wall_time.day for s in slots_after(schedule, "Europe/Berlin", NOW, 5)] == [28, 29]


def test_a_utc_until_is_the_same_instant_in_every_partner_zone() -> None:
    schedule = Schedule(
        "Europe/Berlin", "FREQ=DAILY;UNTIL=20250103T120000Z", datetime(2025, 1, 1, 9)
    )

    berlin = slots_after(schedule, "Europe/Berlin", NOW, 10)
    new_york = slots_after(schedule, "America/New_York", NOW, 10)

    assert [s.wall_time.day for s in berlin] == [1, 2, 3]  # 09:00 CET is 08:00Z
    assert [s.wall_time.day for s in new_york] == [1, 2]  # 09:00 EST is 14:00Z


def test_exdates_skip_occurrences_without_renumbering_the_rest() -> None:
    schedule = Schedule(
        "Europe/Berlin",
        "FREQ=DAILY",
        datetime(2025, 1, 1, 9),
        exdates=(datetime(2025, 1, 2, 9), datetime(2025, 1, 4, 10)),
    )

    slots = slots_after(schedule, "Europe/Berlin", NOW, 3)

    assert [(s.wall_time.day, s.ordinal) for s in slots] == [(1, 0), (3, 2), (4, 3)]


def test_local_delivery_evaluates_the_rule_in_each_partners_zone() -> None:
    schedule = Schedule("Europe/Berlin", "FREQ=DAILY", datetime(2025, 6, 1, 7, 30))

    berlin = slots_after(schedule, "Europe/Berlin", NOW, 1)[0]
    tokyo = slots_after(schedule, "Asia/Tokyo", NOW, 1)[0]

    assert berlin.wall_time == tokyo.wall_time == datetime(2025, 6, 1, 7, 30)
    assert (berlin.instant, tokyo.instant) == (utc(2025, 6, 1, 5, 30), utc(2025, 5, 31, 22, 30))


def test_slots_after_is_strictly_after() -> None:
    schedule = Schedule("UTC", "FREQ=DAILY", datetime(2025, 1, 1, 9))

    [slot] = slots_after(schedule, "UTC", utc(2025, 1, 2, 9), 1)

    assert slot.instant == utc(2025, 1, 3, 9)
    assert slots_after(schedule, "UTC", NOW, 0) == []


def test_slots_between_is_open_at_start_closed_at_end_and_capped() -> None:
    daily = Schedule("UTC", "FREQ=DAILY", datetime(2025, 1, 1, 9))
    assert walls(slots_between(daily, "UTC", utc(2025, 1, 2, 9), utc(2025, 1, 4, 9))) == [
        datetime(2025, 1, 3, 9),
        datetime(2025, 1, 4, 9),
    ]

    minutely = Schedule("UTC", "FREQ=MINUTELY", datetime(2025, 1, 1))
    slots = slots_between(minutely, "UTC", NOW, utc(2025, 2, 1))

    assert len(slots) == MAX_SLOTS_BETWEEN
    assert slots[0].instant == utc(2025, 1, 1, 0, 1)


def test_one_off() -> None:
    at = datetime(2025, 6, 1, 20, tzinfo=ZoneInfo("Europe/Berlin"))
    schedule = Schedule("Europe/Berlin", at=at)
    validate(schedule, now=NOW)

    [slot] = slots_after(schedule, "America/New_York", NOW, 5)

    assert slot == Slot(utc(2025, 6, 1, 18), datetime(2025, 6, 1, 14), 0)
    assert slots_after(schedule, "Europe/Berlin", at, 1) == []
    assert slots_between(schedule, "UTC", NOW, at) == [Slot(at, datetime(2025, 6, 1, 18), 0)]
    assert slots_between(schedule, "UTC", at, at + timedelta(days=1)) == []


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        (Schedule("UTC", "FREQ=DAILY", datetime(2025, 1, 1)), timedelta(days=1)),
        (Schedule("UTC", "FREQ=WEEKLY;INTERVAL=2", datetime(2025, 1, 1)), timedelta(days=14)),
        (Schedule("UTC", "FREQ=HOURLY;BYHOUR=9,21", datetime(2025, 1, 1)), timedelta(hours=12)),
        (Schedule("UTC", "FREQ=DAILY;COUNT=1", datetime(2025, 1, 1)), timedelta(days=1)),
        (Schedule("UTC", at=utc(2026, 1, 1)), timedelta(days=1)),
    ],
)
def test_cadence(schedule: Schedule, gap: timedelta) -> None:
    assert cadence(schedule) == gap


def test_cadence_of_a_quarterly_rule() -> None:
    gap = cadence(Schedule("UTC", "FREQ=MONTHLY;INTERVAL=3", datetime(2025, 1, 15)))

    assert timedelta(days=89) <= gap <= timedelta(days=92)


# --- validation ------------------------------------------------------------------------

START = datetime(2025, 1, 1, 9)  # a Wednesday


def recurring(
    rrule: str,
    start: datetime | None = START,
    at: datetime | None = None,
    exdates: tuple[datetime, ...] = (),
) -> Schedule:
    return Schedule("Europe/Berlin", rrule, start, at, exdates)


@pytest.mark.parametrize(
    "schedule",
    [
        recurring("FREQ=DAILY;BYHOUR=21;BYMINUTE=0"),
        recurring("RRULE:FREQ=DAILY;BYHOUR=21;BYMINUTE=0"),
        recurring("rrule:freq=weekly;byday=mo,th;"),
        recurring("FREQ=MONTHLY;BYDAY=1FR,-1SU;BYSETPOS=1"),
        recurring("FREQ=MINUTELY;INTERVAL=1;BYSECOND=0"),
        recurring("FREQ=DAILY;UNTIL=20250301T000000Z"),
        recurring("FREQ=DAILY;COUNT=2", exdates=(START,)),
        recurring("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),
        Schedule("Asia/Kathmandu", at=NOW + timedelta(minutes=1)),
    ],
)
def test_valid_schedules(schedule: Schedule) -> None:
    validate(schedule, now=NOW)


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (Schedule("Europe/Berln", "FREQ=DAILY", START), "schedule.timezone"),
        (Schedule("", "FREQ=DAILY", START), "schedule.timezone"),
        (Schedule("Mars/Olympus_Mons", at=utc(2026, 1, 1)), "schedule.timezone"),
        (recurring("FREQ=DAYLY"), "schedule.rrule"),
        (recurring("FREQ=DAILY;BYHOUR=25"), "schedule.rrule"),
        (recurring("FREQ=DAILY;BYDAY=XX"), "schedule.rrule"),
        (recurring("FREQ=DAILY;NONSENSE=1"), "schedule.rrule"),
        (recurring("FREQ=DAILY;BYHOUR"), "schedule.rrule"),
        (recurring("BYHOUR=9"), "schedule.rrule"),
        (recurring(""), "schedule.rrule"),
        (recurring("FREQ=DAILY;FREQ=WEEKLY"), "schedule.rrule"),
        (recurring("FREQ=SECONDLY"), "schedule.rrule"),
        (recurring("FREQ=MINUTELY;BYSECOND=0,30"), "schedule.rrule"),
        (recurring("FREQ=HOURLY;BYSECOND=0,30"), "schedule.rrule"),
        (recurring("FREQ=MINUTELY;INTERVAL=0"), "schedule.rrule"),
        (recurring("FREQ=DAILY;INTERVAL=100000"), "schedule.rrule"),
        (recurring("FREQ=DAILY;UNTIL=20241231T090000"), "schedule.rrule"),
        (recurring("FREQ=DAILY;UNTIL=20241231T090000Z"), "schedule.rrule"),
        (recurring("FREQ=DAILY;UNTIL=2025-03-01"), "schedule.rrule"),
        (recurring("FREQ=DAILY;UNTIL=20250230"), "schedule.rrule"),
        (recurring("FREQ=DAILY;COUNT=0"), "schedule.rrule"),
        (recurring("FREQ=DAILY;COUNT=3;UNTIL=20250301"), "schedule.rrule"),
        (recurring("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"), "schedule.rrule"),
        (recurring("FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31"), "schedule.rrule"),
        (recurring("FREQ=MONTHLY;BYDAY=6MO"), "schedule.rrule"),
        (recurring("FREQ=WEEKLY;BYDAY=MO;BYSETPOS=2"), "schedule.rrule"),
        (recurring("FREQ=DAILY;INTERVAL=7;BYDAY=TU"), "schedule.rrule"),  # always Wednesdays
        (recurring("FREQ=DAILY;BYDAY=SA;UNTIL=20250104T075959Z"), "schedule.rrule"),
        (recurring("FREQ=HOURLY;INTERVAL=2;BYHOUR=4"), "schedule.rrule"),
        (recurring("FREQ=MINUTELY;INTERVAL=120;BYHOUR=4"), "schedule.rrule"),
        (recurring("FREQ=DAILY;BYMONTH=13"), "schedule.rrule"),
        (recurring("FREQ=DAILY;BYMONTHDAY=0"), "schedule.rrule"),
        (recurring("FREQ=YEARLY;BYEASTER=0"), "schedule.rrule"),
        (recurring("DTSTART:20250101T090000\nRRULE:FREQ=DAILY"), "schedule.rrule"),
        (recurring("DTSTART;TZID=Europe/Berlin:20250101T090000"), "schedule.rrule"),
        (recurring("FREQ=DAILY\nRDATE:20250105T090000"), "schedule.rrule"),
        (recurring("FREQ=DAILY\nEXRULE:FREQ=WEEKLY"), "schedule.rrule"),
        (recurring("FREQ=DAILY", start=None), "schedule.start"),
        (recurring("FREQ=DAILY", start=START.replace(tzinfo=UTC)), "schedule.start"),
        (recurring("FREQ=DAILY", exdates=(START.replace(tzinfo=UTC),)), "schedule.exdates"),
        (recurring("FREQ=DAILY;COUNT=1", exdates=(START,)), "schedule.exdates"),
        (Schedule("UTC"), "schedule.rrule"),
        (recurring("FREQ=DAILY", at=utc(2026, 1, 1)), "schedule.at"),
        (Schedule("UTC", at=datetime(2026, 1, 1)), "schedule.at"),
        (Schedule("UTC", at=NOW - timedelta(seconds=1)), "schedule.at"),
        (Schedule("UTC", at=NOW), "schedule.at"),
        (Schedule("UTC", at=utc(2026, 1, 1), start=START), "schedule.start"),
        (Schedule("UTC", at=utc(2026, 1, 1), exdates=(START,)), "schedule.exdates"),
    ],
)
def test_invalid_schedules_name_the_field_at_fault(schedule: Schedule, field: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate(schedule, now=NOW)

    assert caught.value.field == field
    assert caught.value.reason and field in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_malformed_rrule_error_carries_dateutils_message() -> None:
    with pytest.raises(ScheduleError, match="invalid 'FREQ': DAYLY"):
        validate(recurring("FREQ=DAYLY"), now=NOW)


def test_slot_functions_refuse_an_unknown_partner_zone_naive_bounds_and_no_schedule() -> None:
    schedule = recurring("FREQ=DAILY")

    with pytest.raises(ScheduleError) as caught:
        slots_after(schedule, "Europe/Nowhere", NOW, 1)
    assert caught.value.field == "schedule.timezone"
    with pytest.raises(ValueError, match="aware"):
        slots_between(schedule, "UTC", datetime(2025, 1, 1), utc(2025, 2, 1))
    with pytest.raises(ScheduleError):
        slots_after(Schedule("UTC"), "UTC", NOW, 1)


# --- an old rule ------------------------------------------------------------------------


def test_an_old_daily_rule_is_quick_and_its_ordinals_exact() -> None:
    start = datetime(2022, 1, 1, 21)
    schedule = Schedule("Europe/Berlin", "FREQ=DAILY;BYHOUR=21;BYMINUTE=0", start)
    after = utc(2025, 3, 29, 12)

    timings = []
    for _ in range(5):
        began = time.perf_counter()
        slots = slots_after(schedule, "Europe/Berlin", after, 3)
        timings.append(time.perf_counter() - began)

    assert min(timings) < 0.010
    first = (date(2025, 3, 29) - start.date()).days
    assert [s.ordinal for s in slots] == [first, first + 1, first + 2]
    assert slots == by_definition(schedule, "Europe/Berlin", after, slots[-1].instant)


# --- properties -------------------------------------------------------------------------

zones = st.sampled_from(DST_ZONES)
moments = st.datetimes(datetime(2020, 1, 1), datetime(2026, 12, 31)).map(
    lambda moment: moment.replace(microsecond=0, tzinfo=UTC)
)


@st.composite
def daily_or_weekly(draw: st.DrawFn) -> str:
    """A daily or weekly rule at one minute of one or two hours (gap and fold hours too)."""
    hours = draw(st.lists(st.integers(0, 23), min_size=1, max_size=2, unique=True))
    parts = [
        f"FREQ={draw(st.sampled_from(['DAILY', 'WEEKLY']))}",
        f"INTERVAL={draw(st.integers(1, 3))}",
        f"BYHOUR={','.join(map(str, sorted(hours)))}",
        f"BYMINUTE={draw(st.sampled_from([0, 10, 15, 30, 45]))}",
    ]
    days = draw(st.lists(st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), unique=True))
    if days:
        parts.append(f"BYDAY={','.join(days)}")
    return ";".join(parts)


@settings(max_examples=60, deadline=None)
@given(
    rrule=daily_or_weekly(),
    zone=zones,
    after=moments,
    age=st.timedeltas(timedelta(days=-10), timedelta(days=3 * 365)),
    window=st.timedeltas(timedelta(0), timedelta(days=45)),
    skipped=st.sets(st.integers(0, 30), max_size=3),
)
def test_daily_and_weekly_slots_agree_and_are_well_formed(
    rrule: str,
    zone: str,
    after: datetime,
    age: timedelta,
    window: timedelta,
    skipped: set[int],
) -> None:
    start = (after.replace(tzinfo=None) - age).replace(second=0)
    end = after + window
    unskipped = slots_between(Schedule(zone, rrule, start), zone, after, end)
    exdates = tuple(slot.wall_time for n, slot in enumerate(unskipped) if n in skipped)
    schedule = Schedule(zone, rrule, start, exdates=exdates)

    between = slots_between(schedule, zone, after, end)
    following = slots_after(schedule, zone, after, len(between) + 3)

    assert following[: len(between)] == between
    assert all(slot.instant > end for slot in following[len(between) :])
    assert between == by_definition(schedule, zone, after, end)
    assert between == [slot for slot in unskipped if slot.wall_time not in exdates]
    assert_well_formed(following, zone)
    assert all(a.ordinal < b.ordinal for a, b in pairwise(following))


cyclic_rules = st.sampled_from(
    [
        "FREQ=HOURLY",
        "FREQ=HOURLY;INTERVAL=5;BYMINUTE=10,40",
        "FREQ=HOURLY;INTERVAL=3;BYDAY=MO,FR",
        "FREQ=HOURLY;BYHOUR=1,2,3;BYMINUTE=0,30",
        "FREQ=MINUTELY;INTERVAL=45",
        "FREQ=MINUTELY;INTERVAL=50;BYHOUR=2,3",
        "FREQ=MINUTELY;INTERVAL=20;BYDAY=SU",
        "FREQ=DAILY;INTERVAL=4;BYHOUR=2,14;BYMINUTE=30",
        "FREQ=DAILY;BYHOUR=8,20;BYSETPOS=-1",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE,FR;BYSETPOS=1,-1",
        "FREQ=WEEKLY;INTERVAL=3;WKST=SU;BYDAY=SA,SU",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    rrule=cyclic_rules,
    zone=zones,
    after=moments,
    age=st.timedeltas(timedelta(0), timedelta(days=40)),
    minute=st.integers(0, 59),
)
def test_resuming_a_rule_mid_way_matches_walking_it_by_definition(
    rrule: str, zone: str, after: datetime, age: timedelta, minute: int
) -> None:
    start = (after.replace(tzinfo=None) - age).replace(minute=minute, second=0)
    schedule = Schedule(zone, rrule, start)
    end = after + timedelta(days=2)

    between = slots_between(schedule, zone, after, end)

    assert between == by_definition(schedule, zone, after, end)
    assert slots_after(schedule, zone, after, len(between)) == between
    assert_well_formed(between, zone)
