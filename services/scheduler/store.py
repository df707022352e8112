"""The scheduler's Redis adapter: couples, rituals, the schedule and the outbox.

The schedule is two structures per deployment:

- ``due`` (hash): track id -> the epoch second it is next due. The truth.
- ``queue`` (sorted set): track id -> the epoch second it becomes *visible* to claimers.
  Normally equal to ``due``; while a replica works on a track it is pushed to the end of
  that replica's lease, so no other replica takes it, and if the replica dies the track
  simply becomes visible again when the lease runs out.

A replica claims a batch of visible tracks in one Lua call, computes their firings in
Python (the RRULE maths cannot live in Lua), then commits the whole batch in a second Lua
call that, per track, writes the due events to the outbox and advances ``due`` -- but only
if ``due`` still holds the value it claimed. That fence makes a slow replica whose lease ran
out harmless: whoever commits first advances the track; the other's commit is a no-op. The
events themselves have deterministic ids, so even a double publish is deduplicated
downstream.

The outbox uses the same visibility trick: a publisher leases entries, sends them to Kafka,
and deletes them only once Kafka acknowledged every one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from services.scheduler.goals import Goal
from services.scheduler.rituals import Couple, Ritual
from shared.redis import Keys, StrRedis
from shared.vault import Vault

_CLAIM = """
-- KEYS: queue, due   ARGV: now, lease_until, batch
local tracks = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, track in ipairs(tracks) do
  local due = redis.call('HGET', KEYS[2], track)
  if due then
    redis.call('ZADD', KEYS[1], ARGV[2], track)
    out[#out + 1] = track
    out[#out + 1] = due
  else
    redis.call('ZREM', KEYS[1], track)
  end
end
return out
"""

_COMMIT = """
-- KEYS: queue, due, outbox, outbox payloads
-- ARGV: now, then per track: track, claimed_due, next_due ('' = never), n, n x (id, payload)
local now = ARGV[1]
local i = 2
local committed = 0
while i <= #ARGV do
  local track, claimed, nxt, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local fresh = redis.call('HGET', KEYS[2], track) == claimed
  i = i + 4
  for _ = 1, n do
    if fresh and redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) == 1 then
      redis.call('ZADD', KEYS[3], now, ARGV[i])
    end
    i = i + 2
  end
  if fresh then
    committed = committed + 1
    if nxt == '' then
      redis.call('HDEL', KEYS[2], track)
      redis.call('ZREM', KEYS[1], track)
    else
      redis.call('HSET', KEYS[2], track, nxt)
      redis.call('ZADD', KEYS[1], nxt, track)
    end
  end
end
return committed
"""

_ONCE = """
-- KEYS: idempotency key, outbox, outbox payloads
-- ARGV: answer, ttl seconds, visible_at, then n x (id, payload)
-- The first request under a key records its answer and queues its events, atomically;
-- a repeat gets the recorded answer and queues nothing.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) == false then
  return redis.call('GET', KEYS[1])
end
for i = 4, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[i])
  end
end
return false
"""

_LEASE = """
-- KEYS: zset   ARGV: now, lease_until, limit
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, item in ipairs(items) do
  redis.call('ZADD', KEYS[1], ARGV[2], item)
end
return items
"""


@dataclass(frozen=True)
class Outgoing:
    """A record waiting in the outbox: its id (for dedupe), topic, key and JSON value."""

    id: str
    topic: str
    key: str
    value: str

    def encode(self) -> str:
        return json.dumps({"topic": self.topic, "key": self.key, "value": self.value})

    @classmethod
    def decode(cls, member: str, raw: str) -> Outgoing:
        data = json.loads(raw)
        return cls(member, data["topic"], data["key"], data["value"])


@dataclass(frozen=True)
class NewCouple:
    """A couple to create: its token (only the hash is stored), its channels' plain URLs
    (channel id -> URL, stored encrypted) and its rituals, each with its schedule."""

    couple: Couple
    token: str
    channel_urls: dict[str, str]
    rituals: Sequence[tuple[Ritual, dict[str, float | None]]] = ()


@dataclass(frozen=True)
class TrackCommit:
    track: str
    claimed_due: str  # exactly as claimed, for the fence
    next_due: float | None
    events: Sequence[Outgoing]


# Answers matter for streaks and summaries for about a year.
ANSWER_TTL_SECONDS = 400 * 86400


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _score(value: float) -> str:
    # repr keeps full precision, so the fence compares what was written
    return repr(float(value))


class SchedulerStore:
    def __init__(self, redis: StrRedis, keys: Keys, vault: Vault) -> None:
        self.redis = redis
        self.k = keys
        self.vault = vault
        self._claim = redis.register_script(_CLAIM)
        self._commit = redis.register_script(_COMMIT)
        self._lease = redis.register_script(_LEASE)
        self._once = redis.register_script(_ONCE)

    # -- keys ---------------------------------------------------------------------------
    def _couple(self, couple_id: str) -> str:
        return self.k("sched", "couple", couple_id)

    def _couple_rituals(self, couple_id: str) -> str:
        return self.k("sched", "couple", couple_id, "rituals")

    def _couple_token(self, couple_id: str) -> str:
        return self.k("sched", "couple", couple_id, "token")

    def _token(self, digest: str) -> str:
        return self.k("sched", "token", digest)

    def _ritual(self, ritual_id: str) -> str:
        return self.k("sched", "ritual", ritual_id)

    def _couple_feed(self, couple_id: str) -> str:
        return self.k("sched", "couple", couple_id, "feed")

    def _idempotency(self, scope: str, ritual_id: str, key: str) -> str:
        return self.k("sched", "idem", scope, ritual_id, hashlib.sha256(key.encode()).hexdigest())

    @property
    def _due(self) -> str:
        return self.k("sched", "due")

    @property
    def _queue(self) -> str:
        return self.k("sched", "queue")

    @property
    def _outbox(self) -> str:
        return self.k("sched", "outbox")

    @property
    def _outbox_payloads(self) -> str:
        return self.k("sched", "outbox", "payloads")

    # -- couples ------------------------------------------------------------------------
    async def create_couple(self, couple: Couple, token: str, channel_urls: dict[str, str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            self._write_couple(pipe, NewCouple(couple, token, channel_urls))
            await pipe.execute()

    async def create_couples(self, couples: Sequence[NewCouple]) -> None:
        """Store many new couples with their rituals and schedules in one round trip (one
        MULTI/EXEC: all of them or, if Redis fails, none)."""
        if not couples:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for new in couples:
                self._write_couple(pipe, new)
            await pipe.execute()

    def _write_couple(self, pipe: Pipeline, new: NewCouple) -> None:
        couple = new.couple
        digest = token_hash(new.token)
        pipe.set(self._couple(couple.id), couple.model_dump_json())
        pipe.set(self._token(digest), couple.id)
        pipe.set(self._couple_token(couple.id), digest)
        self.vault.store_channels(pipe, couple.id, new.channel_urls)
        self.vault.set_paused(pipe, couple.id, couple.paused)
        for ritual, schedule in new.rituals:
            self._write_ritual(pipe, ritual, schedule)

    async def save_couple(self, couple: Couple) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._couple(couple.id), couple.model_dump_json())
            self.vault.set_paused(pipe, couple.id, couple.paused)
            await pipe.execute()

    async def update_couple(
        self, couple_id: str, change: Callable[[Couple], Couple]
    ) -> tuple[Couple, Couple] | None:
        """Store ``change`` applied to the couple as stored, safe against a concurrent write
        of it (WATCH on the couple's key; on a conflict, read again and apply again -- so keep
        ``change`` pure): (before, after), or None when there is no such couple."""
        key = self._couple(couple_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if not raw:
                        return None
                    before = Couple.model_validate_json(raw)
                    after = change(before)
                    pipe.multi()
                    pipe.set(key, after.model_dump_json())
                    self.vault.set_paused(pipe, couple_id, after.paused)
                    await pipe.execute()
                    return before, after
                except WatchError:  # changed meanwhile: apply the change to that
                    continue

    async def get_couple(self, couple_id: str) -> Couple | None:
        raw = await self.redis.get(self._couple(couple_id))
        return Couple.model_validate_json(raw) if raw else None

    async def get_couples(self, couple_ids: Iterable[str]) -> dict[str, Couple]:
        ids = list(dict.fromkeys(couple_ids))
        if not ids:
            return {}
        raws = await self.redis.mget([self._couple(c) for c in ids])
        return {c: Couple.model_validate_json(r) for c, r in zip(ids, raws, strict=True) if r}

    async def couple_for_token(self, token: str) -> str | None:
        found: str | None = await self.redis.get(self._token(token_hash(token)))
        return found

    async def rotate_token(self, couple_id: str, token: str) -> None:
        """Make ``token`` the couple's one token: the old one stops working at once."""
        digest = token_hash(token)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self._couple_token(couple_id))
                    old = await pipe.get(self._couple_token(couple_id))
                    pipe.multi()
                    if old:
                        pipe.delete(self._token(str(old)))
                    pipe.set(self._token(digest), couple_id)
                    pipe.set(self._couple_token(couple_id), digest)
                    await pipe.execute()
                    return
                except WatchError:  # rotated concurrently: rotate again over that one
                    continue

    async def feed_generation(self, couple_id: str) -> str:
        """What the couple's calendar feed token is derived from besides the key: "0"
        until the feed is first rotated, then a random value per rotation."""
        found: str | None = await self.redis.get(self._couple_feed(couple_id))
        return found or "0"

    async def rotate_feed(self, couple_id: str) -> str:
        """A new feed generation for the couple (so a new feed URL); returns it."""
        generation = secrets.token_hex(8)
        await self.redis.set(self._couple_feed(couple_id), generation)
        return generation

    async def delete_couple(self, couple: Couple, rituals: list[Ritual], tracks: list[str]) -> None:
        digest = await self.redis.get(self._couple_token(couple.id))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._couple(couple.id), self._couple_rituals(couple.id))
            pipe.delete(self._couple_token(couple.id), self._couple_feed(couple.id))
            if digest:
                pipe.delete(self._token(digest))
            pipe.delete(self._goals(couple.id))
            for ritual in rituals:
                pipe.delete(self._ritual(ritual.id), self._kept(ritual.id))
            self._unschedule(pipe, tracks)
            self.vault.forget(pipe, couple.id)
            await pipe.execute()

    # -- rituals ------------------------------------------------------------------------
    async def save_ritual(
        self, ritual: Ritual, schedule: dict[str, float | None], unschedule: Sequence[str] = ()
    ) -> None:
        """Store ``ritual`` and (re)schedule its tracks: track id -> next due epoch (None:
        nothing left to fire); ``unschedule`` lists tracks that no longer exist."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self._unschedule(pipe, unschedule)
            self._write_ritual(pipe, ritual, schedule)
            await pipe.execute()

    def _write_ritual(
        self, pipe: Pipeline, ritual: Ritual, schedule: dict[str, float | None]
    ) -> None:
        pipe.set(self._ritual(ritual.id), ritual.model_dump_json())
        pipe.sadd(self._couple_rituals(ritual.couple_id), ritual.id)
        self._schedule(pipe, schedule)

    async def reschedule(
        self, schedule: dict[str, float | None], unschedule: Sequence[str] = ()
    ) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            self._unschedule(pipe, unschedule)
            self._schedule(pipe, schedule)
            await pipe.execute()

    def _schedule(self, pipe: object, schedule: dict[str, float | None]) -> None:
        for track, due in schedule.items():
            if due is None:
                self._unschedule(pipe, [track])
            else:
                pipe.hset(self._due, track, _score(due))  # type: ignore[attr-defined]
                pipe.zadd(self._queue, {track: due})  # type: ignore[attr-defined]

    def _unschedule(self, pipe: object, tracks: Iterable[str]) -> None:
        tracks = list(tracks)
        if tracks:
            pipe.hdel(self._due, *tracks)  # type: ignore[attr-defined]
            pipe.zrem(self._queue, *tracks)  # type: ignore[attr-defined]

    async def get_ritual(self, ritual_id: str) -> Ritual | None:
        raw = await self.redis.get(self._ritual(ritual_id))
        return Ritual.model_validate_json(raw) if raw else None

    async def get_rituals(self, ritual_ids: Iterable[str]) -> dict[str, Ritual]:
        ids = list(dict.fromkeys(ritual_ids))
        if not ids:
            return {}
        raws = await self.redis.mget([self._ritual(r) for r in ids])
        return {r: Ritual.model_validate_json(raw) for r, raw in zip(ids, raws, strict=True) if raw}

    async def list_rituals(self, couple_id: str) -> list[Ritual]:
        ids = await self.redis.smembers(self._couple_rituals(couple_id))
        rituals = await self.get_rituals(sorted(ids))
        return sorted(rituals.values(), key=lambda r: r.created_at)

    async def delete_ritual(self, ritual: Ritual, tracks: Sequence[str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._ritual(ritual.id), self._kept(ritual.id))
            pipe.srem(self._couple_rituals(ritual.couple_id), ritual.id)
            self._unschedule(pipe, tracks)
            await pipe.execute()

    async def due_of(self, tracks: Sequence[str]) -> list[float | None]:
        if not tracks:
            return []
        values = await self.redis.hmget(self._due, list(tracks))
        return [float(v) if v is not None else None for v in values]

    # -- firing -------------------------------------------------------------------------
    async def claim(self, now: float, lease_until: float, batch: int) -> list[tuple[str, str]]:
        """Lease up to ``batch`` tracks due by ``now``; returns (track, due as stored)."""
        flat = await self._claim(keys=[self._queue, self._due], args=[now, lease_until, batch])
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def commit(self, now: float, commits: Sequence[TrackCommit]) -> int:
        """Write each track's events to the outbox and advance it, fenced on the claimed due
        value; returns how many tracks were committed (the rest were taken over)."""
        args: list[str | float] = [now]
        for c in commits:
            args += [c.track, c.claimed_due, "" if c.next_due is None else _score(c.next_due)]
            args.append(len(c.events))
            for event in c.events:
                args += [event.id, event.encode()]
        keys = [self._queue, self._due, self._outbox, self._outbox_payloads]
        return int(await self._commit(keys=keys, args=args))

    async def enqueue(self, visible_at: float, events: Sequence[Outgoing]) -> None:
        """Put events straight into the outbox, to be sent from ``visible_at`` on (a manual
        trigger now, a snooze later); an id already there is kept as it is."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for event in events:
                pipe.hsetnx(self._outbox_payloads, event.id, event.encode())
                pipe.zadd(self._outbox, {event.id: visible_at}, nx=True)
            await pipe.execute()

    async def idempotent_answer(self, scope: str, ritual_id: str, key: str) -> str | None:
        """The answer recorded under an idempotency ``key`` (see :meth:`enqueue_once`)."""
        found: str | None = await self.redis.get(self._idempotency(scope, ritual_id, key))
        return found

    async def enqueue_once(
        self,
        scope: str,
        ritual_id: str,
        key: str,
        answer: str,
        ttl: int,
        visible_at: float,
        events: Sequence[Outgoing],
    ) -> str | None:
        """:meth:`enqueue` under an idempotency ``key`` (per ``scope`` and ritual): the first
        call records ``answer`` for ``ttl`` seconds and queues ``events``, atomically, and
        returns None; a repeat within ``ttl`` queues nothing and returns the recorded
        answer."""
        args: list[str | float] = [answer, ttl, visible_at]
        for event in events:
            args += [event.id, event.encode()]
        keys = [self._idempotency(scope, ritual_id, key), self._outbox, self._outbox_payloads]
        found: str | None = await self._once(keys=keys, args=args)
        return found

    async def lease_outbox(self, now: float, lease_until: float, limit: int) -> list[Outgoing]:
        ids = await self._lease(keys=[self._outbox], args=[now, lease_until, limit])
        if not ids:
            return []
        raws = await self.redis.hmget(self._outbox_payloads, ids)
        found = [Outgoing.decode(i, r) for i, r in zip(ids, raws, strict=True) if r]
        if len(found) < len(ids):  # an entry without payload is garbage from a crash
            await self.redis.zrem(
                self._outbox, *[i for i, r in zip(ids, raws, strict=True) if not r]
            )
        return found

    async def ack_outbox(self, ids: Sequence[str]) -> None:
        if ids:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._outbox, *ids)
                pipe.hdel(self._outbox_payloads, *ids)
                await pipe.execute()

    async def next_visible(self) -> float | None:
        """The epoch second at which the earliest track becomes claimable, if any."""
        head = await self.redis.zrange(self._queue, 0, 0, withscores=True)
        return float(head[0][1]) if head else None

    # -- answers ------------------------------------------------------------------------
    def _slot(self, ritual_id: str, slot: str) -> str:
        return self.k("sched", "slot", ritual_id, slot)

    def _kept(self, ritual_id: str) -> str:
        return self.k("sched", "kept", ritual_id)

    def _goals(self, couple_id: str) -> str:
        return self.k("sched", "goals", couple_id)

    async def record_answer(
        self, ritual_id: str, slot: str, partner_id: str, action: str
    ) -> dict[str, str]:
        """Record a partner's answer for a slot; returns every partner's answer so far."""
        key = self._slot(ritual_id, slot)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, f"answer:{partner_id}", action)
            pipe.expire(key, ANSWER_TTL_SECONDS)
            pipe.hgetall(key)
            *_, fields = await pipe.execute()
        return {k.split(":", 1)[1]: v for k, v in fields.items() if k.startswith("answer:")}

    async def mark_kept(self, ritual_id: str, slot: str, instant: float) -> bool:
        """Mark a slot kept by both; True the first time only (so it is celebrated once)."""
        return bool(await self.redis.zadd(self._kept(ritual_id), {slot: instant}, nx=True))

    async def kept_since(self, ritual_id: str, since: float) -> set[str]:
        return set(await self.redis.zrangebyscore(self._kept(ritual_id), since, "+inf"))

    async def claim_snooze(self, ritual_id: str, slot: str, partner_id: str) -> bool:
        """True the first time a partner snoozes a slot: a snooze re-fires once."""
        return bool(
            await self.redis.hsetnx(self._slot(ritual_id, slot), f"snoozed:{partner_id}", "1")
        )

    async def add_goal(self, couple_id: str, goal: Goal) -> None:
        await self.redis.hset(self._goals(couple_id), goal.id, goal.model_dump_json())

    async def goals(self, couple_id: str) -> list[Goal]:
        stored = await self.redis.hgetall(self._goals(couple_id))
        return [Goal.model_validate_json(raw) for raw in stored.values()]

    async def delete_goal(self, couple_id: str, goal_id: str) -> bool:
        return bool(await self.redis.hdel(self._goals(couple_id), goal_id))

    async def backlog(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._queue)
            pipe.zcard(self._outbox)
            scheduled, outbox = await pipe.execute()
        return {"scheduled_tracks": scheduled, "outbox": outbox}
