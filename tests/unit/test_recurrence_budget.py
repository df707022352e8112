"""The recurrence budget: every evaluation of a rule does bounded work, and a rule that needs
more is refused as too costly instead of holding the process for seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler import recurrence
from services.scheduler.recurrence import (
    Schedule,
    ScheduleError,
    cadence,
    slots_after,
    slots_between,
    validate,
)
from tests.support.recurrence import DST_ZONES, assert_well_formed, by_definition

NOW = datetime(2026, 11, 28, tzinfo=UTC)
LONG_AGO = datetime(1900, 1, 1, 9)
TODAY = datetime(2026, 11, 28, 9)


def too_costly(caught: pytest.ExceptionInfo[ScheduleError]) -> bool:
    return caught.value.field == "schedule.rrule" and caught.value.reason.startswith(
        "rule too costly to evaluate"
    )


# Rules dateutil takes seconds over: it walks them a FREQ period at a time from start, and
# through periods that yield nothing (the rule never or rarely matches) up to year 9999.
NEVER_OR_RARELY_MATCHING = [
    "FREQ=DAILY;INTERVAL=2;BYMONTH=1;BYSETPOS=2",  # a day has one time: no second
    "FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYSETPOS=2",
    "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYHOUR=3;BYSETPOS=2",
    "FREQ=DAILY;BYYEARDAY=366;BYMONTHDAY=29;BYMONTH=2;BYDAY=SU;BYSETPOS=-2",
]


@pytest.mark.parametrize("rrule", NEVER_OR_RARELY_MATCHING)
@pytest.mark.parametrize("start", [LONG_AGO, TODAY])
def test_a_rule_that_dateutil_searches_for_long_is_refused_as_too_costly(
    rrule: str, start: datetime
) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate(Schedule("Europe/Berlin", rrule, start), now=NOW)

    assert too_costly(caught), caught.value
    assert "simplify it" in caught.value.reason


# Rules valid from a far-past start that are walked from it (month or year structure, a
# weekly BYSETPOS): finding their next firing is refused rather than walking a century.
WALKED_FROM_A_FAR_PAST_START = [
    "FREQ=MINUTELY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12",
    "FREQ=HOURLY;BYMONTHDAY=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
    "FREQ=DAILY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12;BYHOUR=8,20",
    "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYHOUR=8,12,18,22;BYSETPOS=1,2,3,-1",
    "FREQ=MONTHLY;BYMONTHDAY=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20;BYHOUR=8",
]


@pytest.mark.parametrize("rrule", WALKED_FROM_A_FAR_PAST_START)
def test_slots_of_a_rule_walked_from_a_far_past_start_are_refused_as_too_costly(
    rrule: str,
) -> None:
    schedule = Schedule("Europe/Berlin", rrule, LONG_AGO)

    with pytest.raises(ScheduleError) as after:
        slots_after(schedule, "Europe/Berlin", NOW, 1)
    with pytest.raises(ScheduleError) as between:
        slots_between(schedule, "America/New_York", NOW, NOW + timedelta(days=1))

    assert too_costly(after) and too_costly(between)


def test_cadence_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ScheduleError) as caught:
        cadence(Schedule("UTC", NEVER_OR_RARELY_MATCHING[0], TODAY))
    assert too_costly(caught)

    # Fewer than ten wall times within the budget: the median gap of those found.
    monkeypatch.setattr(recurrence, "BUDGET", 40_000)
    rare = Schedule("UTC", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", datetime(2000, 1, 1))
    assert timedelta(days=365 * 11) < cadence(rare) < timedelta(days=365 * 29)


def test_days_dateutil_examines_without_yielding_count_against_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # February 29th on a Monday: 2044 after 2016, about 10,000 days searched for one match.
    schedule = Schedule("UTC", "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", datetime(2016, 3, 1))
    assert slots_after(schedule, "UTC", NOW, 1)[0].wall_time == datetime(2044, 2, 29)

    monkeypatch.setattr(recurrence, "BUDGET", 5_000)

    with pytest.raises(ScheduleError) as caught:
        slots_after(schedule, "UTC", NOW, 1)
    assert too_costly(caught) and "5000 steps" in caught.value.reason


@pytest.mark.parametrize(
    ("rrule", "start"),
    [
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", LONG_AGO),  # every 28 years or so
        ("FREQ=YEARLY", datetime(1950, 6, 17, 18)),  # an anniversary
        ("FREQ=MONTHLY;BYDAY=1FR,-1SU;BYSETPOS=1", LONG_AGO),
        ("FREQ=YEARLY;BYYEARDAY=1,100,200,300", LONG_AGO),
        ("FREQ=MONTHLY;BYDAY=1FR,-1SU;BYSETPOS=1", datetime(1980, 1, 1, 9)),
        ("FREQ=MONTHLY;INTERVAL=3;BYDAY=1SU;BYHOUR=10;BYMINUTE=0", datetime(1990, 1, 1)),
        ("FREQ=DAILY;BYHOUR=21;BYMINUTE=0", LONG_AGO),
        ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=7;BYMINUTE=30", LONG_AGO),
        ("FREQ=MINUTELY;BYSETPOS=1", LONG_AGO),  # resumed near now: BYSETPOS of a minute
        ("FREQ=MINUTELY;COUNT=100000000", LONG_AGO),  # resumed near now, COUNT lowered
        ("FREQ=HOURLY;BYDAY=MO;BYMINUTE=0,30;COUNT=10000000", LONG_AGO),
    ],
)
def test_real_and_odd_but_cheap_rules_stay_within_the_budget(rrule: str, start: datetime) -> None:
    schedule = Schedule("Europe/Berlin", rrule, start)

    validate(schedule, now=NOW)
    assert 1 <= len(slots_after(schedule, "America/New_York", NOW, 5)) <= 5
    slots_between(schedule, "Europe/Berlin", NOW, NOW + timedelta(days=60))
    assert cadence(schedule) > timedelta(0)


def test_slots_after_gives_fewer_slots_rather_than_more_work_but_at_least_the_first() -> None:
    rare = Schedule("UTC", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", datetime(2000, 1, 1))

    slots = slots_after(rare, "UTC", NOW, 100)

    assert [s.wall_time.year for s in slots[:2]] == [2044, 2072]
    assert 2 <= len(slots) < 100
    assert all(s.wall_time.month == 2 and s.wall_time.day == 29 for s in slots)


def test_the_first_max_slots_between_of_a_minutely_rule_fit_the_budget() -> None:
    minutely = Schedule("Europe/Berlin", "FREQ=MINUTELY;BYDAY=MO,TU,WE", LONG_AGO)

    slots = slots_between(minutely, "Europe/Berlin", NOW, NOW + timedelta(days=60))

    assert len(slots) == recurrence.MAX_SLOTS_BETWEEN


def test_a_count_rule_resumed_near_now_ends_where_walking_it_ends() -> None:
    start = datetime(2026, 1, 1, 9)
    schedule = Schedule("UTC", "FREQ=DAILY;COUNT=400", start)  # the last on 2027-02-04

    assert slots_after(schedule, "UTC", NOW, 1)[0].ordinal == 331
    last = slots_after(schedule, "UTC", NOW, 1000)[-1]
    assert (last.wall_time, last.ordinal) == (datetime(2027, 2, 4, 9), 399)
    assert slots_after(schedule, "UTC", datetime(2027, 2, 5, tzinfo=UTC), 1) == []
    assert slots_after(schedule, "UTC", datetime(2030, 1, 1, tzinfo=UTC), 1) == []


cyclic_counted_or_positioned = st.sampled_from(
    [
        "FREQ=HOURLY;COUNT=500",
        "FREQ=HOURLY;INTERVAL=5;BYMINUTE=10,40;COUNT=90",
        "FREQ=MINUTELY;INTERVAL=45;COUNT=1000",
        "FREQ=DAILY;BYHOUR=2,14;BYMINUTE=30;COUNT=40",
        "FREQ=DAILY;BYHOUR=8,20;BYSETPOS=1",
        "FREQ=DAILY;BYHOUR=1,2,3;BYMINUTE=0,30;BYSETPOS=2,-1;COUNT=120",
        "FREQ=HOURLY;INTERVAL=3;BYDAY=MO,FR;BYMINUTE=0,20,40;BYSETPOS=-1",
        "FREQ=MINUTELY;INTERVAL=50;BYHOUR=2,3;BYSETPOS=1",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=25",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    rrule=cyclic_counted_or_positioned,
    zone=st.sampled_from(DST_ZONES),
    after=st.datetimes(datetime(2020, 1, 1), datetime(2026, 12, 31)).map(
        lambda moment: moment.replace(microsecond=0, tzinfo=UTC)
    ),
    age=st.timedeltas(timedelta(0), timedelta(days=60)),
    minute=st.integers(0, 59),
)
def test_resuming_a_count_or_bysetpos_rule_matches_walking_it_by_definition(
    rrule: str, zone: str, after: datetime, age: timedelta, minute: int
) -> None:
    start = (after.replace(tzinfo=None) - age).replace(minute=minute, second=0)
    schedule = Schedule(zone, rrule, start)
    end = after + timedelta(days=3)

    between = slots_between(schedule, zone, after, end)

    assert between == by_definition(schedule, zone, after, end)
    assert slots_after(schedule, zone, after, len(between)) == between
    assert_well_formed(between, zone)
