"""Recurrence checks shared by the recurrence tests: the zones with odd clocks, the shape
every slot list must have, and the DST policy spelled out by walking from the start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from services.scheduler.recurrence import Schedule, Slot

DST_ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "UTC",
]


def local(slot: Slot, zone: str) -> datetime:
    """Where a slot fires on the zone's clock."""
    return slot.instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def assert_well_formed(slots: list[Slot], zone: str) -> None:
    """Instants aware, UTC, strictly increasing; each at its wall time or its gap-shifted one."""
    zi = ZoneInfo(zone)
    for slot in slots:
        assert slot.instant.tzinfo is UTC and slot.wall_time.tzinfo is None
        fired = local(slot, zone)
        if fired != slot.wall_time:
            before = slot.wall_time.replace(tzinfo=zi).utcoffset()
            after = slot.wall_time.replace(tzinfo=zi, fold=1).utcoffset()
            assert before is not None and after is not None
            assert after > before, f"{slot} fires off its wall time outside a gap"
            assert fired == slot.wall_time + (after - before)
    assert all(a.instant < b.instant for a, b in pairwise(slots))


def by_definition(schedule: Schedule, zone: str, after: datetime, end: datetime) -> list[Slot]:
    """The slots in ``(after, end]`` by the DST policy spelled out, walking from start: every
    wall time dateutil yields but the exdates, at its ``fold=0`` instant, the first in rule
    order at each instant."""
    assert schedule.rrule is not None and schedule.start is not None
    zi = ZoneInfo(zone)
    first: dict[datetime, Slot] = {}
    for ordinal, wall in enumerate(rrulestr(schedule.rrule, dtstart=schedule.start)):
        if wall > end.astimezone(zi).replace(tzinfo=None) + timedelta(days=2):
            break
        if wall not in schedule.exdates:
            instant = wall.replace(tzinfo=zi).astimezone(UTC)
            first.setdefault(instant, Slot(instant, wall, ordinal))
    return [first[instant] for instant in sorted(first) if after < instant <= end]
