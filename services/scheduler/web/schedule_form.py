"""A ritual's rule as the page edits it: a time of day and, for daily or weekly rules, the
days of the week. Pure functions over RRULE text; anything the form does not show (an
interval, a monthly position) is kept as it is."""

from __future__ import annotations

import re
from dataclasses import dataclass

DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DAY_NAMES = dict(zip(DAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True))
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class FormError(ValueError):
    """What the person typed cannot be a schedule; the message says how to fix it."""


@dataclass(frozen=True)
class RuleView:
    time: str  # "HH:MM"
    days: tuple[str, ...]  # empty when the rule is not daily or weekly
    by_days: bool  # whether the page may edit the days


def _parts(rrule: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in rrule.split(";") if "=" in part)


def view(rrule: str) -> RuleView:
    """The time and days ``rrule`` fires at, as the form shows them."""
    parts = _parts(rrule)
    hour = parts.get("BYHOUR", "0").split(",")[0]
    minute = parts.get("BYMINUTE", "0").split(",")[0]
    by_days = parts.get("FREQ") in ("DAILY", "WEEKLY") and "INTERVAL" not in parts
    days = tuple(d for d in DAYS if d in parts.get("BYDAY", "").split(",")) or DAYS
    return RuleView(f"{int(hour):02d}:{int(minute):02d}", days if by_days else (), by_days)


def edited(rrule: str, time: str, days: list[str] | None) -> str:
    """``rrule`` firing at ``time`` ("HH:MM") and, when it is daily or weekly and ``days``
    is given, on those days (all seven: daily). Raises :class:`FormError`."""
    match = _TIME.fullmatch(time.strip())
    if match is None:
        raise FormError("Give the time as HH:MM on a 24-hour clock, e.g. 21:00.")
    parts = _parts(rrule)
    parts["BYHOUR"], parts["BYMINUTE"] = str(int(match[1])), str(int(match[2]))
    if view(rrule).by_days and days is not None:
        chosen = [d for d in DAYS if d in days]
        if not chosen:
            raise FormError("Pick at least one day of the week.")
        if len(chosen) == len(DAYS):
            parts["FREQ"] = "DAILY"
            parts.pop("BYDAY", None)
        else:
            parts["FREQ"], parts["BYDAY"] = "WEEKLY", ",".join(chosen)
    order = ["FREQ", *(k for k in parts if k != "FREQ")]
    return ";".join(f"{k}={parts[k]}" for k in order)


def describe(rule: RuleView) -> str:
    """The days of ``rule`` in words: "every day", "weekdays", "Sat, Sun" ("" when the
    form does not edit its days)."""
    if not rule.by_days:
        return ""
    if len(rule.days) == len(DAYS):
        return "every day"
    if rule.days == DAYS[:5]:
        return "weekdays"
    return ", ".join(DAY_NAMES[d] for d in rule.days)
