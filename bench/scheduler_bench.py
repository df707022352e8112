"""The 07:30 herd: N rituals due at the same second, drained by R scheduler processes.

    .venv/bin/python bench/scheduler_bench.py [--rituals 100000] [--replicas 2]
        [--baseline DIR --rounds 2] [--profile DIR]

Starts an embedded broker and Redis, writes N daily rituals (two per couple, through the
scheduler's own store) that are all due at the same second, starts R scheduler processes,
and reads ``ritual.due`` back from the broker. Reports: time from the due instant until the
last record was acknowledged, lateness p50/p99 (Kafka record timestamp minus scheduled
instant), duplicates and misses (counted by occurrence id against what was seeded), Redis
memory per ritual, and the replicas' CPU seconds from 1 s before the instant until the last
record was read (+3 s): CPU per ritual is the figure to compare on a busy machine.

``--baseline DIR``: a second checkout (e.g. ``git worktree add /tmp/base <commit>``) whose
replicas drain the same herd on fresh servers, alternating with this tree's, ``--rounds``
times each. ``--profile DIR``: each replica runs under cProfile, stats in DIR.
The last line printed is a JSON summary (collected by bench/run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer

from services.scheduler.rituals import Channel, Couple, Partner, Ritual, ScheduleSpec
from services.scheduler.store import NewCouple, SchedulerStore
from shared.ids import OccurrenceId, new_id
from shared.kafka import ensure_topics
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.topics import RITUAL_DUE
from shared.vault import Vault
from tandem.embedded import free_port, start_broker, start_redis, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# Every ritual fires each minute at this second; the herd is one such minute, due at once.
SECOND = 7


async def seed(store: SchedulerStore, n: int) -> list[str]:
    """Write ``n`` rituals (a minutely rule at second ``SECOND``) scheduled an hour ahead,
    so seeding may take as long as it takes; returns their ids (:func:`due_at` brings
    them forward)."""
    now = datetime.now(UTC)
    first = now.replace(second=SECOND, microsecond=0) + timedelta(hours=1)
    rule = f"FREQ=MINUTELY;BYSECOND={SECOND}"
    start = now.replace(minute=0, second=0, microsecond=0, tzinfo=None)
    ids: list[str] = []
    couples: list[Couple] = []
    for c in range((n + 1) // 2):
        partners = [
            Partner(
                id=new_id("prt"),
                name=name,
                timezone=zone,
                channels=[Channel(id=new_id("chn"), kind="push", redacted="ntfy://127.0.0.1/...")],
            )
            for name, zone in (("Sam", "UTC"), ("Alex", "UTC"))
        ]
        couples.append(
            Couple(id=new_id("cpl"), name=f"couple {c}", partners=partners, created_at=now)
        )

    def ritual_of(couple: Couple) -> tuple[Ritual, dict[str, float | None]]:
        ritual = Ritual(
            id=new_id("rit"),
            couple_id=couple.id,
            kind="morning_kiss",
            title="Six-second kiss",
            # started this hour: a minutely rule's walk from its start stays short
            schedule=ScheduleSpec(rrule=rule, timezone="UTC", start=start),
            created_at=now,
        )
        ids.append(ritual.id)
        return ritual, {ritual.id: first.timestamp()}

    batch: list[NewCouple] = []
    for c, couple in enumerate(couples):
        urls = {ch.id: "ntfy://127.0.0.1:9/topic" for p in couple.partners for ch in p.channels}
        rituals = [ritual_of(couple) for _ in range(min(2, n - 2 * c))]
        batch.append(NewCouple(couple, new_id("ct"), urls, rituals))
        if len(batch) >= 1000:
            await store.create_couples(batch)
            batch = []
    await store.create_couples(batch)
    return ids


async def due_at(store: SchedulerStore, lead: float) -> datetime:
    """Bring every seeded track forward to the first slot at least ``lead`` seconds ahead
    (as a reschedule would, announced on the wake-up channel); returns that instant."""
    soon = datetime.now(UTC) + timedelta(seconds=lead)
    due = soon.replace(second=SECOND, microsecond=0)
    if due < soon:
        due += timedelta(minutes=1)
    for b in range(store.buckets):
        queue = store._bucket_keys(b)[0]
        tracks = await store.redis.zrange(queue, 0, -1)
        if tracks:
            await store.redis.zadd(queue, dict.fromkeys(tracks, due.timestamp()), xx=True)
    await store.redis.publish(store.wake_channel(), repr(due.timestamp()))
    return due


def replica_command(profile: Path | None, index: int) -> list[str]:
    """How a replica is started: ``python -m services.scheduler``, under cProfile when
    profiling (the stats are written when it stops on SIGTERM)."""
    if profile is None:
        return [sys.executable, "-m", "services.scheduler"]
    out = profile / f"replica-{index}.prof"
    return [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "services.scheduler"]


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> list[float]:
    """User + system CPU seconds each process has used so far."""
    times = [psutil.Process(p.pid).cpu_times() for p in procs]
    return [t.user + t.system for t in times]


async def consume(bootstrap: str, expected: set[str]) -> tuple[Counter[str], list[float], float]:
    """Read ``ritual.due`` until every expected occurrence arrived (or 10 minutes), then 3 s
    more for late duplicates: (count per occurrence id, lateness per record, the last
    record's timestamp)."""
    consumer = AIOKafkaConsumer(
        RITUAL_DUE,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{new_id('g')}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    lateness: list[float] = []
    last_ts = 0.0
    try:
        deadline = time.time() + 600
        while expected - counts.keys() and time.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    counts[event["occurrence_id"]] += 1
                    if event["occurrence_id"] not in expected:
                        continue  # the next minute's, when a drain takes that long
                    ts = record.timestamp / 1000
                    last_ts = max(last_ts, ts)
                    lateness.append(ts - datetime.fromisoformat(event["scheduled_for"]).timestamp())
        end = time.time() + 3
        while time.time() < end:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    counts[json.loads(record.value)["occurrence_id"]] += 1
    finally:
        await consumer.stop()
    return counts, lateness, last_ts


async def herd(code: Path, n: int, replicas: int, profile: Path | None = None) -> dict[str, Any]:
    """One herd on a fresh embedded broker and Redis: ``n`` rituals seeded, drained by
    ``replicas`` scheduler processes run from the tree ``code``; its summary."""
    broker = start_broker()
    redis_proc = start_redis()
    bootstrap = f"127.0.0.1:{broker.port}"
    redis_url = f"redis://127.0.0.1:{redis_proc.port}/0"
    key = SecretBox.generate_key()
    settings = Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        redis_prefix="bench",
        kafka_idempotence=False,  # Tansu has no idempotent producer
        admin_token="bench",
        secret_key=key,
        topic_partitions=6,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "TANDEM_KAFKA_BOOTSTRAP": bootstrap,
        "TANDEM_REDIS_URL": redis_url,
        "TANDEM_REDIS_PREFIX": "bench",
        "TANDEM_ADMIN_TOKEN": "bench",
        "TANDEM_SECRET_KEY": key,
        "TANDEM_KAFKA_IDEMPOTENCE": "false",
        "TANDEM_TOPIC_PARTITIONS": "6",
        "TANDEM_LOG_LEVEL": "WARNING",
    }
    redis = make_redis(settings)
    keys = Keys("bench")
    store = SchedulerStore(
        redis, keys, Vault(redis, keys, SecretBox(key)), buckets=settings.scheduler_buckets
    )
    await ensure_topics(settings)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(replicas):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    replica_command(profile, i),
                    cwd=code,
                    env={**env, "TANDEM_API_PORT": str(port)},
                )
            )
            wait_for_port(port, timeout=60, proc=procs[-1])
        memory_before = (await redis.info("memory"))["used_memory"]
        began = time.monotonic()
        ids = await seed(store, n)
        seed_seconds = time.monotonic() - began
        memory_per_ritual = ((await redis.info("memory"))["used_memory"] - memory_before) / n
        due = await due_at(store, lead=3)
        expected = {str(OccurrenceId(r, due)) for r in ids}
        print(f"  seeded {n} rituals in {seed_seconds:.1f}s; due at {due.isoformat()}", flush=True)
        await asyncio.sleep(due.timestamp() - 1 - time.time())
        cpu_before = cpu_seconds(procs)
        counts, lateness, last_ts = await consume(bootstrap, expected)
        cpu = [a - b for a, b in zip(cpu_seconds(procs), cpu_before, strict=True)]
        missing = sorted(expected - set(counts))
        if missing:  # where the schedule has them, to say why
            tracks = [m.partition("@")[0] for m in missing[:20]]
            print(f"  missed {len(missing)}, e.g. {tracks[:3]}: due {await store.due_of(tracks)}")
            print(f"  backlog {await store.backlog()}")
        drain = last_ts - due.timestamp()
        return {
            "rituals": n,
            "replicas": replicas,
            "drain_seconds": round(drain, 3),
            "throughput_per_s": round(n / max(1e-9, drain), 1),
            "lateness_p50_s": round(pct(lateness, 0.50), 3),
            "lateness_p99_s": round(pct(lateness, 0.99), 3),
            "duplicates": sum(c - 1 for c in counts.values() if c > 1),
            "missed": len(missing),
            "unexpected": len(set(counts) - expected),
            "redis_bytes_per_ritual": round(memory_per_ritual),
            # from 1 s before the instant until the last record was read, plus 3 s quiet
            "cpu_s_per_replica": [round(c, 2) for c in cpu],
            "cpu_ms_per_ritual": round(1000 * sum(cpu) / n, 3),
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        await redis.aclose()
        redis_proc.stop()
        broker.stop()


def line(label: str, s: dict[str, Any]) -> str:
    return (
        f"{label}: drained {s['rituals']} in {s['drain_seconds']}s "
        f"with {s['replicas']} replica(s); CPU {s['cpu_ms_per_ritual']} ms/ritual "
        f"({s['cpu_s_per_replica']} s); lateness p50 {s['lateness_p50_s']}s "
        f"p99 {s['lateness_p99_s']}s; duplicates {s['duplicates']}, missed {s['missed']}; "
        f"{s['redis_bytes_per_ritual']} Redis bytes per ritual"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rituals", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout: its replicas drain the same herd, "
        "alternating with this tree's, in this run",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="write each replica's cProfile stats here")
    args = parser.parse_args()

    trees = [("this tree", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    for r in range(args.rounds):
        for label, code in trees if r % 2 == 0 else trees[::-1]:
            profile = args.profile / f"{label.replace(' ', '-')}-{r}" if args.profile else None
            if profile:
                profile.mkdir(parents=True, exist_ok=True)
            result = await herd(code, args.rituals, args.replicas, profile)
            runs[label].append(result)
            print(line(f"{label} (round {r + 1})", result), flush=True)
    summary = {
        "bench": "scheduler_herd",
        **runs["this tree"][-1],
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    if args.baseline:
        summary["baseline_runs"] = runs["baseline"]
        summary["runs"] = runs["this tree"]
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
