"""Pause until a date, resuming by itself: the couple keeps the instant its pause ends
(``Couple.resume_at``, the first minute of that day in the first partner's zone) and
planning (:func:`services.scheduler.planning.plan`) starts every track from there, whichever
path plans -- this page, a ritual changed through the JSON API, a partner's new zone. So the
firing loop has nothing due until then and carries on from there: no job to wake up, and
nothing the pause skipped is sent afterwards."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.scheduler.rituals import Couple

LONGEST = timedelta(days=366)  # a pause longer than a year is a typo


def resume_instant(couple: Couple, day: date) -> datetime:
    """The first minute of ``day`` in the first partner's zone, as a UTC instant."""
    zone = ZoneInfo(couple.partners[0].timezone)
    return datetime.combine(day, time(0, 0), zone).astimezone(UTC)


def resume_at(couple: Couple, now: datetime) -> datetime | None:
    """When the couple's pause ends, if they are paused until a date still to come."""
    at = couple.resume_at
    return at if at is not None and at > now else None


def until(couple: Couple, day: date, now: datetime) -> datetime:
    """The instant a pause until ``day`` ends (the couple's ``resume_at``). Raises
    ValueError for a day that is not in the future or more than a year away."""
    at = resume_instant(couple, day)
    if at <= now:
        raise ValueError("Pick a day after today: the rituals resume on that morning.")
    if at - now > LONGEST:
        raise ValueError("Pick a day within the next year.")
    return at
