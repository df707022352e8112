"""Partners answering back: what a "done", "snooze" or "skip" means. Pure; no I/O.

A ritual's firings are grouped into *slots*: one firing of a ``together`` ritual, or the
two partners' firings of a ``local`` ritual that share a wall-clock time (Berlin's 07:30 and
New York's 07:30 of one date). A slot is *kept* when both partners marked it done, and a
couple's streak for a ritual counts consecutive kept slots -- the couple's, not one
partner's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

Completion = Literal["both", "one", "neither"]


@dataclass(frozen=True)
class OccurrenceRef:
    """The parts of an occurrence id: ``rit_…@20261122T200000Z[/prt_…][~suffix]``."""

    ritual_id: str
    instant: datetime
    partner_id: str | None
    suffix: str | None  # "snooze", "both" -- a firing derived from the original

    @property
    def origin(self) -> str:
        """The id of the original (scheduled or manual) firing."""
        stamp = self.instant.strftime("%Y%m%dT%H%M%SZ")
        return f"{self.ritual_id}@{stamp}" + (f"/{self.partner_id}" if self.partner_id else "")


def parse_occurrence(occurrence_id: str) -> OccurrenceRef:
    """Split an occurrence id; ValueError if it is not one."""
    base, _, suffix = occurrence_id.partition("~")
    ritual_id, sep, rest = base.partition("@")
    stamp, _, partner = rest.partition("/")
    if not sep or not ritual_id.startswith("rit_"):
        raise ValueError(f"not an occurrence id: {occurrence_id!r}")
    try:
        instant = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"not an occurrence id: {occurrence_id!r}") from None
    return OccurrenceRef(ritual_id, instant, partner or None, suffix or None)


def snooze_id(ref: OccurrenceRef, partner_id: str) -> str:
    """The one re-fire a snooze may cause, for one partner."""
    return f"{ref.ritual_id}@{ref.instant:%Y%m%dT%H%M%SZ}/{partner_id}~snooze"


def celebration_id(ritual_id: str, slot: str) -> str:
    return f"{ritual_id}@{slot}~both"


def slot_key(wall_time: datetime) -> str:
    """The slot of a firing: its wall-clock time, to the minute, without a zone."""
    return wall_time.strftime("%Y%m%dT%H%M")


def completion(acks: Mapping[str, str], partners: Iterable[str]) -> Completion:
    done = sum(1 for p in partners if acks.get(p) == "done")
    return "both" if done >= 2 else "one" if done == 1 else "neither"


def streak(slots_newest_first: Iterable[str], kept: set[str]) -> int:
    """Consecutive kept slots, newest first. The newest slot may still be open (due, not yet
    answered), so it does not break the streak; any earlier slot not kept does."""
    count = 0
    for position, slot in enumerate(slots_newest_first):
        if slot in kept:
            count += 1
        elif position > 0 or count:
            break
    return count
