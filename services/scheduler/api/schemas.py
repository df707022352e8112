"""The API's request bodies: strict (unknown fields are refused) and bounded.

What a body may hold is what the services can use later, so nothing accepted here fails at
firing time: IANA zone names only, naive ``HH:MM`` quiet hours, dates inside
:data:`DATE_WINDOW`, printable names (:data:`PrintableText`), and no ``null`` for a PATCH
field that cannot be empty (omit it to leave it unchanged).
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zoneinfo
from datetime import UTC, datetime, time
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from shared.events import ChannelKind, DeliveryMode, QuietHoursPolicy, RitualKind, Rotation
from shared.ids import id_pattern
from shared.links import Action

# The dates a schedule may name (start, at, exdates) and the years of a goal's quarter:
# anything outside is a typo or a probe, and dates at the calendar's edges (year 1, 9999)
# overflow the recurrence maths. Naive dates are compared as they are, aware ones in UTC.
DATE_WINDOW = (datetime(2000, 1, 1), datetime(2100, 12, 31, 23, 59, 59))

# The most channels one partner may list, whatever TANDEM_MAX_CHANNELS_PER_PARTNER says.
CHANNELS_CEILING = 20

PARTNER_ID = id_pattern("prt")

# Format characters (Unicode Cf) that joined scripts and emoji need, allowed only between
# two visible characters; every other Cf (bidi overrides and isolates, zero-width spaces,
# BOMs, tags) is refused, as are control characters (Cc), surrogates and line separators.
_JOINERS = frozenset({"\u200c", "\u200d"})  # ZWNJ, ZWJ
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _printable(value: str) -> str:
    value = value.strip(" ")
    if not value:
        raise ValueError("must not be blank")
    for i, char in enumerate(value):
        if unicodedata.category(char) not in _REFUSED_CATEGORIES:
            continue
        if char in _JOINERS and 0 < i < len(value) - 1 and _visible(value[i - 1], value[i + 1]):
            continue
        raise ValueError(
            f"must be printable text: {_name(char)} at position {i} is not allowed "
            "(no control, formatting or bidi characters)"
        )
    return value


def _visible(*chars: str) -> bool:
    return all(
        unicodedata.category(c) not in _REFUSED_CATEGORIES and not c.isspace() for c in chars
    )


def _name(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'a control character')})"


# A name or title people read (couple, partners, ritual, goal): trimmed of spaces, not
# blank, without control characters or bidi tricks.
PrintableText = Annotated[str, AfterValidator(_printable)]


@functools.cache
def _zones() -> frozenset[str]:
    # "localtime" and "Factory" are in the tz database but name no place: refused.
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory", "posixrules"})


def _known_zone(value: str) -> str:
    if value not in _zones():
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ValueError(
            f"unknown IANA time zone {shown!r}: use an IANA name such as Europe/Berlin"
            " or America/New_York"
        )
    return value


Zone = Annotated[str, Field(max_length=64), AfterValidator(_known_zone)]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _wall_clock(value: Any) -> time:
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise ValueError("a 24-hour local time as HH:MM (e.g. '23:00'), no seconds or offset")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


# A naive wall-clock time of day, "HH:MM" (the partner's own zone applies).
WallClock = Annotated[
    time,
    BeforeValidator(_wall_clock),
    WithJsonSchema({"type": "string", "pattern": _HHMM.pattern, "examples": ["23:00"]}),
]


def _in_window(value: datetime) -> datetime:
    low, high = DATE_WINDOW
    try:
        plain = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    except OverflowError:  # year 1 or 9999 with an offset
        plain = datetime.min
    if not low <= plain <= high:
        raise ValueError(
            f"must be between {low.date()} and {high.date()}: give a date in that range"
        )
    return value


WindowedDatetime = Annotated[datetime, AfterValidator(_in_window)]
WindowedAwareDatetime = Annotated[AwareDatetime, AfterValidator(_in_window)]


_UNTIL = re.compile(r"UNTIL=(\d{4})", re.IGNORECASE)


def _quarter_in_window(value: str) -> str:
    low, high = DATE_WINDOW
    if not low.year <= int(value[:4]) <= high.year:
        raise ValueError(
            f"the year must be between {low.year} and {high.year}, e.g. {datetime.now(UTC).year}-Q1"
        )
    return value


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null; leave the field out to keep it unchanged")
    return value


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelIn(Body):
    url: str = Field(min_length=3, max_length=2048, description="Any Apprise URL")
    kind: ChannelKind


class QuietHoursIn(Body):
    """A daily window in the partner's own zone; ``start`` after ``end`` crosses midnight."""

    start: WallClock = Field(description="HH:MM, 24-hour, local")
    end: WallClock = Field(description="HH:MM, 24-hour, local")


class PartnerIn(Body):
    name: PrintableText = Field(min_length=1, max_length=40)
    timezone: Zone
    channels: list[ChannelIn] = Field(
        min_length=1, max_length=CHANNELS_CEILING, description="In fallback order"
    )
    quiet_hours: QuietHoursIn | None = None


class CoupleIn(Body):
    name: PrintableText = Field(min_length=1, max_length=80)
    partners: list[PartnerIn] = Field(min_length=2, max_length=2, description="Exactly two")


class CouplePatch(Body):
    name: PrintableText | None = Field(default=None, min_length=1, max_length=80)
    paused: bool | None = None
    transition_mode: bool | None = None

    _no_nulls = field_validator("name", "paused", "transition_mode", mode="before")(_not_null)


class ScheduleIn(Body):
    rrule: str | None = Field(default=None, max_length=512)
    timezone: Zone | None = None
    start: WindowedDatetime | None = None
    at: WindowedAwareDatetime | None = None
    exdates: list[WindowedDatetime] = Field(default_factory=list, max_length=500)
    grace_seconds: float | None = Field(default=None, ge=0, le=30 * 86400, allow_inf_nan=False)

    @field_validator("rrule")
    @classmethod
    def _until_in_window(cls, value: str | None) -> str | None:
        until = _UNTIL.search(value or "")
        low, high = DATE_WINDOW
        if until and not low.year <= int(until.group(1)) <= high.year:
            raise ValueError(
                f"UNTIL must be between {low.date()} and {high.date()}: give a date in that range"
            )
        return value

    @field_validator("start")
    @classmethod
    def _naive_start(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError(
                "start is a local wall-clock time: give it without an offset,"
                " e.g. 2026-12-01T07:30:00 (the zone is `timezone`)"
            )
        return value


class RitualIn(Body):
    kind: RitualKind
    title: PrintableText | None = Field(default=None, min_length=1, max_length=60)
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
        default=None,
        pattern=f"^{PARTNER_ID.pattern}$",
        description="who answers; required unless the occurrence is one partner's",
    )


class GoalIn(Body):
    text: PrintableText = Field(min_length=1, max_length=200)
    quarter: (
        Annotated[str, Field(pattern=r"^\d{4}-Q[1-4]$"), AfterValidator(_quarter_in_window)] | None
    ) = Field(default=None, description="e.g. 2026-Q4; default: this one")


class RitualPatch(Body):
    title: PrintableText | None = Field(default=None, min_length=1, max_length=60)
    schedule: ScheduleIn | None = None
    delivery: DeliveryMode | None = None
    rotation: Rotation | None = None  # null: no rotation
    deck: str | None = Field(default=None, min_length=1, max_length=64)  # null: the default
    quiet_hours_policy: QuietHoursPolicy | None = None
    celebrate: bool | None = None
    celebrate_sms: bool | None = None

    _no_nulls = field_validator(
        "title",
        "schedule",
        "delivery",
        "quiet_hours_policy",
        "celebrate",
        "celebrate_sms",
        mode="before",
    )(_not_null)


# The most couples one bulk import request may carry, and the most rituals one couple of it
# may list (TANDEM_MAX_RITUALS_PER_COUPLE applies as well).
IMPORT_MAX_COUPLES = 1000
RITUALS_CEILING = 100


class ImportedCouple(CoupleIn):
    """One couple of a bulk import: a ``CoupleIn`` with, optionally, its rituals."""

    rituals: list[RitualIn] = Field(default_factory=list, max_length=RITUALS_CEILING)


class ImportIn(Body):
    """A bulk import: each item is validated on its own as an :class:`ImportedCouple`, so
    one bad item is refused alone (its errors' ``loc`` start with its index)."""

    couples: list[Any] = Field(min_length=1, max_length=IMPORT_MAX_COUPLES)
