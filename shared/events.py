"""Event contracts on Kafka: one pydantic model per record type.

Every event carries ``event_id`` (unique per publish) and ``schema_version``; every record
about a firing carries ``occurrence_id``, which is deterministic (see ``shared.ids``) and is
what consumers deduplicate on. A consumer that meets a ``schema_version`` it does not know
rejects the record to its dead-letter topic instead of guessing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Literal
from uuid import uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Literal[1] = 1

RitualKind = Literal[
    "morning_kiss",
    "evening_checkin",
    "hug",
    "date_night",
    "phone_stack",
    "weekly_questions",
    "relationship_checkin",
    "custom",
    "weekly_summary",  # the opt-in weekly summary, fired like a ritual of the couple's
]
RITUAL_KINDS: tuple[str, ...] = RitualKind.__args__  # type: ignore[attr-defined]
DeliveryMode = Literal["together", "local"]
ChannelKind = Literal["push", "sms", "email"]
# "hold_both": if one partner of a "together" nudge is in quiet hours, hold both.
QuietHoursPolicy = Literal["hold_both", "per_partner"]
Rotation = Literal["alternate"]
Trigger = Literal["schedule", "manual", "snooze"]
# What a person is waiting for right now (a test nudge, a snooze's re-fire): never queued
# behind a herd of scheduled nudges (see RitualDue.urgent).
URGENT_TRIGGERS: frozenset[str] = frozenset({"manual", "snooze"})
Purpose = Literal["ritual", "celebration", "summary"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Event(Contract):
    event_id: str = Field(default_factory=lambda: uuid4().hex)
    schema_version: Literal[1] = SCHEMA_VERSION
    emitted_at: AwareDatetime = Field(default_factory=utcnow)


class QuietHours(Contract):
    """A daily window, in the partner's own time zone, when nothing may buzz.

    ``start`` after ``end`` means the window crosses midnight (23:00-07:00).
    """

    start: time
    end: time


class ChannelRef(Contract):
    """A partner's channel as events see it: an id and a redacted URL, never the secret.

    The notifier resolves ``id`` to the real (encrypted at rest) URL only to send.
    """

    id: str
    kind: ChannelKind
    redacted: str


class PartnerInfo(Contract):
    id: str
    name: str
    timezone: str


class Recipient(PartnerInfo):
    """A partner this occurrence is for, with what delivery needs to reach them."""

    channels: list[ChannelRef]
    quiet_hours: QuietHours | None = None


class RitualKept(Contract):
    ritual_id: str
    title: str
    kept: int  # occurrences both partners marked done this week
    total: int  # occurrences due this week
    streak: int


class WeeklySummary(Contract):
    """What the opt-in weekly summary reports (names only, never what a partner wrote)."""

    week_start: date
    rituals: list[RitualKept]
    next_date_night: AwareDatetime | None = None
    next_planner: str | None = None  # partner id


class RitualDue(Event):
    """scheduler -> content: a ritual is due for these recipients at ``scheduled_for``.

    ``purpose`` says what kind of nudge it is: the ritual itself, the "you both did it"
    note after both partners marked it done, or the weekly summary. A snoozed occurrence
    fires again under a new id that names its ``origin_occurrence_id``, so it gets the
    same prompt and is delivered as a nudge of its own.
    """

    occurrence_id: str
    couple_id: str
    couple_name: str
    ritual_id: str
    kind: RitualKind
    title: str
    deck: str | None = None
    delivery: DeliveryMode
    scheduled_for: AwareDatetime
    # The wall-clock time the rule produced, in the zone it was evaluated in (the schedule's
    # zone for "together", the partner's for "local"): both partners' "local" occurrences of
    # one slot share it.
    wall_time: datetime
    # Position of this occurrence in the rule since its start (0-based); rotation and
    # progression derive from it, never from a stored toggle.
    ordinal: int = Field(ge=0)
    partners: list[PartnerInfo]
    recipients: list[Recipient]
    planner: str | None = None
    transition_mode: bool = False
    quiet_hours_policy: QuietHoursPolicy = "hold_both"
    catch_up: bool = False
    trigger: Trigger = "schedule"
    purpose: Purpose = "ritual"
    origin_occurrence_id: str | None = None
    # The couple's shared goals from last quarter (relationship check-in): shown where the
    # channel has room (e-mail), only counted on a lock screen.
    goals: list[str] = Field(default_factory=list)
    streak: int = Field(default=0, ge=0)
    summary: WeeklySummary | None = None
    # Put first: published on the urgent topics (shared.topics.lane), which content and
    # the notifier consume apart from the herd's. Left out (a record from before this
    # field), it follows the trigger: a test nudge or a snooze is urgent.
    urgent: bool = False

    @model_validator(mode="before")
    @classmethod
    def _urgent_by_default(cls, data: object) -> object:
        if isinstance(data, dict) and "urgent" not in data:
            return {**data, "urgent": data.get("trigger") in URGENT_TRIGGERS}
        return data


class Prompt(Contract):
    deck: str
    prompt_id: str
    text: str
    level: int | None = None
    simplified: bool = False


class Message(Contract):
    """What one partner reads: ``title`` <= 60 and ``body`` <= 240 chars (a lock screen, an
    SMS); ``long_body`` may say more where the channel has room (e-mail)."""

    partner_id: str
    title: str = Field(max_length=60)
    body: str = Field(max_length=240)
    long_body: str | None = None
    # Signed links for this partner: "done", "snooze", "skip" -> URL (see shared.links).
    actions: dict[str, str] = Field(default_factory=dict)


class NudgeReady(RitualDue):
    """content -> notifier: the occurrence with the prompt chosen and the words per partner."""

    prompt: Prompt
    messages: list[Message]

    def message_for(self, partner_id: str) -> Message:
        return next(m for m in self.messages if m.partner_id == partner_id)


class NudgeDelivered(Event):
    """notifier -> anyone: one partner got one nudge."""

    occurrence_id: str
    couple_id: str
    ritual_id: str
    partner_id: str
    channel_id: str
    channel_kind: ChannelKind
    channel: str  # redacted URL
    attempt: int = Field(ge=1)
    scheduled_for: AwareDatetime
    delivered_at: AwareDatetime
    latency_ms: float
    prompt_id: str | None = None


class DeliveryAttempt(Contract):
    attempt: int
    channel_id: str
    channel: str  # redacted URL
    error: str
    at: AwareDatetime


class NudgeFailed(Event):
    """notifier -> anyone: a nudge could not reach a partner (``final``: no more retries)."""

    occurrence_id: str
    couple_id: str
    ritual_id: str
    partner_id: str
    reason: str
    final: bool
    attempts: list[DeliveryAttempt] = Field(default_factory=list)


class RitualMissed(Event):
    """scheduler -> anyone: occurrences that were due while nothing could fire them, and are
    now too old to be worth a nudge (older than the ritual's grace window)."""

    couple_id: str
    ritual_id: str
    occurrence_ids: list[str]
    scheduled_for: list[AwareDatetime]
    count: int = Field(ge=1)
    detected_at: AwareDatetime = Field(default_factory=utcnow)


class DeadLetter(Event):
    """A record a consumer could not handle, with why; ``tandem dlq replay`` re-drives it."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    payload: str
    reason: str
    service: str
    errors: list[str] = Field(default_factory=list)
