"""Redis state of the notifier: the idempotency ledger and the delay queue.

Ledger, per (occurrence, partner):

- ``sent`` -- set once the partner got the nudge (the NudgeDelivered JSON), kept for
  :data:`SENT_TTL` (7 days, far beyond the retry horizon of minutes to hours). Its presence
  means "never send this again".
- ``lease`` -- a short in-flight lease (SET NX PX) taken before sending, so two replicas (or
  a redelivered record racing a retry) never send the same thing at the same moment. It
  outlives the longest possible attempt; released on failure; left to expire if we die.

Every ledger key of one occurrence shares the hash tag ``{occurrence id}``: the partners'
leases are taken in one script call (:meth:`NotifierStore.claim_sends`, one round trip
for a couple), valid on Redis Cluster, where one occurrence lives on one master and the
herd's occurrences spread over all of them.

Delay queue: a sorted set of job ids scored by due time (epoch ms) plus a hash id -> job,
split into :data:`QUEUE_BUCKETS` buckets, each its own three keys under its own hash tag
(``{notifier-q<i>}``; a job's bucket follows from its id), so every script touches one
slot and the buckets spread over a cluster's masters; a claim asks every bucket in one
pipeline.
A job id is ``occurrence|partner[+partner]`` -- deterministic, so a duplicate record or a
second replica cannot start a second retry chain for the same partner (enqueue is NX).
:meth:`NotifierStore.claim` atomically takes due jobs and pushes their score to a lease deadline:
a notifier killed mid-job loses nothing, the job simply comes due again when the lease
ends. Finishing (:meth:`ack`) or rescheduling a job is conditional on still owning the
claim token, so a slow replica cannot clobber one that took the job over.
"""

from __future__ import annotations

import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.coalesce import Coalescer, Commands
from shared.events import DeliveryAttempt, NudgeReady
from shared.redis import Keys, StrRedis

SENT_TTL = 7 * 86400
QUEUE_BUCKETS = 8

# KEYS: (sent, lease) per partner. ARGV: token, lease_ms. Per partner: state, detail.
_CLAIM_SENDS = """
local out = {}
for i = 1, #KEYS, 2 do
  local sent = redis.call('GET', KEYS[i])
  if sent then
    table.insert(out, 'sent'); table.insert(out, sent)
  elseif redis.call('SET', KEYS[i + 1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    table.insert(out, 'claimed'); table.insert(out, '')
  else
    table.insert(out, 'busy'); table.insert(out, tostring(redis.call('PTTL', KEYS[i + 1])))
  end
end
return out
"""

_MARK_SENT = """
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: due zset, jobs hash, claims hash. ARGV: now_ms, lease_until_ms, limit, token.
_CLAIM_JOBS = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HSET', KEYS[3], id, ARGV[4])
    table.insert(out, id)
    table.insert(out, job)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# KEYS: due, jobs. ARGV: id, score, job.
_ENQUEUE_NX = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# KEYS: due, jobs, claims. ARGV: id, token.
_ACK = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# KEYS: due, jobs, claims. ARGV: id, token, score, job.
_RESCHEDULE = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


class Job(BaseModel):
    """Pending work: deliver ``nudge`` to ``partners`` (one, or several held together)."""

    nudge: NudgeReady
    partners: list[str]
    attempt: int = Field(default=1, ge=1)
    # Index in the partner's channel list to start from (a timeout retries the same one).
    from_channel: int = 0
    errors: list[DeliveryAttempt] = Field(default_factory=list)
    # Where the nudge.ready record came from, for the dead letter.
    partition: int | None = None
    offset: int | None = None
    reason: Literal["retry", "hold", "recheck"] = "retry"
    # Times running this job raised an error that is not transient; bounded by
    # TANDEM_HANDLER_MAX_ATTEMPTS (Delivery.crashed), then the job is dead-lettered.
    crashes: int = Field(default=0, ge=0)

    @property
    def id(self) -> str:
        return job_id(self.nudge.occurrence_id, self.partners)


def job_id(occurrence_id: str, partners: list[str]) -> str:
    return f"{occurrence_id}|{'+'.join(sorted(partners))}"


@dataclass(frozen=True)
class Claim:
    state: Literal["claimed", "sent", "busy"]
    token: str = ""
    sent: str = ""  # the stored NudgeDelivered JSON when state == "sent"
    busy_ms: int = 0  # how long the other holder's lease still runs


@dataclass(frozen=True)
class ClaimedJob:
    job: Job
    token: str


def now_ms() -> int:
    return int(time.time() * 1000)


class NotifierStore:
    def __init__(self, redis: StrRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        # The ledger's scripts of every delivery under way go to Redis together, one
        # pipeline per loop turn (their keys share one hash tag per call: cluster-safe).
        self._ledger = Coalescer(redis)
        self._release = redis.register_script(_RELEASE)
        self._enqueue_nx = redis.register_script(_ENQUEUE_NX)
        self._ack = redis.register_script(_ACK)
        self._reschedule = redis.register_script(_RESCHEDULE)

    def _pair(self, occurrence_id: str, partner_id: str) -> tuple[str, str]:
        tag = "{" + occurrence_id + "}"
        return (
            self.keys("notifier", "sent", tag, partner_id),
            self.keys("notifier", "lease", tag, partner_id),
        )

    def _queue(self, job_id: str) -> list[str]:
        """The (due, jobs, claims) keys of the bucket holding ``job_id``."""
        return self._bucket(zlib.crc32(job_id.encode()) % QUEUE_BUCKETS)

    def _bucket(self, index: int) -> list[str]:
        tag = "{notifier-q" + str(index) + "}"
        return [self.keys("notifier", tag, name) for name in ("due", "jobs", "claims")]

    async def batched(self, commands: Commands) -> list[Any]:
        """The replies to what ``commands`` queues, sent in the pipeline of this loop turn
        with every other delivery's (:class:`shared.coalesce.Coalescer`)."""
        return await self._ledger.run(commands)

    # -- idempotency ---------------------------------------------------------------------
    async def claim_sends(
        self, occurrence_id: str, partner_leases: dict[str, float]
    ) -> dict[str, Claim]:
        """For each partner (-> lease seconds): take the in-flight lease for their copy,
        unless it was already sent (``sent``) or another sender holds it (``busy``). One
        round trip for all of them."""
        token = uuid.uuid4().hex
        partners = list(partner_leases)
        keys = [k for p in partners for k in self._pair(occurrence_id, p)]
        lease_ms = int(max(partner_leases.values()) * 1000)
        [flat] = await self._ledger.run(
            lambda pipe: pipe.eval(_CLAIM_SENDS, len(keys), *keys, token, lease_ms)
        )
        claims: dict[str, Claim] = {}
        for partner, state, detail in zip(partners, flat[::2], flat[1::2], strict=True):
            if state == "sent":
                claims[partner] = Claim("sent", sent=detail)
            elif state == "busy":
                claims[partner] = Claim("busy", busy_ms=max(int(detail), 0))
            else:
                claims[partner] = Claim("claimed", token=token)
        return claims

    async def mark_sent(self, occurrence_id: str, partner_id: str, token: str, event: str) -> None:
        """Record the delivery (for :data:`SENT_TTL`) and drop our lease."""
        keys = self._pair(occurrence_id, partner_id)
        await self._ledger.run(
            lambda pipe: pipe.eval(_MARK_SENT, len(keys), *keys, token, event, SENT_TTL)
        )

    async def release(self, occurrence_id: str, partner_id: str, token: str) -> None:
        await self._release(keys=[self._pair(occurrence_id, partner_id)[1]], args=[token])

    async def sent(self, occurrence_id: str, partner_id: str) -> str | None:
        return await self.redis.get(self._pair(occurrence_id, partner_id)[0])

    # -- delay queue ---------------------------------------------------------------------
    async def enqueue(self, job: Job, due_ms: int) -> bool:
        """Add ``job`` due at ``due_ms`` unless a job with its id is already pending."""
        added = await self._enqueue_nx(
            keys=self._queue(job.id)[:2], args=[job.id, due_ms, job.model_dump_json()]
        )
        return bool(added)

    async def claim(self, limit: int, lease_s: float) -> list[ClaimedJob]:
        """Take up to ``limit`` due jobs for ``lease_s`` seconds: each bucket's claim is
        atomic (its script), and all buckets are asked in one pipeline, each for its share
        of ``limit`` (at least one)."""
        now = now_ms()
        token = uuid.uuid4().hex
        share = max(1, limit // QUEUE_BUCKETS)
        args: list[str | int] = [now, now + int(lease_s * 1000), share, token]
        # EVAL, not EVALSHA: a cluster client refuses EVALSHA in a pipeline (it cannot load
        # a missing script there), and the source is short.
        async with self.redis.pipeline(transaction=False) as pipe:
            for index in range(QUEUE_BUCKETS):
                keys = self._bucket(index)
                pipe.eval(_CLAIM_JOBS, len(keys), *keys, *args)
            replies = await pipe.execute()
        return [
            ClaimedJob(Job.model_validate_json(flat[i + 1]), token)
            for flat in replies
            for i in range(0, len(flat), 2)
        ]

    async def adopt_legacy_queue(self) -> int:
        """Move jobs from the single-key delay queue of earlier versions (``notifier:due``
        and ``notifier:jobs``, without hash tags) into the buckets, keeping their due
        times (a job claimed then is due when its claim ends); how many were moved. Run
        at start by every replica: enqueueing is NX by job id, so two replicas adopting at
        once move each job once. Single-key commands only, so it is valid on a cluster
        (where no legacy queue can exist)."""
        due, jobs = self.keys("notifier", "due"), self.keys("notifier", "jobs")
        moved = 0
        for job_id, score in await self.redis.zrange(due, 0, -1, withscores=True):
            raw = await self.redis.hget(jobs, job_id)
            if raw is not None:
                moved += await self.enqueue(Job.model_validate_json(raw), int(score))
            await self.redis.zrem(due, job_id)
            await self.redis.hdel(jobs, job_id)
        if moved:
            await self.redis.delete(self.keys("notifier", "claims"))
        return moved

    async def ack(self, claimed: ClaimedJob) -> bool:
        """Remove a finished job (only if we still own its claim)."""
        return bool(
            await self._ack(keys=self._queue(claimed.job.id), args=[claimed.job.id, claimed.token])
        )

    async def reschedule(self, claimed: ClaimedJob, job: Job, due_ms: int) -> bool:
        """Replace a claimed job by ``job`` (same id) due at ``due_ms``."""
        return bool(
            await self._reschedule(
                keys=self._queue(claimed.job.id),
                args=[claimed.job.id, claimed.token, due_ms, job.model_dump_json()],
            )
        )
