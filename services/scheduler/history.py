"""The couple's nudge history, built from the events the other services publish.

Each occurrence is one Redis hash (fields are independent, so events may arrive in any order
and be replayed without read-modify-write); a per-couple sorted set orders them by
scheduled instant. History expires instead of growing: the index keeps the newest ``keep``
occurrences (the entries trimmed from it are deleted with it), and every key expires
``ttl`` seconds after its last write, so a couple that stops getting nudges leaves nothing
behind. Both keys share the couple's hash tag (one Redis Cluster slot, so one MULTI).
"""

from __future__ import annotations

import json
from typing import Any

from services.scheduler.answers import completion
from shared.events import NudgeDelivered, NudgeFailed, NudgeReady
from shared.redis import Keys, StrRedis

KEEP = 100
TTL_SECONDS = 30 * 86400

_WRITE = """
-- KEYS: entry, index
-- ARGV: ttl, keep, scheduled ('' = not known), occurrence id, entry key prefix, then
-- field, value pairs
-- Write fields of one occurrence; index it; trim the index to the newest ``keep``,
-- deleting the trimmed occurrences' entries too.
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  local keep = tonumber(ARGV[2])
  local old = redis.call('ZRANGE', KEYS[2], 0, -keep - 1)
  if #old > 0 then
    for _, occurrence in ipairs(old) do redis.call('DEL', ARGV[5] .. occurrence) end
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -keep - 1)
  end
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return 1
"""


class NudgeHistory:
    def __init__(
        self, redis: StrRedis, keys: Keys, *, keep: int = KEEP, ttl: int = TTL_SECONDS
    ) -> None:
        self.redis = redis
        self.k = keys
        self.keep = keep
        self.ttl = ttl
        self._write_script = redis.register_script(_WRITE)

    def _index(self, couple_id: str) -> str:
        return self.k(f"{{{couple_id}}}", "ni")

    def _entry(self, couple_id: str, occurrence_id: str) -> str:
        return self.k(f"{{{couple_id}}}", "n", occurrence_id)

    async def _write(
        self,
        couple_id: str,
        occurrence_id: str,
        fields: dict[str, str],
        scheduled: float | None = None,
    ) -> None:
        when = "" if scheduled is None else scheduled
        prefix = self._entry(couple_id, "")
        args: list[str | float | int] = [self.ttl, self.keep, when, occurrence_id, prefix]
        for name, value in fields.items():
            args += [name, value]
        keys = [self._entry(couple_id, occurrence_id), self._index(couple_id)]
        await self._write_script(keys=keys, args=args)

    async def record_ready(self, event: NudgeReady) -> None:
        summary = {
            "occurrence_id": event.occurrence_id,
            "ritual_id": event.ritual_id,
            "kind": event.kind,
            "title": event.title,
            "delivery": event.delivery,
            "scheduled_for": event.scheduled_for.isoformat(),
            "planner": event.planner,
            "trigger": event.trigger,
            "prompt": event.prompt.model_dump(),
        }
        fields = {"ready": json.dumps(summary)}
        for m in event.messages:
            fields[f"msg:{m.partner_id}"] = json.dumps({"title": m.title, "body": m.body})
        await self._write(
            event.couple_id, event.occurrence_id, fields, event.scheduled_for.timestamp()
        )

    async def record_delivered(self, event: NudgeDelivered) -> None:
        status = {
            "status": "delivered",
            "channel_id": event.channel_id,
            "channel_kind": event.channel_kind,
            "channel": event.channel,
            "attempt": event.attempt,
            "delivered_at": event.delivered_at.isoformat(),
            "latency_ms": event.latency_ms,
        }
        await self._write(
            event.couple_id, event.occurrence_id, {f"status:{event.partner_id}": json.dumps(status)}
        )

    async def record_failed(self, event: NudgeFailed) -> None:
        entry = self._entry(event.couple_id, event.occurrence_id)
        current = await self.redis.hget(entry, f"status:{event.partner_id}")
        if current and json.loads(current).get("status") == "delivered":
            return  # a late failure report never hides a delivery
        status = {
            "status": "failed" if event.final else "retrying",
            "reason": event.reason,
            "attempts": len(event.attempts),
        }
        await self._write(
            event.couple_id, event.occurrence_id, {f"status:{event.partner_id}": json.dumps(status)}
        )

    async def record_answer(
        self, couple_id: str, occurrence_id: str, partner_id: str, action: str
    ) -> None:
        await self._write(couple_id, occurrence_id, {f"answer:{partner_id}": json.dumps(action)})

    async def recent(self, couple_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` occurrences, newest first, with per-partner prompt and status."""
        ids = await self.redis.zrevrange(self._index(couple_id), 0, limit - 1)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for occurrence in ids:
                pipe.hgetall(self._entry(couple_id, occurrence))
            entries = await pipe.execute()
        out = []
        for fields in entries:
            if "ready" not in fields:
                continue
            item = json.loads(fields["ready"])
            partners: dict[str, dict[str, Any]] = {}
            for name, value in fields.items():
                kind, _, partner = name.partition(":")
                if kind in ("msg", "status"):
                    partners.setdefault(partner, {"status": "pending"}).update(json.loads(value))
                elif kind == "answer":
                    partners.setdefault(partner, {"status": "pending"})["answer"] = json.loads(
                        value
                    )
            acks = {p: entry["answer"] for p, entry in partners.items() if "answer" in entry}
            item["completion"] = completion(acks, partners)
            item["partners"] = partners
            out.append(item)
        return out
