"""Planning: when each of a couple's rituals fires next, and what a caller may see of it.

The API calls these; the instants come from the same :mod:`rituals` functions the firing
loop uses, so what the API promises is what fires.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypedDict
from zoneinfo import ZoneInfo

from services.scheduler import occurrences, recurrence, rituals
from services.scheduler.firing import outgoing_due
from services.scheduler.rituals import Couple, Ritual, ScheduleSpec
from services.scheduler.store import Outgoing, SchedulerStore
from shared.ids import manual_nonce

# An accepted rule must be cheap to evaluate for this long: a rule that dateutil walks from
# its start (one with month or year structure) costs more each year, and a minutely one with
# BYMONTH runs out of the budget within weeks; refuse those now rather than at firing time.
LOOKAHEAD = timedelta(days=5 * 366)
# The schedules the API is asked to accept are evaluated in one thread, one after another:
# each evaluation is bounded by the recurrence budget (at most about 0.15 s of CPU), and
# with a single such thread competing for the GIL the event loop gets it back within a
# switch interval (5 ms) however many costly rules are POSTed at once.
_CHECKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="schedule-check")
# ``next_slot`` finds slots strictly after an instant: look a second before a stored due.
_EPSILON = timedelta(seconds=1)

Plan = dict[str, float | None]  # track id -> next due epoch second (None: never again)


class Upcoming(TypedDict):
    """One firing to come, as the API shows it."""

    occurrence_id: str
    scheduled_for: dict[str, str]  # partner id -> UTC instant ("...Z")
    planner: str | None
    wall_time: str


def track_ids(couple: Couple, ritual: Ritual) -> list[str]:
    """The ids of the tracks ``ritual`` fires on for ``couple``."""
    return [t.id for t in rituals.tracks(couple, ritual)]


def plan(couple: Couple, ritual: Ritual, now: datetime) -> Plan:
    """Each track's first firing strictly after ``now`` -- or after the end of the couple's
    pause until a date (``resume_at``) while that is still to come -- (None once the rule
    has ended)."""
    since = max(now, couple.resume_at) if couple.resume_at else now
    return dict(zip(track_ids(couple, ritual), next_instants(couple, ritual, since), strict=True))


def next_instants(couple: Couple, ritual: Ritual, now: datetime) -> list[float | None]:
    """:func:`plan`'s instants in the order of ``rituals.tracks`` (ignoring ``resume_at``):
    they depend only on :func:`schedule_key` and ``now``, so a caller may reuse them for
    another ritual of the same key (the bulk import does, for couples it creates)."""
    out: list[float | None] = []
    for track in rituals.tracks(couple, ritual):
        slot = rituals.next_slot(couple, ritual, track, now)
        out.append(slot.instant.timestamp() if slot else None)
    return out


def schedule_key(couple: Couple, ritual: Ritual) -> tuple[object, ...]:
    """What :func:`check`'s verdict and :func:`next_instants` depend on besides ``now``: the
    schedule as evaluated and the zone of each track, in order."""
    return (
        rituals.schedule_of(couple, ritual),
        tuple(t.zone for t in rituals.tracks(couple, ritual)),
    )


def default_schedule(kind: str, couple: Couple, now: datetime) -> ScheduleSpec:
    """The schedule of a ritual given only its kind: the kind's rule, in the first partner's
    zone, starting today (local midnight there)."""
    return complete_schedule(kind, couple, ScheduleSpec(timezone=couple.partners[0].timezone), now)


def complete_schedule(
    kind: str, couple: Couple, given: ScheduleSpec, now: datetime
) -> ScheduleSpec:
    """``given`` with what it leaves out filled from ``kind``'s defaults: unless it is a
    one-off (``at``), no ``rrule`` is the kind's rule and no ``start`` is today's local
    midnight in the schedule's zone (its ``timezone``, else the first partner's) -- stored
    explicitly, so the rule's ordinals (and the rotation) never shift. A rule created late in
    the day fires next at its first slot after ``now``: a daily 21:00 rule created at 20:00
    fires at 21:00 today, one created at 22:00 tomorrow."""
    if given.at is not None:
        return given
    zone = given.timezone or couple.partners[0].timezone
    today = now.astimezone(ZoneInfo(zone)).replace(
        hour=0, minute=0, second=0, microsecond=0, tzinfo=None
    )
    return given.model_copy(
        update={
            "rrule": given.rrule if given.rrule is not None else rituals.KIND_DEFAULTS[kind].rrule,
            "start": given.start if given.start is not None else today,
        }
    )


async def check(couple: Couple, ritual: Ritual, now: datetime) -> None:
    """Raise :class:`recurrence.ScheduleError` unless ``ritual``'s schedule can be accepted
    as of ``now``: valid, and each of its tracks' next firing found within
    :data:`recurrence.BUDGET` steps now and :data:`LOOKAHEAD` from now (a rule too costly to
    evaluate is refused as ``schedule.rrule``). Never blocks the event loop."""
    await asyncio.get_running_loop().run_in_executor(_CHECKER, _check, couple, ritual, now)


def _check(couple: Couple, ritual: Ritual, now: datetime) -> None:
    schedule = rituals.schedule_of(couple, ritual)
    recurrence.validate(schedule, now=now)
    recurrence.cadence(schedule)  # what each firing's grace window is made of
    for track in rituals.tracks(couple, ritual):
        for after in (now, now + LOOKAHEAD):
            rituals.next_slot(couple, ritual, track, after)


async def reschedule_couple(store: SchedulerStore, couple: Couple, now: datetime) -> None:
    """Bring every track of ``couple``'s rituals in line with ``couple.paused``: a paused
    couple has nothing scheduled; an active one fires each track next after ``now``."""
    their_rituals = await store.list_rituals(couple.id)
    if couple.paused:
        await store.reschedule({}, [t for r in their_rituals for t in track_ids(couple, r)])
        return
    # Resume continues from now: no burst of what the pause skipped.
    schedule: Plan = {}
    for ritual in their_rituals:
        schedule.update(plan(couple, ritual, now))
    await store.reschedule(schedule)


async def upcoming(
    store: SchedulerStore, couple: Couple, ritual: Ritual, count: int
) -> list[Upcoming]:
    """Exactly what will fire, soonest first, at most ``count``: each track's stored next
    instant, then the rule's slots after it -- the same functions the firing loop calls.
    Nothing for a paused couple."""
    if couple.paused:
        return []
    tracks = rituals.tracks(couple, ritual)
    dues = await store.due_of([t.id for t in tracks])
    found: list[Upcoming] = []
    for track, due in zip(tracks, dues, strict=True):
        if due is not None:
            found += _track_upcoming(couple, ritual, track, due, count)
    found.sort(key=lambda o: min(o["scheduled_for"].values()))
    return found[:count]


def _track_upcoming(
    couple: Couple, ritual: Ritual, track: rituals.Track, due: float, count: int
) -> list[Upcoming]:
    due_at = datetime.fromtimestamp(due, UTC)
    first = rituals.next_slot(couple, ritual, track, due_at.replace(microsecond=0) - _EPSILON)
    if first is None:
        return []
    following = recurrence.slots_after(
        rituals.schedule_of(couple, ritual), track.zone, first.instant, count - 1
    )
    recipients = [p.id for p in couple.partners if track.partner_id in (None, p.id)]
    return [
        Upcoming(
            occurrence_id=rituals.occurrence_of(track, slot.instant),
            scheduled_for={p: slot.instant.isoformat().replace("+00:00", "Z") for p in recipients},
            planner=rituals.planner(couple, ritual, slot.ordinal),
            wall_time=slot.wall_time.isoformat(),
        )
        for slot in [first, *following]
    ]


# The outbox score of a test nudge: the outbox is leased lowest score first, and a herd's
# records wait there scored with their instant, so a trigger scored "now" would be sent
# after all of them; scored 0 it goes out in the publisher's next batch. (Its event is
# ``urgent`` too: content and the notifier put it first -- see shared.events.RitualDue.)
URGENT_VISIBLE_AT = 0.0


def manual_trigger(couple: Couple, ritual: Ritual, now: datetime) -> list[Outgoing]:
    """The ``ritual.due`` events of a "send a test nudge now": one per track, for this
    second, with the planner of the track's next real firing. Each call is a new occurrence
    (one fresh nonce shared by its tracks), so no two triggers are ever deduplicated."""
    nonce = manual_nonce()
    return [
        outgoing_due(occurrences.manual_due(couple, ritual, track, now, nonce))
        for track in rituals.tracks(couple, ritual)
    ]
