"""The Redis adapter: remembered choices and deck histories.

Two kinds of key, both under ``<prefix>:content`` and both hash-tagged with the couple id so
a Redis Cluster keeps one couple's keys on one slot (the commit script touches two):

* ``content:choice:{couple}:<selection key>`` -> the prompt chosen for that key (JSON,
  with its words, so both partners read the same text even while replicas run different
  deck versions). Written once (``SET NX`` semantics), kept ``choice_ttl`` (30 days).
* ``content:history:{couple}:<deck>`` -> :class:`~.choosing.DeckHistory` as JSON.

Promises:

* A selection key gets exactly one prompt, however often it is asked and by however many
  replicas at once; the deck advances once per selection key, never twice.
* Concurrent choices for different keys of one couple and deck never hand out the same
  prompt: the commit is a compare-and-set on the history (a Lua script), retried with the
  history the script returns when another replica got there first.
* Usually two round trips per event (read; commit), one when the choice already exists,
  each shared with every other pick under way (:class:`shared.coalesce.Coalescer`): a
  batch of couples costs two pipelines, not two round trips per couple. The commit is
  sent as ``EVAL`` (Redis caches the compiled script), so a Redis restart that forgot
  the script cannot fail a pipeline with ``NOSCRIPT``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any

from services.content.choosing import Choice, DeckHistory, choose
from services.content.decks import Deck, DeckPrompt
from shared.coalesce import Coalescer
from shared.redis import Keys, StrRedis

CHOICE_TTL = 30 * 86400
# A couple's place in a deck outlives any cadence (quarterly included) but not abandonment.
HISTORY_TTL = 400 * 86400

# KEYS: choice, history. ARGV: expected history ('' = none), new history, choice, ttls.
# Returns {0, choice} committed, {1, choice} already chosen, {2, history} lost the race.
_COMMIT = """
local chosen = redis.call('GET', KEYS[1])
if chosen then return {1, chosen} end
local current = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[1] then return {2, current} end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[5])
return {0, ARGV[3]}
"""


def _commit(pipe: Any, *, keys: tuple[str, str], args: tuple[object, ...]) -> None:
    pipe.eval(_COMMIT, len(keys), *keys, *args)


class Contention(RuntimeError):
    """The history kept changing under us; transient, the record will be redelivered."""


@dataclass(frozen=True)
class Picked:
    prompt: DeckPrompt
    fresh: bool  # True if this call chose it, False if it was already chosen


def dump_history(history: DeckHistory) -> str:
    return json.dumps(
        {"cycle": history.cycle, "level": history.level, "used": sorted(history.used)},
        separators=(",", ":"),
    )


def load_history(raw: str | None) -> DeckHistory:
    if not raw:
        return DeckHistory()
    data = json.loads(raw)
    return DeckHistory(
        cycle=int(data["cycle"]), used=frozenset(data["used"]), level=int(data.get("level", 0))
    )


def _dump_prompt(prompt: DeckPrompt) -> str:
    return prompt.model_dump_json(exclude_defaults=True)


def _load_prompt(raw: str) -> DeckPrompt:
    return DeckPrompt.model_validate_json(raw)


class ContentStore:
    """Remembers, per couple, which prompt each selection key got and where each deck is."""

    def __init__(
        self,
        redis: StrRedis,
        keys: Keys,
        *,
        choice_ttl: int = CHOICE_TTL,
        history_ttl: int = HISTORY_TTL,
        max_attempts: int = 32,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.choice_ttl = choice_ttl
        self.history_ttl = history_ttl
        self.max_attempts = max_attempts
        # Concurrent picks (a keyed consumer's batch) share their round trips.
        self._batch = Coalescer(redis)

    def choice_key(self, couple_id: str, key: str) -> str:
        return self.keys("content", "choice", f"{{{couple_id}}}", key)

    def history_key(self, couple_id: str, deck_id: str) -> str:
        return self.keys("content", "history", f"{{{couple_id}}}", deck_id)

    async def history(self, couple_id: str, deck_id: str) -> DeckHistory:
        return load_history(await self.redis.get(self.history_key(couple_id, deck_id)))

    async def pick(self, deck: Deck, *, couple_id: str, key: str) -> Picked:
        """The prompt for selection ``key``: the remembered one, else a new choice."""
        choice_key = self.choice_key(couple_id, key)
        history_key = self.history_key(couple_id, deck.id)
        chosen, raw_history = await self._batch.run(
            lambda pipe: (pipe.get(choice_key), pipe.get(history_key))
        )
        if chosen is not None:
            return Picked(_load_prompt(chosen), fresh=False)
        expected = raw_history or ""
        for _ in range(self.max_attempts):
            choice: Choice = choose(deck, load_history(expected), couple_id=couple_id, key=key)
            args = (
                expected,
                dump_history(choice.history),
                _dump_prompt(choice.prompt),
                self.choice_ttl,
                self.history_ttl,
            )
            [(status, value)] = await self._batch.run(
                partial(_commit, keys=(choice_key, history_key), args=args)
            )
            if int(status) == 0:
                return Picked(choice.prompt, fresh=True)
            if int(status) == 1:
                return Picked(_load_prompt(value), fresh=False)
            expected = value  # another key of this couple advanced the deck: choose again
        raise Contention(f"deck {deck.id!r} of couple {couple_id!r} kept changing")
