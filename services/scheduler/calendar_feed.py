"""A couple's rituals as an iCalendar feed (RFC 5545), for phone calendars.

Each firing track of a ritual (see :func:`services.scheduler.rituals.tracks`) is one VEVENT
with its RRULE, its exceptions and its time zone (with the VTIMEZONE a calendar needs to
expand it), so the phone computes the same instants the scheduler fires at:

* a "together" ritual is one event in the schedule's zone (any client shows that instant
  at the right local time);
* a "local" ritual is one event per partner, at that partner's wall-clock time in their own
  zone. The couple's feed carries both (each summary names its partner); a partner's own
  feed (``partner``) only theirs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar

from services.scheduler import recurrence, rituals
from services.scheduler.rituals import Couple, Partner, Ritual

DURATIONS = {"date_night": timedelta(hours=3), "relationship_checkin": timedelta(hours=1)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def feed(
    couple: Couple, ritual_list: list[Ritual], *, now: datetime, partner: Partner | None = None
) -> bytes:
    """The iCalendar document for ``couple``'s rituals: the whole couple's, or with
    ``partner`` what fires for that partner (their "local" tracks, and every "together")."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Tandem//rituals//EN")
    cal.add("version", "2.0")
    whose = "our rituals" if partner is None else f"{partner.name}'s rituals"
    cal.add("x-wr-calname", f"{couple.name}: {whose}")
    for ritual in ritual_list:
        for track in rituals.tracks(couple, ritual):
            if partner is not None and track.partner_id not in (None, partner.id):
                continue
            event = _event(couple, ritual, track, now, named=partner is None)
            if event is not None:
                cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()


def _event(
    couple: Couple, ritual: Ritual, track: rituals.Track, now: datetime, *, named: bool
) -> icalendar.Event | None:
    """The event of one track; a partner's track names the partner in its summary when
    ``named`` (the couple's feed, where both partners' events are side by side)."""
    spec = ritual.schedule
    event = icalendar.Event()
    who = couple.partner(track.partner_id) if track.partner_id else None
    event.add("uid", f"{track.id}@tandem")
    event.add("summary", f"{ritual.title} ({who.name})" if who and named else ritual.title)
    event.add("dtstamp", now.astimezone(UTC))
    duration = DURATIONS.get(ritual.kind, timedelta(minutes=15))
    if spec.at is not None:
        event.add("dtstart", spec.at.astimezone(UTC))
        event.add("duration", duration)
        return event
    schedule = rituals.schedule_of(couple, ritual)
    zone = ZoneInfo(track.zone)
    first = recurrence.slots_after(schedule, track.zone, _EPOCH, 1)
    if not first:
        return None
    # DTSTART is the first instance (RFC 5545 counts DTSTART as one), in the track's zone.
    event.add("dtstart", first[0].wall_time.replace(tzinfo=zone))
    event.add("duration", duration)
    event.add("rrule", icalendar.vRecur.from_ical((spec.rrule or "").removeprefix("RRULE:")))
    for exdate in spec.exdates:
        event.add("exdate", exdate.replace(tzinfo=zone))
    return event
