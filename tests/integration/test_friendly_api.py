"""The API's friendlier side (issue #13): a schedule without ``start`` starts today in its
zone, a partial schedule keeps the kind's defaults, and every 422 says how to fix it --
over the running scheduler (real Redis, real broker)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.scheduler.api import deps
from services.scheduler.rituals import KIND_DEFAULTS
from tests.support.scheduler import ADMIN, couple_body

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
DAILY_21 = "FREQ=DAILY;BYHOUR=21;BYMINUTE=0"


@contextmanager
def clock(scheduler: Any, local: datetime) -> Iterator[None]:
    """The API's clock fixed at ``local`` (an aware instant) for the block."""
    scheduler.api.dependency_overrides[deps.now] = lambda: local.astimezone(UTC)
    try:
        yield
    finally:
        del scheduler.api.dependency_overrides[deps.now]


async def a_couple(api: Any) -> str:
    made = await api.post("/v1/couples", json=couple_body(), headers=ADMIN)
    assert made.status_code == 201, made.text
    couple_id: str = made.json()["id"]
    return couple_id


def first_firing(ritual: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(min(ritual["next"]["scheduled_for"].values()))


@pytest.mark.parametrize(
    ("hour", "fires"),
    [
        (20, datetime(2030, 3, 4, 21, 0, tzinfo=BERLIN)),
        (22, datetime(2030, 3, 5, 21, 0, tzinfo=BERLIN)),
    ],
)
async def test_a_rule_without_start_starts_today_in_its_zone(infra, running, hour, fires) -> None:
    scheduler, api = running
    couple = await a_couple(api)
    with clock(scheduler, datetime(2030, 3, 4, hour, 0, tzinfo=BERLIN)):
        made = await api.post(
            f"/v1/couples/{couple}/rituals",
            json={"kind": "custom", "schedule": {"rrule": DAILY_21}},
            headers=ADMIN,
        )
    assert made.status_code == 201, made.text
    ritual = made.json()
    assert ritual["schedule"]["rrule"] == DAILY_21
    assert ritual["schedule"]["start"] == "2030-03-04T00:00:00"  # Berlin, the first partner's
    assert first_firing(ritual) == fires
    stored = (await api.get(f"/v1/rituals/{ritual['id']}", headers=ADMIN)).json()
    assert stored["schedule"]["start"] == "2030-03-04T00:00:00"  # stored, not recomputed


async def test_start_is_today_in_the_schedules_own_zone(infra, running) -> None:
    scheduler, api = running
    couple = await a_couple(api)
    # 02:00 on the 5th in Berlin is still the 4th (20:00) in New York: New York's day counts.
    with clock(scheduler, datetime(2030, 3, 5, 2, 0, tzinfo=BERLIN)):
        made = await api.post(
            f"/v1/couples/{couple}/rituals",
            json={
                "kind": "custom",
                "schedule": {"rrule": DAILY_21, "timezone": "America/New_York"},
            },
            headers=ADMIN,
        )
    assert made.status_code == 201, made.text
    ritual = made.json()
    assert ritual["schedule"]["start"] == "2030-03-04T00:00:00"
    assert first_firing(ritual) == datetime(2030, 3, 4, 21, 0, tzinfo=NEW_YORK)


async def test_patching_a_schedule_without_start_starts_it_today(infra, running) -> None:
    scheduler, api = running
    couple = await a_couple(api)
    made = await api.post(f"/v1/couples/{couple}/rituals", json={"kind": "hug"}, headers=ADMIN)
    assert made.status_code == 201, made.text
    with clock(scheduler, datetime(2030, 6, 10, 20, 0, tzinfo=BERLIN)):
        patched = await api.patch(
            f"/v1/rituals/{made.json()['id']}",
            json={"schedule": {"rrule": DAILY_21}},
            headers=ADMIN,
        )
    assert patched.status_code == 200, patched.text
    ritual = patched.json()
    assert ritual["schedule"]["start"] == "2030-06-10T00:00:00"
    assert first_firing(ritual) == datetime(2030, 6, 10, 21, 0, tzinfo=BERLIN)


async def test_a_partial_schedule_keeps_the_kinds_defaults(infra, running) -> None:
    scheduler, api = running
    couple = await a_couple(api)
    url = f"/v1/couples/{couple}/rituals"
    with clock(scheduler, datetime(2030, 3, 4, 12, 0, tzinfo=BERLIN)):
        zoned = await api.post(
            url,
            json={"kind": "evening_checkin", "schedule": {"timezone": "America/New_York"}},
            headers=ADMIN,
        )
        started = await api.post(
            url, json={"kind": "hug", "schedule": {"start": "2030-04-01T00:00:00"}}, headers=ADMIN
        )
        one_off = await api.post(
            url, json={"kind": "hug", "schedule": {"at": "2030-03-05T10:00:00Z"}}, headers=ADMIN
        )
        graced = await api.post(
            url, json={"kind": "date_night", "schedule": {"grace_seconds": 600}}, headers=ADMIN
        )
    assert zoned.status_code == 201, zoned.text
    schedule = zoned.json()["schedule"]
    assert schedule["rrule"] == KIND_DEFAULTS["evening_checkin"].rrule
    assert schedule["timezone"] == "America/New_York"
    assert schedule["start"] == "2030-03-04T00:00:00"
    assert first_firing(zoned.json()) == datetime(2030, 3, 4, 21, 0, tzinfo=NEW_YORK)

    assert started.status_code == 201, started.text
    assert started.json()["schedule"]["rrule"] == KIND_DEFAULTS["hug"].rrule
    assert started.json()["schedule"]["start"] == "2030-04-01T00:00:00"
    assert first_firing(started.json()) == datetime(2030, 4, 1, 18, 30, tzinfo=BERLIN)

    assert one_off.status_code == 201, one_off.text  # a one-off stays one: no rule added
    assert one_off.json()["schedule"]["rrule"] is None
    assert one_off.json()["schedule"]["start"] is None

    assert graced.status_code == 201, graced.text
    assert graced.json()["schedule"]["rrule"] == KIND_DEFAULTS["date_night"].rrule
    assert graced.json()["schedule"]["grace_seconds"] == 600
    assert graced.json()["rotation"] == "alternate"


# (body, loc, the message's beginning or a part of it, type)
BAD: list[tuple[dict[str, Any], list[Any], str, str]] = [
    ({}, ["body", "kind"], "Field required: add `kind`", "missing"),
    (
        {"kind": "hugs"},
        ["body", "kind"],
        "one of: 'morning_kiss', 'evening_checkin'",
        "literal_error",
    ),
    (
        {"kind": "hug", "titel": "x"},
        ["body", "titel"],
        "unknown field `titel`; the fields are: kind, title, schedule",
        "extra_forbidden",
    ),
    (
        {"kind": "hug", "schedule": {"rrul": DAILY_21}},
        ["body", "schedule", "rrul"],
        "unknown field `rrul`; the fields are: rrule, timezone, start, at, exdates",
        "extra_forbidden",
    ),
    (
        {"kind": "hug", "schedule": {"timezone": "Berlin"}},
        ["body", "schedule", "timezone"],
        "use an IANA name such as Europe/Berlin",
        "value_error",
    ),
    (
        {"kind": "hug", "schedule": {"start": "2030-01-01T07:30:00+01:00"}},
        ["body", "schedule", "start"],
        "give it without an offset, e.g. 2026-12-01T07:30:00",
        "value_error",
    ),
    (
        {"kind": "hug", "schedule": {"start": "tomorrow"}},
        ["body", "schedule", "start"],
        "`schedule.start` must be a date and time such as 2026-12-01T07:30:00",
        "datetime_from_date_parsing",
    ),
    (
        {"kind": "hug", "schedule": {"at": "2030-06-01T07:30:00"}},
        ["body", "schedule", "at"],
        "needs a UTC offset, e.g. 2026-12-01T19:00:00Z",
        "timezone_aware",
    ),
    (
        {"kind": "hug", "schedule": {"grace_seconds": "soon"}},
        ["body", "schedule", "grace_seconds"],
        "must be a number",
        "float_parsing",
    ),
    (
        {"kind": "hug", "celebrate": "maybe"},
        ["body", "celebrate"],
        "`celebrate` must be true or false",
        "bool_parsing",
    ),
    (
        {"kind": "hug", "title": "x" * 61},
        ["body", "title"],
        "too long: give at most 60 character(s)",
        "too_long",
    ),
    (
        {"kind": "hug", "schedule": []},
        ["body", "schedule"],
        "must be an object",
        "model_attributes_type",
    ),
    (
        {"kind": "hug", "schedule": {"rrule": "FREQ=DAILY;BYHOUR=25"}},
        ["body", "schedule", "rrule"],
        "malformed RRULE: hour must be in 0..23; write it like FREQ=WEEKLY",
        "value_error",
    ),
    (
        {"kind": "hug", "schedule": {"rrule": "BYHOUR=7"}},
        ["body", "schedule", "rrule"],
        "FREQ is required: begin the rule with FREQ=DAILY",
        "value_error",
    ),
    (
        {"kind": "hug", "schedule": {"rrule": "FREQ=DAILY;COUNT=2;UNTIL=20300101"}},
        ["body", "schedule", "rrule"],
        "COUNT and UNTIL cannot be combined: keep one of them",
        "value_error",
    ),
    (
        {"kind": "hug", "schedule": {"rrule": "FREQ=SECONDLY"}},
        ["body", "schedule", "rrule"],
        "a rule may fire at most once a minute: use FREQ=MINUTELY or slower",
        "value_error",
    ),
    (
        {"kind": "hug", "schedule": {"rrule": "FREQ=DAILY;UNTIL=2030"}},
        ["body", "schedule", "rrule"],
        "e.g. UNTIL=20301231",
        "value_error",
    ),
    (
        {"kind": "hug", "schedule": {"at": "2001-01-01T00:00:00Z"}},
        ["body", "schedule", "at"],
        "at must be in the future: give a later instant",
        "value_error",
    ),
    (
        {"kind": "hug", "schedule": {"at": "2031-01-01T00:00:00Z", "start": "2030-01-01T00:00:00"}},
        ["body", "schedule", "start"],
        "start only applies to a recurring rule: leave `start` out",
        "value_error",
    ),
]


@pytest.mark.parametrize(("body", "loc", "says", "kind"), BAD, ids=[str(b) for b, *_ in BAD])
async def test_each_422_names_the_field_and_says_how_to_fix_it(
    infra, running, body, loc, says, kind
) -> None:
    _, api = running
    couple = await a_couple(api)
    answer = await api.post(f"/v1/couples/{couple}/rituals", json=body, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert any(d["loc"] == loc and says in d["msg"] and d["type"] == kind for d in detail), detail


async def test_a_bad_query_parameter_names_it(infra, running) -> None:
    _, api = running
    couple = await a_couple(api)
    made = await api.post(f"/v1/couples/{couple}/rituals", json={"kind": "hug"}, headers=ADMIN)
    answer = await api.get(f"/v1/rituals/{made.json()['id']}/upcoming?count=0", headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == [
        {
            "loc": ["query", "count"],
            "msg": "`count` must be at least 1",
            "type": "greater_than_equal",
        }
    ]
