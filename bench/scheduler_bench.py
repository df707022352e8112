"""The 07:30 herd: N rituals due in the same minute, drained by R scheduler processes.

    .venv/bin/python bench/scheduler_bench.py [--rituals 100000] [--replicas 2]

Starts an embedded broker and Redis (or uses TANDEM_KAFKA_BOOTSTRAP / TANDEM_REDIS_URL),
writes N daily rituals (two per couple, through the scheduler's own store) that are all due
at the same minute boundary, starts R scheduler processes, and reads ``ritual.due`` back
from the broker. Reports: time from the due instant until the last record was acknowledged,
lateness p50/p99 (Kafka record timestamp minus scheduled instant), duplicates and misses
(counted by occurrence id against what was seeded), and Redis memory per ritual.
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


async def seed(store: SchedulerStore, n: int, due: datetime) -> set[str]:
    """Write ``n`` rituals due at ``due`` (a daily rule at that UTC minute); return the
    occurrence ids that must fire."""
    now = datetime.now(UTC)
    rule = f"FREQ=DAILY;BYHOUR={due.hour};BYMINUTE={due.minute}"
    expected: set[str] = set()
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
            schedule=ScheduleSpec(rrule=rule, timezone="UTC", start=datetime(2026, 1, 1)),
            created_at=now,
        )
        expected.add(str(OccurrenceId(ritual.id, due)))
        return ritual, {ritual.id: due.timestamp()}

    batch: list[NewCouple] = []
    for c, couple in enumerate(couples):
        urls = {ch.id: "ntfy://127.0.0.1:9/topic" for p in couple.partners for ch in p.channels}
        rituals = [ritual_of(couple) for _ in range(min(2, n - 2 * c))]
        batch.append(NewCouple(couple, new_id("ct"), urls, rituals))
        if len(batch) >= 1000:
            await store.create_couples(batch)
            batch = []
    await store.create_couples(batch)
    return expected


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rituals", type=int, default=100_000)
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()

    started = []
    bootstrap = os.environ.get("TANDEM_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("TANDEM_REDIS_URL")
    if not bootstrap:
        broker = start_broker()
        started.append(broker)
        bootstrap = f"127.0.0.1:{broker.port}"
    if not redis_url:
        redis_proc = start_redis()
        started.append(redis_proc)
        redis_url = f"redis://127.0.0.1:{redis_proc.port}/0"
    key = SecretBox.generate_key()
    settings = Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        redis_prefix="bench",
        kafka_idempotence=not started or started[0].name != "kafka",
        admin_token="bench",
        secret_key=key,
        topic_partitions=6,
    )
    env = {
        **os.environ,
        "TANDEM_KAFKA_BOOTSTRAP": bootstrap,
        "TANDEM_REDIS_URL": redis_url,
        "TANDEM_REDIS_PREFIX": "bench",
        "TANDEM_ADMIN_TOKEN": "bench",
        "TANDEM_SECRET_KEY": key,
        "TANDEM_KAFKA_IDEMPOTENCE": str(settings.kafka_idempotence).lower(),
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
        memory_before = (await redis.info("memory"))["used_memory"]
        began = time.monotonic()
        # The herd is due at the first minute boundary far enough ahead to seed and start.
        due = (datetime.now(UTC) + timedelta(seconds=20 + args.rituals / 4000)).replace(
            second=0, microsecond=0
        ) + timedelta(minutes=1)
        expected = await seed(store, args.rituals, due)
        seed_seconds = time.monotonic() - began
        memory_per_ritual = (
            (await redis.info("memory"))["used_memory"] - memory_before
        ) / args.rituals
        print(
            f"seeded {args.rituals} rituals in {seed_seconds:.1f}s; due at {due.isoformat()}",
            flush=True,
        )

        for _ in range(args.replicas):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "services.scheduler"],
                    cwd=ROOT,
                    env={**env, "TANDEM_API_PORT": str(port)},
                )
            )
            wait_for_port(port, timeout=60, proc=procs[-1])

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
        deadline = due.timestamp() + 600
        while set(counts) < expected and time.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    counts[event["occurrence_id"]] += 1
                    ts = record.timestamp / 1000
                    last_ts = max(last_ts, ts)
                    lateness.append(ts - datetime.fromisoformat(event["scheduled_for"]).timestamp())
        # keep listening briefly for late duplicates
        end = time.time() + 3
        while time.time() < end:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    counts[json.loads(record.value)["occurrence_id"]] += 1
        await consumer.stop()
        missing = sorted(expected - set(counts))
        if missing:  # where the schedule has them, to say why
            tracks = [m.partition("@")[0] for m in missing[:20]]
            print(f"missed {len(missing)}, e.g. {tracks[:3]}: due {await store.due_of(tracks)}")
            print(f"backlog {await store.backlog()}")

        summary = {
            "bench": "scheduler_herd",
            "rituals": args.rituals,
            "replicas": args.replicas,
            "drain_seconds": round(last_ts - due.timestamp(), 3),
            "throughput_per_s": round(args.rituals / max(1e-9, last_ts - due.timestamp()), 1),
            "lateness_p50_s": round(pct(lateness, 0.50), 3),
            "lateness_p99_s": round(pct(lateness, 0.99), 3),
            "duplicates": sum(c - 1 for c in counts.values() if c > 1),
            "missed": len(expected - set(counts)),
            "unexpected": len(set(counts) - expected),
            "redis_bytes_per_ritual": round(memory_per_ritual),
            "machine": (
                f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
            ),
        }
        print(
            f"drained {args.rituals} in {summary['drain_seconds']}s "
            f"with {args.replicas} replica(s); "
            f"lateness p50 {summary['lateness_p50_s']}s p99 {summary['lateness_p99_s']}s; "
            f"duplicates {summary['duplicates']}, missed {summary['missed']}; "
            f"{summary['redis_bytes_per_ritual']} Redis bytes per ritual"
        )
        print(json.dumps(summary))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        await redis.aclose()
        for s in started:
            s.stop()


if __name__ == "__main__":
    asyncio.run(main())
