"""Pause until a date, resuming by itself: every track of the couple's rituals is planned
from that date's first minute (in the first partner's zone) instead of from now, so the
firing loop has nothing due until then and carries on from there -- no job to wake up, and
nothing the pause skipped is sent afterwards. The date itself is kept only to show it (and
to plan rituals edited meanwhile from it); it expires a day after it has passed."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.scheduler import planning
from services.scheduler.rituals import Couple, Ritual
from services.scheduler.store import SchedulerStore

LONGEST = timedelta(days=366)  # a pause longer than a year is a typo


def _key(store: SchedulerStore, couple_id: str) -> str:
    return store.k("web", "resume", couple_id)


def resume_instant(couple: Couple, day: date) -> datetime:
    """The first minute of ``day`` in the first partner's zone, as a UTC instant."""
    zone = ZoneInfo(couple.partners[0].timezone)
    return datetime.combine(day, time(0, 0), zone).astimezone(UTC)


async def resume_at(store: SchedulerStore, couple: Couple, now: datetime) -> datetime | None:
    """When the couple's pause ends, if they are paused until a date still to come."""
    raw = await store.redis.get(_key(store, couple.id))
    if not raw:
        return None
    at = resume_instant(couple, date.fromisoformat(raw))
    return at if at > now else None


def plan(couple: Couple, ritual: Ritual, now: datetime, resume: datetime | None) -> planning.Plan:
    """``ritual``'s tracks planned from now, or from the end of a pause until a date;
    nothing while the couple is paused indefinitely."""
    if couple.paused:
        return {}
    return planning.plan(couple, ritual, max(now, resume) if resume else now)


async def pause_until(store: SchedulerStore, couple: Couple, day: date, now: datetime) -> None:
    """Plan every ritual of ``couple`` from ``day`` on. Raises ValueError for a day that is
    not in the future or more than a year away."""
    at = resume_instant(couple, day)
    if at <= now:
        raise ValueError("Pick a day after today: the rituals resume on that morning.")
    if at - now > LONGEST:
        raise ValueError("Pick a day within the next year.")
    expiry = int((at - now).total_seconds()) + 86400
    await store.redis.set(_key(store, couple.id), day.isoformat(), ex=expiry)
    await _replan(store, couple, at)


async def resume_now(store: SchedulerStore, couple: Couple, now: datetime) -> None:
    """End a pause until a date early: every ritual fires next from now."""
    await store.redis.delete(_key(store, couple.id))
    await _replan(store, couple, now)


async def _replan(store: SchedulerStore, couple: Couple, since: datetime) -> None:
    if couple.paused:
        return
    schedule: planning.Plan = {}
    for ritual in await store.list_rituals(couple.id):
        schedule.update(planning.plan(couple, ritual, since))
    await store.reschedule(schedule)
