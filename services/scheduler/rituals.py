"""The scheduler's domain: couples, partners, rituals, and when a ritual fires.

Pure Python, no I/O. A ritual fires on one or more *tracks*: a "together" ritual has one
track (one instant for both partners, evaluated in the schedule's zone); a "local" ritual
has a track per partner (the same wall-clock time in each partner's own zone). A track's
firings are the slots of :mod:`services.scheduler.recurrence`; what a firing says (its
``ritual.due`` event) is :mod:`services.scheduler.occurrences`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.scheduler import recurrence
from shared.events import (
    ChannelKind,
    ChannelRef,
    DeliveryMode,
    QuietHours,
    QuietHoursPolicy,
    Recipient,
    RitualKind,
    Rotation,
)
from shared.ids import OccurrenceId


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Channel(Model):
    id: str
    kind: ChannelKind
    redacted: str  # the URL with secrets masked; the real one lives encrypted in the vault


class Partner(Model):
    id: str
    name: str
    timezone: str
    channels: list[Channel]
    quiet_hours: QuietHours | None = None

    def recipient(self) -> Recipient:
        return Recipient(
            id=self.id,
            name=self.name,
            timezone=self.timezone,
            channels=[ChannelRef(id=c.id, kind=c.kind, redacted=c.redacted) for c in self.channels],
            quiet_hours=self.quiet_hours,
        )


class Couple(Model):
    id: str
    name: str
    partners: list[Partner] = Field(min_length=2, max_length=2)
    paused: bool = False
    transition_mode: bool = False
    # Paused until this instant (a vacation), resuming by itself: nothing is planned before
    # it, whichever path plans (see planning.plan). Past, it no longer matters.
    resume_at: AwareDatetime | None = None
    created_at: AwareDatetime

    def partner(self, partner_id: str) -> Partner | None:
        return next((p for p in self.partners if p.id == partner_id), None)


class ScheduleSpec(Model):
    """A ritual's schedule as stored: the local rule, never precomputed instants."""

    rrule: str | None = None
    timezone: str | None = None  # None: the first partner's zone
    start: datetime | None = None  # naive local wall-clock DTSTART
    at: AwareDatetime | None = None  # a one-off instead of a rule
    exdates: list[datetime] = Field(default_factory=list)
    grace_seconds: float | None = None  # overrides the cadence-derived catch-up window


class Ritual(Model):
    id: str
    couple_id: str
    kind: RitualKind
    title: str
    schedule: ScheduleSpec
    delivery: DeliveryMode = "together"
    rotation: Rotation | None = None
    deck: str | None = None
    quiet_hours_policy: QuietHoursPolicy = "hold_both"
    # "You both did it" after both partners marked a firing done: opt-in, and not by SMS
    # unless asked (a text message costs money and attention).
    celebrate: bool = False
    celebrate_sms: bool = False
    created_at: AwareDatetime


@dataclass(frozen=True)
class KindDefaults:
    title: str
    rrule: str
    rotation: Rotation | None = None


# What a ritual kind means when a couple names only the kind: the seed's rituals.
KIND_DEFAULTS: dict[str, KindDefaults] = {
    "morning_kiss": KindDefaults(
        "Six-second kiss", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=7;BYMINUTE=30"
    ),
    "evening_checkin": KindDefaults("Evening check-in", "FREQ=DAILY;BYHOUR=21;BYMINUTE=0"),
    "hug": KindDefaults("20-second hug", "FREQ=DAILY;BYHOUR=18;BYMINUTE=30"),
    "date_night": KindDefaults(
        "Date night", "FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0", "alternate"
    ),
    "phone_stack": KindDefaults("Phones down for dinner", "FREQ=DAILY;BYHOUR=19;BYMINUTE=0"),
    "weekly_questions": KindDefaults(
        "Weekly questions", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=19;BYMINUTE=0"
    ),
    "relationship_checkin": KindDefaults(
        "Quarterly relationship check-in", "FREQ=MONTHLY;INTERVAL=3;BYDAY=1SU;BYHOUR=10;BYMINUTE=0"
    ),
    "custom": KindDefaults("Our ritual", "FREQ=DAILY;BYHOUR=20;BYMINUTE=0"),
    "weekly_summary": KindDefaults(
        "Your week together", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=18;BYMINUTE=0"
    ),
}


@dataclass(frozen=True)
class Track:
    """One stream of firings of a ritual: the whole couple, or one partner in "local" mode."""

    id: str
    ritual_id: str
    zone: str
    partner_id: str | None  # None: "together"


def track_id(ritual_id: str, partner_id: str | None) -> str:
    """A track's id: the ritual's ("together"), or ``<ritual>/<partner>`` ("local")."""
    return ritual_id if partner_id is None else f"{ritual_id}/{partner_id}"


def ritual_of_track(track_id: str) -> str:
    """The id of the ritual a track (see :func:`track_id`) belongs to."""
    return track_id.partition("/")[0]


def schedule_zone(couple: Couple, ritual: Ritual) -> str:
    return ritual.schedule.timezone or couple.partners[0].timezone


def tracks(couple: Couple, ritual: Ritual) -> list[Track]:
    """The tracks a ritual fires on (see the module docstring)."""
    if ritual.delivery == "together":
        return [Track(track_id(ritual.id, None), ritual.id, schedule_zone(couple, ritual), None)]
    return [Track(track_id(ritual.id, p.id), ritual.id, p.timezone, p.id) for p in couple.partners]


def schedule_of(couple: Couple, ritual: Ritual) -> recurrence.Schedule:
    spec = ritual.schedule
    return recurrence.Schedule(
        timezone=schedule_zone(couple, ritual),
        rrule=spec.rrule,
        start=spec.start,
        at=spec.at,
        exdates=tuple(spec.exdates),
    )


def next_slot(
    couple: Couple, ritual: Ritual, track: Track, after: datetime
) -> recurrence.Slot | None:
    """The track's first firing strictly after ``after``, or None when the rule has ended."""
    found = recurrence.slots_after(schedule_of(couple, ritual), track.zone, after, 1)
    return found[0] if found else None


def grace(
    couple: Couple, ritual: Ritual, *, fraction: float, minimum: float, maximum: float
) -> timedelta:
    """How late a firing may still be sent: a fraction of the ritual's cadence, so a daily
    ritual tolerates about 2 h and a quarterly one about a week (configurable)."""
    if ritual.schedule.grace_seconds is not None:
        return timedelta(seconds=ritual.schedule.grace_seconds)
    cadence = recurrence.cadence(schedule_of(couple, ritual))
    seconds = cadence.total_seconds() * fraction
    return timedelta(seconds=min(max(seconds, minimum), maximum))


def planner(couple: Couple, ritual: Ritual, ordinal: int) -> str | None:
    """Whose turn it is: derived from the occurrence's position in the rule, never from a
    stored toggle, so a replayed or duplicated occurrence cannot flip the turn twice."""
    if ritual.rotation != "alternate":
        return None
    return couple.partners[ordinal % 2].id


def occurrence_of(track: Track, instant: datetime) -> str:
    """The id of ``track``'s firing at ``instant``."""
    return str(OccurrenceId(track.ritual_id, instant, track.partner_id))


def slot_at(couple: Couple, ritual: Ritual, track: Track, instant: datetime) -> recurrence.Slot:
    """The slot a firing of ``track`` at ``instant`` belongs to: the rule's slot at that
    instant, else a manual trigger's own (its instant, with the ordinal -- and so the
    planner -- of the track's next real firing)."""
    found = next_slot(couple, ritual, track, instant - timedelta(seconds=1))
    if found is not None and found.instant == instant:
        return found
    wall = instant.astimezone(ZoneInfo(track.zone)).replace(tzinfo=None)
    return recurrence.Slot(instant=instant, wall_time=wall, ordinal=found.ordinal if found else 0)


@dataclass(frozen=True)
class Firing:
    """What a claimed track does now: at most one slot to fire (``catch_up``: late, or the
    last of several owed), the stale firings to report as missed, and when the track fires
    next (None: never again). :mod:`services.scheduler.occurrences` says what it sends."""

    slot: recurrence.Slot | None
    catch_up: bool
    missed: list[recurrence.Slot]
    next_instant: datetime | None


def fire(
    couple: Couple,
    ritual: Ritual,
    track: Track,
    due_at: datetime,
    now: datetime,
    grace_window: timedelta,
) -> Firing:
    """Decide what a track that was due at ``due_at`` does at ``now``.

    Every slot from ``due_at`` up to ``now`` is owed. Slots older than the grace window are
    reported as missed; of the rest only the latest fires (at most one catch-up, never a
    burst of stale nudges). The next firing is the first slot after ``now``, so a scheduler
    that was down resumes from the present.
    """
    owed, following = _owed(schedule_of(couple, ritual), track.zone, due_at, now)
    fresh = [s for s in owed if now - s.instant <= grace_window]
    missed = [s for s in owed if now - s.instant > grace_window]
    return Firing(
        fresh[-1] if fresh else None,
        len(owed) > 1 or bool(missed),
        missed,
        following.instant if following else None,
    )


@functools.lru_cache(maxsize=4096)
def _owed(
    schedule: recurrence.Schedule, zone: str, due_at: datetime, now: datetime
) -> tuple[tuple[recurrence.Slot, ...], recurrence.Slot | None]:
    """A track's slots from ``due_at`` up to ``now`` and its first slot after both.

    Cached: a herd is thousands of tracks with the same rule, zone and due instant, claimed
    in batches that share one ``now``, so the RRULE maths runs once per batch and rule
    rather than once per track (it was half the firing loop's time)."""
    owed = recurrence.slots_between(schedule, zone, due_at - timedelta(microseconds=1), now)
    following = recurrence.slots_after(schedule, zone, max(now, due_at), 1)
    return tuple(owed), following[0] if following else None
