"""The schedule in buckets, over a real Redis and a real broker: two replicas claim every
bucket without a leader (nothing fired twice, nothing missed), the firing loop wakes at the
due instant rather than on its tick, history stays bounded and expires, and a couple with
one ritual costs at most 2,000 bytes of Redis (MEMORY USAGE)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.scheduler.history import NudgeHistory
from services.scheduler.store import SchedulerStore
from shared.events import NudgeReady, Prompt
from shared.ids import OccurrenceId, new_id
from shared.redis import Keys, is_cluster, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.topics import RITUAL_DUE
from shared.vault import Vault
from tandem.embedded import free_port, wait_for_port
from tests.integration.test_scheduler_firing import _seed
from tests.support.content import ritual_due
from tests.support.kafka import TopicReader
from tests.support.scheduler import ADMIN, couple_body, running_scheduler

# Far longer than any wake-up here may take: a firing this late waited for the tick.
SLOW_TICK = 30.0


def _store(settings: Settings) -> SchedulerStore:
    redis = make_redis(settings)
    keys = Keys(settings.redis_prefix)
    vault = Vault(redis, keys, SecretBox(settings.secret_key or ""))
    return SchedulerStore(redis, keys, vault, buckets=settings.scheduler_buckets)


def _spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.scheduler"],
        env={**env, "TANDEM_API_PORT": str(port)},
        stderr=subprocess.PIPE,
    )
    wait_for_port(port, timeout=60, proc=proc)
    return proc


async def test_two_replicas_share_the_buckets_without_double_fire_or_miss(infra) -> None:
    overrides = {"scheduler_batch": 40, "scheduler_buckets": 8}
    settings = infra.settings(**overrides)
    store = _store(settings)
    procs = [_spawn(infra.env(**overrides)) for _ in range(2)]
    try:
        at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        _, made = await _seed(store, 400, at=at)
        assert {store.bucket_of(r.id) for r in made} == set(range(8))  # every bucket has work
        expected = {str(OccurrenceId(r.id, at)) for r in made}
        async with TopicReader(settings, RITUAL_DUE) as reader:
            await reader.until(lambda rs: len(rs) >= len(expected), timeout=90)
            await reader.quiet(3.0)
        counts = Counter(r["occurrence_id"] for r in reader.records)
        assert set(counts) == expected
        assert max(counts.values()) == 1, [o for o, c in counts.items() if c > 1][:5]
        assert (await store.backlog()) == {"scheduled_tracks": 0, "outbox": 0}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(30) == 0, p.stderr.read().decode()[-2000:] if p.stderr else ""
        await store.redis.aclose()


async def test_a_ritual_saved_here_fires_at_its_instant_not_on_the_tick(infra) -> None:
    settings = infra.settings(scheduler_tick_seconds=SLOW_TICK)
    async with (
        running_scheduler(settings) as (_, api),
        TopicReader(settings, RITUAL_DUE) as reader,
    ):
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        await reader.quiet(1.5)  # the firing loop is asleep, for up to SLOW_TICK
        at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
        saved = await api.post(
            f"/v1/couples/{couple['id']}/rituals",
            json={"kind": "hug", "schedule": {"at": at.isoformat()}},
            headers=ADMIN,
        )
        assert saved.status_code == 201, saved.text
        await reader.until(lambda rs: len(rs) >= 1, timeout=SLOW_TICK / 2)
        assert datetime.fromisoformat(reader.records[0]["scheduled_for"]) == at


async def test_a_ritual_saved_by_another_process_wakes_the_replica(infra) -> None:
    settings = infra.settings(scheduler_tick_seconds=SLOW_TICK)
    other = _store(settings)  # another process's store: only Redis pub/sub reaches the loop
    try:
        async with (
            running_scheduler(settings),
            TopicReader(settings, RITUAL_DUE) as reader,
        ):
            await reader.quiet(1.5)  # the firing loop is asleep, for up to SLOW_TICK
            at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
            _, made = await _seed(other, 1, at=at, couples=1)
            await reader.until(lambda rs: len(rs) >= 1, timeout=SLOW_TICK / 2)
            assert reader.records[0]["occurrence_id"] == str(OccurrenceId(made[0].id, at))
    finally:
        await other.redis.aclose()


def _ready(couple_id: str, n: int, at: datetime) -> NudgeReady:
    due = ritual_due(
        "hug",
        title=f"Hug {n}",
        couple_id=couple_id,
        occurrence_id=str(OccurrenceId("rit_1", at)),
        scheduled_for=at,
    )
    prompt = Prompt(deck="hug", prompt_id="p1", text="Hug")
    return NudgeReady(**due.model_dump(), prompt=prompt, messages=[])


async def test_history_keeps_the_newest_and_expires(infra) -> None:
    settings = infra.settings()
    redis = make_redis(settings)
    keys = Keys(f"{settings.redis_prefix}-history")
    history = NudgeHistory(redis, keys, keep=3, ttl=120)
    couple_id = new_id("cpl")
    start = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
    try:
        for n in range(5):
            await history.record_ready(_ready(couple_id, n, start + timedelta(days=n)))
        recent = await history.recent(couple_id, 10)
        assert [r["title"] for r in recent] == ["Hug 4", "Hug 3", "Hug 2"]
        stored = [k async for k in redis.scan_iter(match=keys("*"))]
        assert len(stored) == 4, stored  # the index and the three kept entries, no more
        for key in stored:
            assert 0 < await redis.ttl(key) <= 120, key
    finally:
        await redis.aclose()


async def test_a_couple_with_one_ritual_costs_at_most_1000_bytes_1080_on_a_cluster(infra) -> None:
    # its own deployment (prefix), so every key in it is this couple's; as long as the
    # default prefix `tandem`, so the figure is the one a deployment sees
    settings = infra.settings(redis_prefix=f"t{infra.prefix[-5:]}", scheduler_buckets=1)
    async with running_scheduler(settings) as (scheduler, api):
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        saved = await api.post(
            f"/v1/couples/{couple['id']}/rituals",
            json={"kind": "evening_checkin"},
            headers=ADMIN,
        )
        assert saved.status_code == 201, saved.text
        redis = scheduler.redis
        sizes = {
            key: await redis.memory_usage(key, samples=0) or 0
            async for key in redis.scan_iter(match=f"{settings.redis_prefix}:*")
            if ":ratelimit:" not in key  # the API's request counters, not the couple's
        }
    # The target: 1,000. Per key on one Redis (MEMORY USAGE, this couple, whose
    # record carries two long redacted Apprise URLs): the couple record 296 (728 in
    # c44b517's plain JSON), its encrypted channels 296 (408), the ritual 168 (408), the
    # index hash 136, the schedule's queue 104: 1,000, against ~1,970 in c44b517 and
    # ~2,900 before that -- no token lookup key (152) since a token names its couple. The
    # sizes are jemalloc's size classes, so they move in steps (the couple record and the
    # channels each sit 16 bytes above the class below). A cluster node keeps ~16 bytes
    # more per key for its slot index: 1,080. A bound, so a change that grows a couple's
    # footprint fails here.
    limit = 1080 if is_cluster(redis) else 1000
    assert sum(sizes.values()) <= limit, sizes
