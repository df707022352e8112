"""The API's request bodies: strict (unknown fields are refused) and bounded."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.events import ChannelKind, DeliveryMode, QuietHoursPolicy, RitualKind, Rotation
from shared.links import Action


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelIn(Body):
    url: str = Field(min_length=3, max_length=2048, description="Any Apprise URL")
    kind: ChannelKind


class QuietHoursIn(Body):
    start: time
    end: time


class PartnerIn(Body):
    name: str = Field(min_length=1, max_length=40)
    timezone: str
    channels: list[ChannelIn] = Field(min_length=1, max_length=5, description="In fallback order")
    quiet_hours: QuietHoursIn | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _known_zone(value)


class CoupleIn(Body):
    name: str = Field(min_length=1, max_length=80)
    partners: list[PartnerIn] = Field(min_length=2, max_length=2, description="Exactly two")


class CouplePatch(Body):
    name: str | None = Field(default=None, min_length=1, max_length=80)
    paused: bool | None = None
    transition_mode: bool | None = None


class ScheduleIn(Body):
    rrule: str | None = Field(default=None, max_length=512)
    timezone: str | None = None
    start: datetime | None = None
    at: AwareDatetime | None = None
    exdates: list[datetime] = Field(default_factory=list, max_length=500)
    grace_seconds: float | None = Field(default=None, ge=0, le=30 * 86400)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _known_zone(value)

    @field_validator("start")
    @classmethod
    def _naive_start(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("start is a local wall-clock time: give it without an offset")
        return value


class RitualIn(Body):
    kind: RitualKind
    title: str | None = Field(default=None, min_length=1, max_length=60)
    schedule: ScheduleIn | None = None
    delivery: DeliveryMode = "together"
    rotation: Rotation | None = None
    deck: str | None = Field(default=None, min_length=1, max_length=64)
    quiet_hours_policy: QuietHoursPolicy = "hold_both"
    celebrate: bool = False
    celebrate_sms: bool = False


class AckIn(Body):
    action: Action
    minutes: int | None = Field(default=None, ge=1, le=240, description="snooze length")
    partner_id: str | None = Field(
        default=None, description="who answers; required unless the occurrence is one partner's"
    )


class GoalIn(Body):
    text: str = Field(min_length=1, max_length=200)
    quarter: str | None = Field(
        default=None, pattern=r"^\d{4}-Q[1-4]$", description="e.g. 2026-Q4; default: this one"
    )


class RitualPatch(Body):
    title: str | None = Field(default=None, min_length=1, max_length=60)
    schedule: ScheduleIn | None = None
    delivery: DeliveryMode | None = None
    rotation: Rotation | None = None
    deck: str | None = Field(default=None, min_length=1, max_length=64)
    quiet_hours_policy: QuietHoursPolicy | None = None
    celebrate: bool | None = None
    celebrate_sms: bool | None = None


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Europe/Berlin')") from None
    return value
