"""A couple's rituals as an iCalendar feed (RFC 5545), for phone calendars.

Each ritual is one VEVENT with its RRULE, its exceptions and its time zone (with the
VTIMEZONE a calendar needs to expand it), so the phone computes the same instants the
scheduler fires at. A "local" ritual is shown at the couple's first partner's wall-clock
time, since a shared calendar has one event per ritual.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar

from services.scheduler import recurrence, rituals
from services.scheduler.rituals import Couple, Ritual

DURATIONS = {"date_night": timedelta(hours=3), "relationship_checkin": timedelta(hours=1)}


def feed(couple: Couple, ritual_list: list[Ritual], *, now: datetime) -> bytes:
    """The iCalendar document for ``couple``'s rituals."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Tandem//rituals//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"{couple.name}: our rituals")
    for ritual in ritual_list:
        event = _event(couple, ritual, now)
        if event is not None:
            cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()


def _event(couple: Couple, ritual: Ritual, now: datetime) -> icalendar.Event | None:
    spec = ritual.schedule
    event = icalendar.Event()
    event.add("uid", f"{ritual.id}@tandem")
    event.add("summary", ritual.title)
    event.add("dtstamp", now.astimezone(UTC))
    duration = DURATIONS.get(ritual.kind, timedelta(minutes=15))
    if spec.at is not None:
        event.add("dtstart", spec.at.astimezone(UTC))
        event.add("duration", duration)
        return event
    schedule = rituals.schedule_of(couple, ritual)
    zone_name = rituals.tracks(couple, ritual)[0].zone
    zone = ZoneInfo(zone_name)
    first = recurrence.slots_after(schedule, zone_name, datetime(1970, 1, 1, tzinfo=UTC), 1)
    if not first:
        return None
    # DTSTART is the first instance (RFC 5545 counts DTSTART as one), in the rule's zone.
    event.add("dtstart", first[0].wall_time.replace(tzinfo=zone))
    event.add("duration", duration)
    event.add("rrule", icalendar.vRecur.from_ical((spec.rrule or "").removeprefix("RRULE:")))
    for exdate in spec.exdates:
        event.add("exdate", exdate.replace(tzinfo=zone))
    return event
