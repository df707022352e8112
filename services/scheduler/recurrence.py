"""When a ritual is due: recurrence rules evaluated in a time zone, as pure functions.

A :class:`Schedule` is either a one-off instant (``at``) or an RFC 5545 ``RRULE`` anchored at
a naive local wall-clock ``start``. dateutil expands a rule into naive wall-clock times, which
are then placed on the UTC time line in the zone the caller names: the schedule's own zone for
"together" delivery, each partner's zone for "local" delivery.

DST policy (deliberately not RFC 5545's, which skips times that do not exist: a skipped
morning ritual is a bug to a couple):

* A wall time that does not exist (the spring-forward gap) fires once, shifted forward by the
  length of the gap: 02:30 becomes 03:30 on a one-hour gap, and 02:10 becomes 02:40 on
  Lord Howe's half-hour one. This is what ``zoneinfo`` does for a gap time with ``fold=0``: it
  keeps the offset from before the transition.
* A wall time that occurs twice (fall back) fires once, at its first occurrence (``fold=0``).
* Never two firings at one instant: where a shifted gap time lands on a time the rule also
  produces (an hourly rule across the gap), the first in rule order fires, the other does not.

``Slot.ordinal`` is the occurrence's position in the rule since ``start``, and nothing else:
occurrences dropped for colliding or excluded by ``exdates`` keep their positions, so no other
ordinal changes when, say, an exdate is added. Slots come in time order; ordinals follow it
except where a real time the rule puts after a gap time fires before that gap time's shifted
instant (02:30 and 03:10 on a gap day fire at 03:10, then 03:30).

``UNTIL`` is inclusive. In UTC (``...Z``) it is an instant, the same whichever zone the rule
is evaluated in; otherwise a local wall-clock time, and a bare date means all of that day.
"""

from __future__ import annotations

import functools
import heapq
import math
import re
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise, takewhile
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dateutil.rrule
from dateutil.rrule import rrule as _DateutilRule
from dateutil.rrule import rrulestr

MAX_SLOTS_BETWEEN = 10_000
# The most work one evaluation (one call of validate, slots_after, slots_between, cadence) may
# do, in steps of about as much work (3-7 microseconds measured): a wall time dateutil yields, a
# period of the rule's FREQ it looks through, yielding or not, and 16 days it filters there
# (see _metered_dayset). Real rituals need tens to a few thousand steps; the costliest
# shapes still accepted (the first MAX_SLOTS_BETWEEN slots of a minutely rule, a weekly
# cycle of one counted to resume it) about 15,000. So a rule either evaluates in well
# under 0.15 s of CPU or is refused in about that.
BUDGET = 20_000

# More than the largest forward jump of any zone's clock (Samoa skipped 2011-12-30): a slot
# firing after an instant never has a wall time further than this before the instant's.
_MAX_JUMP = timedelta(days=2)
_MAX_INTERVAL = 1000
_UNTIL = re.compile(r"(\d{8})(?:T(\d{6})(Z?))?")
# Minutes per FREQ unit of the rules that, without month or year structure, repeat in weeks.
_CYCLIC_FREQS = {"MINUTELY": 1, "HOURLY": 60, "DAILY": 24 * 60, "WEEKLY": 7 * 24 * 60}
_CALENDAR_PARTS = {"BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"}
# The Gregorian calendar repeats every 400 years, a whole number of weeks; FREQ units in them.
_GREGORIAN = timedelta(days=146_097)
_GREGORIAN_UNITS = {"YEARLY": 400, "MONTHLY": 4800, "WEEKLY": 20_871, "DAILY": 146_097}
_GREGORIAN_UNITS |= {"HOURLY": 146_097 * 24, "MINUTELY": 146_097 * 24 * 60}
_LONGEST_MONTHS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# RFC 5545's ranges (0 never allowed): dateutil takes any number and then never matches it.
_RANGES = {
    "BYMONTH": range(1, 13),
    "BYMONTHDAY": range(-31, 32),
    "BYYEARDAY": range(-366, 367),
    "BYWEEKNO": range(-53, 54),
}


class ScheduleError(ValueError):
    """A schedule that cannot be accepted; ``field`` names the input at fault."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class _TooCostly(ScheduleError):
    """A rule that needs more than :data:`BUDGET` steps for what is asked of it."""


class _Budget:
    """The steps one evaluation has left; running out refuses the rule as too costly."""

    __slots__ = ("left", "yielded")

    def __init__(self) -> None:
        self.left = BUDGET
        self.yielded = False  # a wall time since dateutil's last period began

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise _TooCostly(
                "schedule.rrule",
                f"rule too costly to evaluate: more than {BUDGET} steps through the calendar;"
                " simplify it (e.g. a later start or fewer BY* parts)",
            )


@dataclass(frozen=True)
class Schedule:
    timezone: str
    rrule: str | None = None
    start: datetime | None = None
    at: datetime | None = None
    exdates: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class Slot:
    instant: datetime
    wall_time: datetime
    ordinal: int


@dataclass(frozen=True)
class _Rule:
    """A parsed rule bound to one zone."""

    parts: dict[str, str]  # the RRULE parts but UNTIL
    start: datetime
    zone: ZoneInfo
    last_wall: datetime | None  # UNTIL as a wall-time bound, the form dateutil takes
    until: datetime | None  # UNTIL as an instant, when it was given in UTC
    exdates: frozenset[datetime]

    @property
    def freq(self) -> str:
        return self.parts["FREQ"]

    @property
    def interval(self) -> int:
        return int(self.parts.get("INTERVAL", "1"))

    def walls(self, dtstart: datetime, budget: _Budget) -> Iterator[datetime]:
        """The rule's wall times from ``dtstart`` (``start``, or a later point of its grid),
        each one, and each day dateutil examines to find them, spent from ``budget``."""
        text = ";".join(f"{name}={value}" for name, value in self.parts.items())
        if self.last_wall is not None:
            text += f";UNTIL={self.last_wall:%Y%m%dT%H%M%S}"
        try:
            for wall in _metered(rrulestr(text, dtstart=dtstart), budget):
                budget.spend()
                budget.yielded = True
                yield wall
        except ScheduleError:
            raise
        except ValueError as exc:  # dateutil finds some impossible rules only when iterating
            raise ScheduleError("schedule.rrule", f"malformed RRULE: {exc}") from exc


# dateutil walks a rule one period of its FREQ at a time (a year of a YEARLY rule, a minute
# of a MINUTELY one) and yields nothing from a period the BY* parts filter out: a rule that
# rarely or never matches can keep it walking towards year 9999 for seconds between two
# yields, which counting wall times cannot interrupt. Each period starts by asking an
# ``_iterinfo`` for its set of days; a metered copy of ``rrule._iter`` (the same code, reading
# the same module globals but ``_iterinfo``) asks one that spends those days from the
# rule's budget, so the walk stops, with a ScheduleError, wherever the budget runs out.
_IterInfo: Any = getattr(dateutil.rrule, "_iterinfo")  # noqa: B009 -- private, unstubbed
if "_iterinfo" not in _DateutilRule._iter.__code__.co_names:  # type: ignore[attr-defined]
    raise ImportError("dateutil.rrule changed: rrule._iter no longer builds an _iterinfo")


def _metered_dayset(name: str) -> Any:
    unmetered = getattr(_IterInfo, name)

    def dayset(info: Any, year: int, month: int, day: int) -> Any:
        days, first, end = unmetered(info, year, month, day)
        rule = info.rrule
        budget = rule._tandem_budget
        # A period costs a step, and a step per 16 days dateutil filters in it (about as
        # long as yielding one wall time takes); one of a day (or an hour, a minute) that
        # yielded was paid for by what it yielded: a minutely rule costs a step a minute.
        if end - first > 1 or not budget.yielded:
            budget.spend(1 + (end - first) // 16)
        budget.yielded = False
        if rule._freq == dateutil.rrule.MINUTELY and rule._byhour:
            # Between two periods of a MINUTELY rule with BYHOUR, dateutil steps INTERVAL
            # minutes at a time until the hour is one of them, for up to a day: a step costs
            # about an eighth of a yielded wall time. (Without BYHOUR the first step is it.)
            minute = (info.yearordinal + first) * 24 * 60 + getattr(info, "tandem_minute", 0)
            last = getattr(info, "tandem_last", minute)
            budget.spend((minute - last) // rule._interval // 8)
            info.tandem_last = minute
        return days, first, end

    return dayset


def _metered_mtimeset(info: Any, hour: int, minute: int, second: int) -> Any:
    info.tandem_minute = hour * 60 + minute  # of the period whose day ddayset gets next
    return _IterInfo.mtimeset(info, hour, minute, second)


_MeteredIterInfo = type(
    "_MeteredIterInfo",
    (_IterInfo,),
    {name: _metered_dayset(name) for name in ("ydayset", "mdayset", "wdayset", "ddayset")}
    | {"mtimeset": _metered_mtimeset},
)
_unmetered_iter: Any = _DateutilRule._iter  # type: ignore[attr-defined]
_metered_iter = types.FunctionType(
    _unmetered_iter.__code__,
    {**vars(dateutil.rrule), "_iterinfo": _MeteredIterInfo},
    "_metered_iter",
    _unmetered_iter.__defaults__,
    _unmetered_iter.__closure__,
)


def _metered(rule: Any, budget: _Budget) -> Any:
    """``rule`` (an uncached dateutil rrule), its walk spending from ``budget``."""
    if not isinstance(rule, _DateutilRule) or getattr(rule, "_cache", None) is not None:
        raise TypeError("only an uncached rrule can be metered")
    metered: Any = rule
    metered._tandem_budget = budget
    metered._iter = types.MethodType(_metered_iter, rule)
    return rule


def validate(schedule: Schedule, *, now: datetime) -> None:
    """Raise :class:`ScheduleError` unless ``schedule`` can be accepted as of ``now``.

    Accepted: a known IANA zone with either a recurring rule (an RRULE with a naive ``start``,
    firing at most once a minute and at least once, ``exdates`` aside) or a one-off aware
    ``at`` after ``now``. Impossible dates (February 30) are refused at once; a rule whose
    first occurrence takes more than :data:`BUDGET` steps to find, or to tell there is none
    (``FREQ=DAILY;INTERVAL=2;BYMONTH=1;BYSETPOS=2`` never fires), is refused as too costly.
    Either way this takes at most some tens of milliseconds.
    """
    if schedule.rrule is None:
        if schedule.at is None:
            raise ScheduleError("schedule.rrule", "a schedule needs an rrule or a one-off at")
        _zone(schedule.timezone)
        if _naive(schedule.at):
            raise ScheduleError("schedule.at", "at must carry a UTC offset")
        if schedule.at <= now:
            raise ScheduleError("schedule.at", "at must be in the future")
        if schedule.start is not None:
            raise ScheduleError("schedule.start", "start only applies to a recurring rule")
        if schedule.exdates:
            raise ScheduleError("schedule.exdates", "exdates only apply to a recurring rule")
        return
    if schedule.at is not None:
        raise ScheduleError("schedule.at", "give either an rrule or a one-off at, not both")
    rule = _compile(schedule, schedule.timezone)
    budget = _Budget()
    # Only once the rule is known to yield wall times can it be walked from start: UNTIL then
    # ends the walk, where dateutil would look for a first match up to year 9999.
    if not _has_walls(rule, budget) or _first(replace(rule, exdates=frozenset()), budget) is None:
        raise ScheduleError("schedule.rrule", "the rule yields no occurrence")
    if _first(rule, budget) is None:
        raise ScheduleError("schedule.exdates", "exdates exclude every occurrence of the rule")


def slots_after(schedule: Schedule, zone: str, after: datetime, count: int) -> list[Slot]:
    """The first ``count`` slots firing strictly after ``after``, in time order, in ``zone``
    (fewer when the rule ends first, or when more would take more than :data:`BUDGET` steps
    to find, but at least the first).

    A rule without month or year structure, nor a weekly BYSETPOS (most daily, weekly and
    hourly ones) costs the same however long ago it started; others are walked from ``start``.
    Raises :class:`ScheduleError` when even the first takes more than :data:`BUDGET` steps.
    """
    found: list[Slot] = []
    try:
        slots = _slots_from(schedule, zone, _aware(after, "after"), _Budget())
        found.extend(islice(slots, max(count, 0)))
    except _TooCostly:
        if not found:
            raise
    return found


def slots_between(schedule: Schedule, zone: str, start: datetime, end: datetime) -> list[Slot]:
    """The slots firing in ``(start, end]``, in time order, in ``zone``; the earliest
    :data:`MAX_SLOTS_BETWEEN` when there are more. Raises :class:`ScheduleError` when finding
    them takes more than :data:`BUDGET` steps."""
    end = _aware(end, "end")
    slots = _slots_from(schedule, zone, _aware(start, "start"), _Budget())
    return list(islice(takewhile(lambda slot: slot.instant <= end, slots), MAX_SLOTS_BETWEEN))


@functools.lru_cache(maxsize=4096)
def cadence(schedule: Schedule) -> timedelta:
    """The typical gap between a valid schedule's occurrences: the median gap between its
    first ten wall times, or as many as :data:`BUDGET` steps find when that is at least two
    (a day for a one-off, or a rule with a single occurrence)."""
    if schedule.rrule is None:
        return timedelta(days=1)
    rule = _compile(schedule, schedule.timezone)
    found: list[datetime] = []
    try:
        found.extend(islice(rule.walls(rule.start, _Budget()), 10))
    except _TooCostly:
        if len(found) < 2:
            raise
    gaps = sorted(later - earlier for earlier, later in pairwise(found))
    return gaps[len(gaps) // 2] if gaps else timedelta(days=1)


def _slots_from(
    schedule: Schedule, zone_name: str, after: datetime, budget: _Budget
) -> Iterator[Slot]:
    if schedule.rrule is None:
        if schedule.at is None:
            raise ScheduleError("schedule.rrule", "a schedule needs an rrule or a one-off at")
        zone = _zone(zone_name)
        at = _aware(schedule.at, "schedule.at").astimezone(UTC)
        if at > after:
            yield Slot(at, _wall(at, zone), 0)
        return
    rule = _compile(schedule, zone_name)
    horizon = _wall(after, rule.zone) - _MAX_JUMP
    rule, dtstart, ordinal = _resume_point(rule, horizon, budget)
    for slot in _in_time_order(rule, dtstart, ordinal, budget, skip_before=horizon):
        if slot.instant > after:
            yield slot


def _resume_point(rule: _Rule, horizon: datetime, budget: _Budget) -> tuple[_Rule, datetime, int]:
    """Where to walk the rule from, as ``(the rule, dtstart, its ordinal)``, to meet every
    wall time from ``horizon`` on: a whole number of the rule's cycles past ``start`` if it
    has one (with COUNT lowered by the wall times those cycles hold)."""
    cycle = _cycle(rule)
    # A weekly BYSETPOS picks from a first week that dateutil cuts at dtstart: those rules
    # are walked from start. Other FREQs pick from whole periods (a day, an hour, a minute)
    # and only then drop what is before dtstart, which a resumed walk skips anyway.
    if cycle is None or (rule.freq == "WEEKLY" and "BYSETPOS" in rule.parts):
        return rule, rule.start, 0
    cycles = (horizon - rule.start) // cycle
    if cycles < 1:
        return rule, rule.start, 0
    ordinal = cycles * _walls_per_cycle(rule, cycle, budget)
    if "COUNT" in rule.parts:
        # Where a walk starts changes what COUNT counts: count only what is left. Once none
        # is, every wall time of the rule was before the resume point, so before horizon.
        left = max(int(rule.parts["COUNT"]) - ordinal, 0)
        rule = replace(rule, parts={**rule.parts, "COUNT": str(left)})
    return rule, rule.start + cycles * cycle, ordinal


_WALLS_PER_CYCLE: dict[tuple[object, ...], int] = {}


def _walls_per_cycle(rule: _Rule, cycle: timedelta, budget: _Budget) -> int:
    """How many wall times (COUNT aside) the rule has in each cycle: counted once, as a
    minutely rule has 1,440 a day (the same in every zone: wall times are naive)."""
    parts = {k: v for k, v in rule.parts.items() if k != "COUNT"}
    key = (tuple(parts.items()), rule.start, rule.last_wall)
    if key not in _WALLS_PER_CYCLE:
        walls = replace(rule, parts=parts).walls(rule.start, budget)
        count = sum(1 for _ in takewhile(lambda wall: wall < rule.start + cycle, walls))
        if len(_WALLS_PER_CYCLE) >= 4096:
            _WALLS_PER_CYCLE.clear()
        _WALLS_PER_CYCLE[key] = count
    return _WALLS_PER_CYCLE[key]


def _in_time_order(
    rule: _Rule,
    dtstart: datetime,
    ordinal: int,
    budget: _Budget,
    skip_before: datetime = datetime.min,
) -> Iterator[Slot]:
    """The rule's slots from ``dtstart`` (whose position is ``ordinal``), in time order.

    Wall times come in rule order, and each fires at the instant of its own wall time or, in
    a gap, of a later one; so a slot waits only until the rule reaches the wall time it fires
    at, when nothing still to come can fire before it or, firing at the same instant, come
    first in rule order.
    """
    pending: list[tuple[datetime, int, datetime, datetime]] = []
    last: datetime | None = None

    def ready(wall: datetime) -> Iterable[Slot]:
        nonlocal last
        while pending and pending[0][0] <= wall:
            _, position, produced, instant = heapq.heappop(pending)
            if instant != last:  # a tie pops the first in rule order
                last = instant
                yield Slot(instant, produced, position)

    for position, wall in enumerate(rule.walls(dtstart, budget), ordinal):
        if wall >= skip_before and wall not in rule.exdates:
            instant = wall.replace(tzinfo=rule.zone).astimezone(UTC)
            if rule.until is None or instant <= rule.until:
                heapq.heappush(pending, (_wall(instant, rule.zone), position, wall, instant))
        # Nothing still to come fires before the wall time just reached (a time only ever
        # shifts forward): what fires by it is ready, the wall time itself too unless it is
        # in a gap, so a sparse rule is not walked on to its next occurrence to yield one.
        yield from ready(wall)
    yield from ready(datetime.max)


def _first(rule: _Rule, budget: _Budget) -> Slot | None:
    return next(_in_time_order(rule, rule.start, 0, budget), None)


def _has_walls(rule: _Rule, budget: _Budget) -> bool:
    """Whether the rule yields any wall time at all, quickly.

    dateutil gives up on a rule that matches nothing only at year 9999, which takes it
    seconds for a daily one; so ask the same rule moved a whole number of its periods towards
    that end instead, where its first wall time, if any, is within a period of the search's.
    """
    if not _some_date(rule.parts):
        return False
    period = _period(rule)
    if period is not None and (periods := (datetime.max - rule.start) // period - 1) >= 1:
        shift = periods * period
        last_wall = rule.last_wall
        if last_wall is not None:  # past year 9999 it bounds nothing
            last_wall = last_wall + shift if last_wall < datetime.max - shift else None
        rule = replace(rule, start=rule.start + shift, last_wall=last_wall)
    return next(rule.walls(rule.start, budget), None) is not None


def _some_date(parts: dict[str, str]) -> bool:
    """Whether BYMONTH and BYMONTHDAY let any date through (the usual impossible rule)."""
    if "BYMONTHDAY" not in parts:
        return True
    months = parts["BYMONTH"].split(",") if "BYMONTH" in parts else range(1, 13)
    longest = max(_LONGEST_MONTHS[int(month) - 1] for month in months)
    return min(abs(int(day)) for day in parts["BYMONTHDAY"].split(",")) <= longest


def _period(rule: _Rule) -> timedelta | None:
    """A span after which the rule yields the same wall times, unless it is too long to use."""
    cycle = _cycle(rule)
    if cycle is not None:
        return cycle
    units = _GREGORIAN_UNITS[rule.freq]
    calendars = math.lcm(units, rule.interval) // units
    return calendars * _GREGORIAN if calendars < 20 else None


def _cycle(rule: _Rule) -> timedelta | None:
    """How often a rule without month or year structure repeats its wall times.

    Its occurrences repeat every whole number of steps that is also a whole number of days
    (weeks when weekdays matter): the wall times, weekdays and the defaults dateutil takes
    from dtstart are all the same a whole number of cycles later.
    """
    if (
        rule.freq not in _CYCLIC_FREQS
        or _CALENDAR_PARTS & rule.parts.keys()
        or any(char.isdigit() for char in rule.parts.get("BYDAY", ""))  # 1FR, -1SU
    ):
        return None
    step = rule.interval * _CYCLIC_FREQS[rule.freq]
    weekly = rule.freq == "WEEKLY" or "BYDAY" in rule.parts
    return timedelta(minutes=math.lcm(step, (7 if weekly else 1) * 24 * 60))


# Thousands of couples share a handful of rules (everyone picks 07:30): a herd reuses them.
@functools.lru_cache(maxsize=4096)
def _compile(schedule: Schedule, zone_name: str) -> _Rule:
    zone = _zone(zone_name)
    if schedule.start is None:
        raise ScheduleError("schedule.start", "a recurring rule needs a start")
    if not _naive(schedule.start):
        raise ScheduleError("schedule.start", "start is a local wall-clock time, without offset")
    start = schedule.start.replace(microsecond=0)  # as dateutil has it: the grid starts there
    if not all(_naive(exdate) for exdate in schedule.exdates):
        raise ScheduleError("schedule.exdates", "exdates are local wall-clock times, no offset")
    parts = _parts(schedule.rrule or "")
    last_wall = until = None
    if "UNTIL" in parts:
        last_wall, until = _until(parts.pop("UNTIL"), zone)
        if "COUNT" in parts:  # RFC 5545 forbids it; dateutil only warns
            raise ScheduleError("schedule.rrule", "COUNT and UNTIL cannot be combined")
        if last_wall < start:
            raise ScheduleError("schedule.rrule", "UNTIL is before start")
        if until is not None:
            # dateutil refuses a UTC UNTIL with a naive start: it gets a wall-time bound loose
            # enough for every wall time firing by the instant, which each slot is checked on.
            last_wall = min(last_wall, datetime.max - _MAX_JUMP) + _MAX_JUMP
    rule = _Rule(parts, start, zone, last_wall, until, frozenset(schedule.exdates))
    try:
        rrulestr(";".join(f"{name}={value}" for name, value in parts.items()), dtstart=start)
    except ValueError as exc:
        raise ScheduleError("schedule.rrule", f"malformed RRULE: {exc}") from exc
    if rule.freq == "SECONDLY" or "," in parts.get("BYSECOND", ""):
        raise ScheduleError("schedule.rrule", "a rule may fire at most once a minute")
    if not 1 <= rule.interval <= _MAX_INTERVAL:
        raise ScheduleError("schedule.rrule", f"INTERVAL must be from 1 to {_MAX_INTERVAL}")
    if int(parts.get("COUNT", "1")) < 1:
        raise ScheduleError("schedule.rrule", "COUNT must be at least 1")
    for name, allowed in _RANGES.items():
        values = [int(value) for value in parts.get(name, "1").split(",")]
        if not all(value in allowed and value != 0 for value in values):
            raise ScheduleError("schedule.rrule", f"{name} has a value out of range")
    return rule


def _parts(text: str) -> dict[str, str]:
    """The rule's NAME=VALUE parts, upper-cased, from RRULE text with or without its prefix."""
    text = text.strip()
    if text[:6].upper() == "RRULE:":
        text = text[6:]
    if any(char in text for char in ":\r\n"):
        raise ScheduleError(
            "schedule.rrule",
            "only an RRULE is accepted: DTSTART, RDATE, EXRULE and EXDATE go in"
            " schedule.start and schedule.exdates",
        )
    parts: dict[str, str] = {}
    for item in filter(None, text.upper().split(";")):  # tolerate a trailing ";"
        name, _, value = item.partition("=")
        if not name or not value:
            raise ScheduleError("schedule.rrule", f"malformed RRULE part {item!r}")
        if name in parts:
            raise ScheduleError("schedule.rrule", f"{name} is given twice")
        parts[name] = value
    if "FREQ" not in parts:
        raise ScheduleError("schedule.rrule", "FREQ is required")
    if "BYEASTER" in parts:  # dateutil's own extension, with no calendar cycle to rely on
        raise ScheduleError("schedule.rrule", "BYEASTER is not part of RFC 5545")
    return parts


def _until(value: str, zone: ZoneInfo) -> tuple[datetime, datetime | None]:
    """UNTIL as a local wall time, and as an instant when it was given in UTC (a bare date
    means the end of that local day: what a person writing it means)."""
    match = _UNTIL.fullmatch(value)
    if match is None:
        raise ScheduleError("schedule.rrule", f"UNTIL {value!r} is not YYYYMMDD[THHMMSS[Z]]")
    day, time, utc = match.groups()
    try:
        until = datetime.strptime(day + (time or "235959"), "%Y%m%d%H%M%S")
        if not utc:
            return until, None
        instant = until.replace(tzinfo=UTC)
        return _wall(instant, zone), instant
    except (ValueError, OverflowError) as exc:
        raise ScheduleError("schedule.rrule", f"UNTIL {value!r} is not a valid time") from exc


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError("schedule.timezone", f"unknown time zone {name!r}") from exc


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _naive(value: datetime) -> bool:
    return value.tzinfo is None or value.utcoffset() is None


def _aware(value: datetime, name: str) -> datetime:
    if _naive(value):
        raise ValueError(f"{name} must be timezone-aware")
    return value
