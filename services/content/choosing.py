"""Choosing the prompt: which words a couple gets next. Pure: no I/O, no clock, no randomness
beyond what the inputs seed.

Promises:

* No repeats: a couple never sees a prompt of a deck twice until they have seen every prompt
  of it (one *cycle*); then a fresh cycle starts in a new order.
* Deterministic: the order of a cycle is a shuffle seeded by couple id + deck id + cycle
  number, so every replica (and every retry) agrees on it without talking to the others.
  The shuffle sorts prompts by a hash of (seed, prompt id), so adding a prompt to a deck does
  not reshuffle the ones already there.
* Progressive decks go level by level: every level-1 prompt before any level-2 prompt, and a
  cycle never steps back down a level (a level-1 prompt added mid-cycle waits for the next).

The couple day
--------------
Both partners must read the same prompt for one firing of a ritual. A ``together``
occurrence is one event with both partners as recipients, so its :func:`selection_key` is
simply its ``occurrence_id``. A ``local`` ritual fires once per partner, each in their own
time zone: Berlin's 07:30 on 2026-11-23 and New York's 07:30 on 2026-11-23 are two events,
six hours apart, with different occurrence ids. They share the ritual id and the *wall
time* (the local date and clock time the rule produced), so the selection key of a local
occurrence is ``(ritual_id, wall_time)`` without its zone: the two partners' 07:30 of one
date share a prompt, and one partner's 07:30 never shares with the other's a day later.
The prompt is chosen once per selection key and remembered (see ``store.py``).

Snoozes
-------
A snoozed occurrence fires again under a new id (``…~snooze``) that names its
``origin_occurrence_id``. It is the same firing, later: it must read the same prompt and
must not advance the deck. So a ``together`` snooze selects under its origin's id, which
finds the prompt remembered for the original. A ``local`` snooze keeps the original's wall
time (the scheduler's contract), so ``(ritual_id, wall_time)`` already names the original.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from services.content.decks import Deck, DeckPrompt
from shared.events import RitualDue


def selection_key(due: RitualDue) -> str:
    """The key under which one prompt is chosen for ``due`` (see "The couple day" above)."""
    if due.delivery == "local":
        wall = due.wall_time.replace(tzinfo=None).isoformat(timespec="minutes")
        return f"{due.ritual_id}@{wall}"
    return due.origin_occurrence_id or due.occurrence_id


@dataclass(frozen=True)
class DeckHistory:
    """What a couple has seen of one deck: the current cycle (1-based), the prompt ids used
    in it, and for a progressive deck the level it has reached (0 = not started)."""

    cycle: int = 1
    used: frozenset[str] = field(default_factory=frozenset)
    level: int = 0


@dataclass(frozen=True)
class Choice:
    prompt: DeckPrompt
    history: DeckHistory  # the history after this choice
    key: str  # the selection key it was chosen for


def _rank(couple_id: str, deck_id: str, cycle: int, prompt_id: str) -> bytes:
    # A keyed hash per prompt: sorting by it is a shuffle every replica computes alike.
    seed = f"{couple_id}\x1f{deck_id}\x1f{cycle}\x1f{prompt_id}".encode()
    return hashlib.blake2b(seed, digest_size=16).digest()


def cycle_order(deck: Deck, couple_id: str, cycle: int) -> list[DeckPrompt]:
    """Every prompt of ``deck`` in the order ``couple_id`` meets them in ``cycle``."""

    def key(prompt: DeckPrompt) -> tuple[int, bytes]:
        level = (prompt.level or 1) if deck.progressive else 0
        return level, _rank(couple_id, deck.id, cycle, prompt.id)

    return sorted(deck.prompts, key=key)


def _next(deck: Deck, couple_id: str, history: DeckHistory) -> DeckPrompt | None:
    for prompt in cycle_order(deck, couple_id, history.cycle):
        if prompt.id in history.used:
            continue
        if deck.progressive and (prompt.level or 1) < history.level:
            continue  # never step back down within a cycle
        return prompt
    return None


def choose(deck: Deck, history: DeckHistory, *, couple_id: str, key: str) -> Choice:
    """The next prompt of ``deck`` for ``couple_id`` and the history after it."""
    prompt = _next(deck, couple_id, history)
    if prompt is None:  # deck exhausted: a fresh, differently shuffled cycle
        history = DeckHistory(cycle=history.cycle + 1)
        prompt = _next(deck, couple_id, history)
        assert prompt is not None  # a deck has at least one prompt
    level = max(history.level, prompt.level or 1) if deck.progressive else 0
    after = DeckHistory(cycle=history.cycle, used=history.used | {prompt.id}, level=level)
    return Choice(prompt=prompt, history=after, key=key)
