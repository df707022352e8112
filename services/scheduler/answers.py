"""Partners answering back: what a "done", "snooze" or "skip" means. Pure; no I/O.

A ritual's firings are grouped into *slots*: one firing of a ``together`` ritual, or the
two partners' firings of a ``local`` ritual that share a wall-clock time (Berlin's 07:30 and
New York's 07:30 of one date). A slot is *kept* when both partners marked it done, and a
couple's streak for a ritual counts consecutive kept slots -- the couple's, not one
partner's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

Completion = Literal["both", "one", "neither"]


def completion(acks: Mapping[str, str], partners: Iterable[str]) -> Completion:
    """Whether both, one or neither of ``partners`` answered "done" (``acks``: partner ->
    their latest answer)."""
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
