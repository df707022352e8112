"""The scheduler's Redis adapter: couples, rituals, the schedule and the outbox.

Every key is Redis Cluster safe: a script or transaction only ever touches keys of one hash
tag. A couple's own keys share the tag ``{<couple id>}``; the schedule is split into
``scheduler_buckets`` buckets (a track's bucket follows from its ritual id), each bucket's
keys sharing the tag ``{s<n>}``, so claims spread over a cluster's masters. Writes that span
a couple and a bucket run in one MULTI/EXEC on a single Redis and as a plain (ordered,
per-node) pipeline on a cluster, where a transaction cannot span slots.

Per bucket:

- ``q`` (sorted set): track id -> the epoch second it is next due, while nobody works on it.
- ``l`` (sorted set): track id -> when the lease of the replica working on it runs out;
  ``h`` (hash): track id -> the due value that replica claimed. A track is in ``q`` or in
  ``l``/``h``, never both, so an idle track costs one sorted-set entry.

A replica claims a batch of due tracks per bucket in one Lua call (moving them from ``q`` to
``l``/``h``, and taking over leases that ran out), computes their firings in Python (the
RRULE maths cannot live in Lua), then commits per bucket in a second Lua call that writes the
due events to the bucket's outbox and puts the track back in ``q`` at its next due -- but
only if ``h`` still holds the value it claimed. That fence makes a slow replica whose lease
ran out harmless: whoever commits first advances the track; the other's commit is a no-op,
and a reschedule meanwhile (which clears ``h``) wins over both. The events have
deterministic ids, so even a double publish is deduplicated downstream.

The outbox (``o``: id -> visible at, ``p``: id -> payload) uses the same visibility trick: a
publisher leases entries, sends them to Kafka, and deletes them once Kafka acknowledged them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from services.scheduler import records
from services.scheduler.goals import Goal
from services.scheduler.rituals import Couple, Ritual, ritual_of_track
from shared.ids import id_pattern
from shared.redis import Keys, StrRedis, is_cluster
from shared.timeslice import TimeSlice
from shared.vault import Vault

log = logging.getLogger("tandem.scheduler.store")

_CLAIM = """
-- KEYS: queue, leases, held   ARGV: now, lease_until, batch
-- Leases that ran out first (their replica died), then tracks newly due.
local out = {}
local limit = tonumber(ARGV[3])
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, limit)
for _, track in ipairs(stale) do
  local due = redis.call('HGET', KEYS[3], track)
  if due then
    redis.call('ZADD', KEYS[2], ARGV[2], track)
    out[#out + 1] = track
    out[#out + 1] = due
  else
    redis.call('ZREM', KEYS[2], track)
  end
end
limit = limit - #out / 2
if limit <= 0 then return out end
local fresh = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
if #fresh == 0 then return out end
local tracks, leases = {}, {}
for i = 1, #fresh, 2 do
  tracks[#tracks + 1] = fresh[i]
  leases[#leases + 1] = ARGV[2]
  leases[#leases + 1] = fresh[i]
  out[#out + 1] = fresh[i]
  out[#out + 1] = fresh[i + 1]
end
redis.call('ZREM', KEYS[1], unpack(tracks))
redis.call('ZADD', KEYS[2], unpack(leases))
redis.call('HSET', KEYS[3], unpack(fresh))
return out
"""

_COMMIT = """
-- KEYS: queue, leases, held, outbox, outbox payloads
-- ARGV: now, then per track: track, claimed_due, next_due ('' = never), n, n x (id, payload)
local now = ARGV[1]
local i = 2
local committed = 0
while i <= #ARGV do
  local track, claimed, nxt, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local fresh = redis.call('HGET', KEYS[3], track) == claimed
  i = i + 4
  for _ = 1, n do
    if fresh and redis.call('HSETNX', KEYS[5], ARGV[i], ARGV[i + 1]) == 1 then
      redis.call('ZADD', KEYS[4], now, ARGV[i])
    end
    i = i + 2
  end
  if fresh then
    committed = committed + 1
    redis.call('HDEL', KEYS[3], track)
    redis.call('ZREM', KEYS[2], track)
    if nxt ~= '' then
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
-- KEYS: outbox, outbox payloads   ARGV: now, lease_until, limit
-- Lease visible entries; returns id, payload pairs (an entry without payload is garbage
-- from a crash, and dropped).
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
if #items == 0 then return items end
local payloads = redis.call('HMGET', KEYS[2], unpack(items))
local out, leases, gone = {}, {}, {}
for i, item in ipairs(items) do
  if payloads[i] then
    leases[#leases + 1] = ARGV[2]
    leases[#leases + 1] = item
    out[#out + 1] = item
    out[#out + 1] = payloads[i]
  else
    gone[#gone + 1] = item
  end
end
if #leases > 0 then redis.call('ZADD', KEYS[1], unpack(leases)) end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
return out
"""

_ACK = """
-- KEYS: outbox, outbox payloads   ARGV: ids
redis.call('ZREM', KEYS[1], unpack(ARGV))
return redis.call('HDEL', KEYS[2], unpack(ARGV))
"""


@dataclass(frozen=True)
class Outgoing:
    """A record waiting in the outbox: its id (for dedupe), topic, key and JSON value;
    ``bucket``: the schedule bucket whose outbox holds it (set when leased)."""

    id: str
    topic: str
    key: str
    value: str
    bucket: int = 0

    def encode(self) -> str:
        # topic and key never hold a newline (a topic name, a couple id); the value is JSON
        return f"{self.topic}\n{self.key}\n{self.value}"

    @classmethod
    def decode(cls, member: str, raw: str, bucket: int = 0) -> Outgoing:
        topic, key, value = raw.split("\n", 2)
        return cls(member, topic, key, value, bucket)


@dataclass(frozen=True)
class NewCouple:
    """A couple to create: its token (of :func:`new_couple_token`; only a digest is
    stored), its channels' plain URLs (channel id -> URL, stored encrypted) and its
    rituals, each with its schedule."""

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
# The most tracks one claim or commit moves in one bucket (Lua's unpack has a stack limit).
MAX_PER_BUCKET = 2000


_COUPLE_ID = id_pattern("cpl")
# The stored digest of a token naming its couple; an older token's is longer (43).
_DIGEST_CHARS = 22


def new_couple_token(couple_id: str) -> str:
    """A new bearer token for the couple, ``ct_<couple id>.<secret>`` (192 random bits).
    Naming its couple lets a request be checked against that couple's own index, so a couple
    needs no lookup key of its own (see :meth:`SchedulerStore.couple_for_token`)."""
    return f"ct_{couple_id}.{secrets.token_urlsafe(24)}"


def named_couple(token: str) -> str | None:
    """The couple a token of :func:`new_couple_token`'s form names, or None for any other
    token (older couple tokens, whose random part never holds a dot, and partner tokens).
    The id is checked against its shape before it reaches a key."""
    if not token.startswith("ct_"):
        return None
    head, dot, _ = token[3:].partition(".")
    return head if dot and _COUPLE_ID.fullmatch(head) else None


def token_hash(token: str) -> str:
    """The stored form of a couple's bearer token: SHA-256, URL-safe base64 (43 chars); the
    name of an older token's lookup key. A token naming its couple is stored as the first 22
    (128 bits), see :func:`_stored_digest`."""
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _stored_digest(token: str) -> str:
    # A token that names its couple is only ever compared with its own couple's stored
    # digest, never looked up by it, so what matters is a preimage (not a collision) of a
    # token with 192 random bits: 128 bits of SHA-256 keep that out of reach, and 21 bytes
    # off the index.
    return token_hash(token)[:_DIGEST_CHARS]


def _score(value: float) -> str:
    # repr keeps full precision, so the fence compares what was written
    return repr(float(value))


async def _decoded(
    model: type[records.M], ids: Sequence[str], raws: Sequence[str | None]
) -> dict[str, records.M]:
    """id -> record for each stored raw (None: missing, left out). A herd's batch is
    thousands of records: decoding them shares the event loop (shared/timeslice.py)."""
    timeslice = TimeSlice()
    found: dict[str, records.M] = {}
    for record_id, raw in zip(ids, raws, strict=True):
        if raw:
            await timeslice.share()
            found[record_id] = records.decode(model, record_id, raw)
    return found


class SchedulerStore:
    def __init__(self, redis: StrRedis, keys: Keys, vault: Vault, buckets: int = 16) -> None:
        """``buckets``: how many parts the schedule is split into (every process sharing a
        deployment must agree, see ``Settings.scheduler_buckets``)."""
        self.redis = redis
        self.k = keys
        self.vault = vault
        self.buckets = buckets
        self.cluster = is_cluster(redis)
        self._claim = redis.register_script(_CLAIM)
        self._commit = redis.register_script(_COMMIT)
        self._lease = redis.register_script(_LEASE)
        self._ack = redis.register_script(_ACK)
        self._once = redis.register_script(_ONCE)
        self._listeners: list[Callable[[float], None]] = []
        self._announcing: set[asyncio.Task[Any]] = set()

    # -- keys ---------------------------------------------------------------------------
    def _couple(self, couple_id: str) -> str:
        return self.k(f"{{{couple_id}}}", "c")

    def _couple_index(self, couple_id: str) -> str:
        """Small fields, so a listpack: ``t`` token digest, ``f`` feed generation,
        ``r:<ritual id>`` one per ritual."""
        return self.k(f"{{{couple_id}}}", "x")

    def _goals(self, couple_id: str) -> str:
        return self.k(f"{{{couple_id}}}", "g")

    def _token(self, digest: str) -> str:
        return self.k("t", digest)

    def _ritual(self, ritual_id: str) -> str:
        return self.k("r", ritual_id)

    def _kept(self, ritual_id: str) -> str:
        return self.k("k", ritual_id)

    def _slot(self, ritual_id: str, slot: str) -> str:
        return self.k("a", ritual_id, slot)

    def bucket_of(self, track_or_ritual: str) -> int:
        """The schedule bucket of a track: its ritual's, so a ritual's tracks share one."""
        return zlib.crc32(ritual_of_track(track_or_ritual).encode()) % self.buckets

    def _b(self, bucket: int, name: str) -> str:
        return self.k("s", f"{{s{bucket}}}", name)

    def _bucket_keys(self, bucket: int) -> list[str]:
        """queue, leases, held, outbox, outbox payloads."""
        return [self._b(bucket, n) for n in ("q", "l", "h", "o", "p")]

    def _idempotency(self, scope: str, ritual_id: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self._b(self.bucket_of(ritual_id), f"i:{scope}:{ritual_id}:{digest}")

    def _pipe(self) -> Pipeline:
        """A MULTI/EXEC pipeline on a single Redis; on a cluster, where a transaction
        cannot span slots, a plain one (commands still run in order per node)."""
        return self.redis.pipeline(transaction=not self.cluster)

    async def _get_many(self, keys: list[str]) -> list[str | None]:
        """GET of many keys: one MGET on a single Redis, a pipeline (split per node by
        the client) on a cluster, where MGET cannot span slots."""
        if not self.cluster:
            return await self.redis.mget(keys)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
            found: list[str | None] = await pipe.execute()
        return found

    # -- couples ------------------------------------------------------------------------
    async def create_couple(self, couple: Couple, token: str, channel_urls: dict[str, str]) -> None:
        await self.create_couples([NewCouple(couple, token, channel_urls)])

    async def create_couples(self, couples: Sequence[NewCouple]) -> None:
        """Store many new couples with their rituals and schedules in one round trip (one
        MULTI/EXEC on a single Redis: all of them or, if Redis fails, none)."""
        if not couples:
            return
        async with self._pipe() as pipe:
            for new in couples:
                self._write_couple(pipe, new)
            await pipe.execute()
        self._notify(schedule for new in couples for _, schedule in new.rituals)

    def _write_couple(self, pipe: Pipeline, new: NewCouple) -> None:
        couple = new.couple
        # only the digest, in the couple's own index: a token of new_couple_token opens the
        # couple by it, and one that does not name the couple opens nothing
        pipe.set(self._couple(couple.id), records.encode(couple))
        pipe.hset(self._couple_index(couple.id), "t", _stored_digest(new.token))
        self.vault.store_channels(pipe, couple.id, new.channel_urls)
        self.vault.set_paused(pipe, couple.id, couple.paused)
        for ritual, schedule in new.rituals:
            self._write_ritual(pipe, ritual, schedule)

    async def save_couple(self, couple: Couple) -> None:
        async with self._pipe() as pipe:
            pipe.set(self._couple(couple.id), records.encode(couple))
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
                    before = records.decode(Couple, couple_id, str(raw))
                    after = change(before)
                    pipe.multi()
                    pipe.set(key, records.encode(after))
                    self.vault.set_paused(pipe, couple_id, after.paused)
                    await pipe.execute()
                    return before, after
                except WatchError:  # changed meanwhile: apply the change to that
                    continue

    async def get_couple(self, couple_id: str) -> Couple | None:
        raw = await self.redis.get(self._couple(couple_id))
        return records.decode(Couple, couple_id, raw) if raw else None

    async def get_couples(self, couple_ids: Iterable[str]) -> dict[str, Couple]:
        ids = list(dict.fromkeys(couple_ids))
        if not ids:
            return {}
        raws = await self._get_many([self._couple(c) for c in ids])
        return await _decoded(Couple, ids, raws)

    async def couple_for_token(self, token: str) -> str | None:
        """The couple a couple token opens, or None. A token naming its couple is compared
        (in constant time) with the digest in that couple's index; an older one, which does
        not, is found through its ``t:<digest>`` lookup key (only couples made or rotated
        before tokens named their couple have one, and rotating removes it)."""
        couple_id = named_couple(token)
        digest = _stored_digest(token)
        if couple_id is None:
            digest = token_hash(token)
            couple_id = await self.redis.get(self._token(digest))
            if couple_id is None:
                return None
        # the index is the truth, a lookup key only the way to it (a rotation that could
        # not remove the key still retires the token)
        stored: str | None = await self.redis.hget(self._couple_index(couple_id), "t")
        ok = stored is not None and hmac.compare_digest(stored, digest)
        return couple_id if ok else None

    async def rotate_token(self, couple_id: str, token: str) -> None:
        """Make ``token`` (of :func:`new_couple_token`) the couple's one token: the old one
        stops working at once, and an older token's lookup key goes with it."""
        if named_couple(token) != couple_id:
            raise ValueError("a couple's token names it (see new_couple_token)")
        digest = _stored_digest(token)
        index = self._couple_index(couple_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:  # WATCH/MULTI on the couple's own slot only
                    await pipe.watch(index)
                    old = await pipe.hget(index, "t")
                    pipe.multi()
                    pipe.hset(index, "t", digest)
                    await pipe.execute()
                    break
                except WatchError:  # rotated concurrently: rotate again over that one
                    continue
        if old and len(old) > _DIGEST_CHARS:  # an older token's: its lookup key goes too
            await self.redis.delete(self._token(str(old)))

    async def feed_generation(self, couple_id: str) -> str:
        """What the couple's calendar feed token is derived from besides the key: "0"
        until the feed is first rotated, then a random value per rotation."""
        found: str | None = await self.redis.hget(self._couple_index(couple_id), "f")
        return found or "0"

    async def rotate_feed(self, couple_id: str) -> str:
        """A new feed generation for the couple (so a new feed URL); returns it."""
        generation = secrets.token_hex(8)
        await self.redis.hset(self._couple_index(couple_id), "f", generation)
        return generation

    async def delete_couple(self, couple: Couple, rituals: list[Ritual], tracks: list[str]) -> None:
        digest = await self.redis.hget(self._couple_index(couple.id), "t")
        async with self._pipe() as pipe:
            # the schedule first: a half-deleted couple must not keep firing
            self._unschedule(pipe, tracks)
            for ritual in rituals:
                pipe.delete(self._ritual(ritual.id))
                pipe.delete(self._kept(ritual.id))
            if digest and len(digest) > _DIGEST_CHARS:  # an older token's lookup key
                pipe.delete(self._token(digest))
            pipe.delete(self._couple(couple.id), self._couple_index(couple.id))
            pipe.delete(self._goals(couple.id))
            self.vault.forget(pipe, couple.id)
            await pipe.execute()

    # -- rituals ------------------------------------------------------------------------
    async def save_ritual(
        self, ritual: Ritual, schedule: dict[str, float | None], unschedule: Sequence[str] = ()
    ) -> None:
        """Store ``ritual`` and (re)schedule its tracks: track id -> next due epoch (None:
        nothing left to fire); ``unschedule`` lists tracks that no longer exist."""
        async with self._pipe() as pipe:
            self._unschedule(pipe, unschedule)
            self._write_ritual(pipe, ritual, schedule)
            await pipe.execute()
        self._notify([schedule])

    def _write_ritual(
        self, pipe: Pipeline, ritual: Ritual, schedule: dict[str, float | None]
    ) -> None:
        pipe.set(self._ritual(ritual.id), records.encode(ritual))
        pipe.hset(self._couple_index(ritual.couple_id), f"r:{ritual.id}", "")
        self._schedule(pipe, schedule)

    async def reschedule(
        self, schedule: dict[str, float | None], unschedule: Sequence[str] = ()
    ) -> None:
        async with self._pipe() as pipe:
            self._unschedule(pipe, unschedule)
            self._schedule(pipe, schedule)
            await pipe.execute()
        self._notify([schedule])

    def _schedule(self, pipe: Pipeline, schedule: dict[str, float | None]) -> None:
        for track, due in schedule.items():
            if due is None:
                self._unschedule(pipe, [track])
                continue
            queue, leases, held, *_ = self._bucket_keys(self.bucket_of(track))
            # a claim in flight loses its fence: the new schedule wins over its commit
            pipe.hdel(held, track)
            pipe.zrem(leases, track)
            pipe.zadd(queue, {track: due})

    def _unschedule(self, pipe: Pipeline, tracks: Iterable[str]) -> None:
        for track in tracks:
            queue, leases, held, *_ = self._bucket_keys(self.bucket_of(track))
            pipe.hdel(held, track)
            pipe.zrem(leases, track)
            pipe.zrem(queue, track)

    async def get_ritual(self, ritual_id: str) -> Ritual | None:
        raw = await self.redis.get(self._ritual(ritual_id))
        return records.decode(Ritual, ritual_id, raw) if raw else None

    async def get_rituals(self, ritual_ids: Iterable[str]) -> dict[str, Ritual]:
        ids = list(dict.fromkeys(ritual_ids))
        if not ids:
            return {}
        raws = await self._get_many([self._ritual(r) for r in ids])
        return await _decoded(Ritual, ids, raws)

    async def list_rituals(self, couple_id: str) -> list[Ritual]:
        fields = await self.redis.hkeys(self._couple_index(couple_id))
        ids = sorted(str(f)[2:] for f in fields if str(f).startswith("r:"))
        rituals = await self.get_rituals(ids)
        return sorted(rituals.values(), key=lambda r: r.created_at)

    async def delete_ritual(self, ritual: Ritual, tracks: Sequence[str]) -> None:
        async with self._pipe() as pipe:
            self._unschedule(pipe, tracks)
            pipe.delete(self._ritual(ritual.id))
            pipe.delete(self._kept(ritual.id))
            pipe.hdel(self._couple_index(ritual.couple_id), f"r:{ritual.id}")
            await pipe.execute()

    async def due_of(self, tracks: Sequence[str]) -> list[float | None]:
        """Each track's next due epoch (the claimed one while a replica works on it)."""
        if not tracks:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for track in tracks:
                queue, _, held, *_ = self._bucket_keys(self.bucket_of(track))
                pipe.zscore(queue, track)
                pipe.hget(held, track)
            found = await pipe.execute()
        pairs = zip(found[::2], found[1::2], strict=True)
        return [float(q) if q is not None else float(h) if h else None for q, h in pairs]

    # -- wake-ups -----------------------------------------------------------------------
    def on_scheduled(self, listener: Callable[[float], None]) -> None:
        """Call ``listener`` with the earliest due instant each time this store schedules
        tracks (a save, a reschedule, a new couple), so a firing loop in this process wakes
        for it rather than on its fallback tick. Other processes learn of it through
        Redis pub/sub on :meth:`wake_channel`."""
        self._listeners.append(listener)

    def wake_channel(self) -> str:
        """The pub/sub channel a save announces its earliest due instant on."""
        return self.k("s", "wake")

    def _notify(self, schedules: Iterable[dict[str, float | None]]) -> None:
        dues = [d for s in schedules for d in s.values() if d is not None]
        if not dues:
            return
        earliest = min(dues)
        for listener in self._listeners:
            listener(earliest)
        self._announce(earliest)

    def _announce(self, earliest: float) -> None:
        # best effort, without holding up the request: a replica that misses it still
        # wakes on its fallback tick
        task = asyncio.get_running_loop().create_task(self._publish_wake(earliest))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _publish_wake(self, earliest: float) -> None:
        try:
            await self.redis.publish(self.wake_channel(), _score(earliest))
        except Exception:
            log.debug("cannot announce a wake-up", exc_info=True)

    # -- firing -------------------------------------------------------------------------
    async def claim(self, now: float, lease_until: float, batch: int) -> list[tuple[str, str]]:
        """Lease up to ``batch`` due tracks, spread over every bucket (one Lua call per
        bucket, concurrently); returns (track, due as stored)."""
        per_bucket = min(MAX_PER_BUCKET, max(1, -(-batch // self.buckets)))
        found = await asyncio.gather(
            *(
                self._claim(keys=self._bucket_keys(b)[:3], args=[now, lease_until, per_bucket])
                for b in range(self.buckets)
            )
        )
        return [pair for flat in found for pair in zip(flat[::2], flat[1::2], strict=True)]

    async def commit(self, now: float, commits: Sequence[TrackCommit]) -> int:
        """Write each track's events to its bucket's outbox and advance it, fenced on the
        claimed due value; returns how many tracks were committed (the rest were taken
        over or rescheduled meanwhile)."""
        by_bucket: dict[int, list[str | float]] = defaultdict(list)
        for c in commits:
            args = by_bucket[self.bucket_of(c.track)]
            args += [c.track, c.claimed_due, "" if c.next_due is None else _score(c.next_due)]
            args.append(len(c.events))
            for event in c.events:
                args += [event.id, event.encode()]
        done = await asyncio.gather(
            *(
                self._commit(keys=self._bucket_keys(b), args=[now, *args])
                for b, args in by_bucket.items()
            )
        )
        return sum(int(n) for n in done)

    async def enqueue(self, visible_at: float, events: Sequence[Outgoing]) -> None:
        """Put events straight into the outbox, to be sent from ``visible_at`` on (a manual
        trigger now, a snooze later); an id already there is kept as it is."""
        async with self._pipe() as pipe:
            for event in events:
                *_, outbox, payloads = self._bucket_keys(self.bucket_of(event.key))
                pipe.hsetnx(payloads, event.id, event.encode())
                pipe.zadd(outbox, {event.id: visible_at}, nx=True)
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
        *_, outbox, payloads = self._bucket_keys(self.bucket_of(ritual_id))
        keys = [self._idempotency(scope, ritual_id, key), outbox, payloads]
        found: str | None = await self._once(keys=keys, args=args)
        return found

    async def lease_outbox(self, now: float, lease_until: float, limit: int) -> list[Outgoing]:
        """Lease up to ``limit`` visible outbox entries, spread over every bucket."""
        per_bucket = min(MAX_PER_BUCKET, max(1, -(-limit // self.buckets)))
        found = await asyncio.gather(
            *(
                self._lease(keys=self._bucket_keys(b)[3:], args=[now, lease_until, per_bucket])
                for b in range(self.buckets)
            )
        )
        return [
            Outgoing.decode(member, raw, b)
            for b, flat in enumerate(found)
            for member, raw in zip(flat[::2], flat[1::2], strict=True)
        ]

    async def ack_outbox(self, entries: Sequence[Outgoing]) -> None:
        """Delete sent entries from their buckets' outboxes (one call per bucket)."""
        by_bucket: dict[int, list[str]] = defaultdict(list)
        for e in entries:
            by_bucket[e.bucket].append(e.id)
        await asyncio.gather(
            *(
                self._ack(keys=self._bucket_keys(b)[3:], args=ids[i : i + MAX_PER_BUCKET])
                for b, ids in by_bucket.items()
                for i in range(0, len(ids), MAX_PER_BUCKET)
            )
        )

    async def next_visible(self) -> float | None:
        """The epoch second at which the earliest track becomes claimable (due, or its
        lease running out), if any."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for b in range(self.buckets):
                queue, leases, *_ = self._bucket_keys(b)
                pipe.zrange(queue, 0, 0, withscores=True)
                pipe.zrange(leases, 0, 0, withscores=True)
            heads = await pipe.execute()
        scores = [float(head[0][1]) for head in heads if head]
        return min(scores) if scores else None

    async def next_outbox(self) -> float | None:
        """The epoch second at which the earliest outbox entry becomes sendable, if any."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for b in range(self.buckets):
                pipe.zrange(self._bucket_keys(b)[3], 0, 0, withscores=True)
            heads = await pipe.execute()
        scores = [float(head[0][1]) for head in heads if head]
        return min(scores) if scores else None

    # -- answers ------------------------------------------------------------------------
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
            for b in range(self.buckets):
                queue, leases, _, outbox, _ = self._bucket_keys(b)
                pipe.zcard(queue)
                pipe.zcard(leases)
                pipe.zcard(outbox)
            counts = await pipe.execute()
        scheduled = sum(counts[0::3]) + sum(counts[1::3])
        return {"scheduled_tracks": scheduled, "outbox": sum(counts[2::3])}
