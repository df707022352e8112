"""Content throughput end to end: ``ritual.due`` in, ``nudge.ready`` out, over a real broker
and a real Redis, this tree beside a baseline tree in the same run.

    .venv/bin/python bench/content_bench.py [--events 6000] [--couples 3000]
        [--baseline /tmp/consume-base] [--rounds 2] [--choosing]

For each tree (this one, and ``--baseline``: e.g. ``git worktree add /tmp/consume-base
main``), ``rounds`` times, alternating: a fresh embedded broker (Tansu) and redis-server,
and the content service started as its own process from that tree (``python -m
services.content``, the tree first on ``PYTHONPATH``). The records are two partners'
local occurrences per couple, as in the 21:00 herd. Two phases per round:

* herd: ``events`` records waiting when the service starts; events/s from its first
  nudge to its last (start-up and group join left out), and the service process's CPU
  time per event (less sensitive to a busy machine than events/s);
* live: ``events`` more sent as fast as the producer goes while it runs; events/s from
  the first send to the last nudge read, and each nudge's latency (send to read);
* quiet: 20 records of new couples, each sent alone once the one before was answered:
  the latency one hop adds on a quiet evening (p50, max).

``--profile DIR`` runs each service under cProfile (``DIR/content-<tree>.prof``).
``--choosing`` also times ``Content.nudge`` alone in process (Redis and the pure work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.content.decks import load_catalog
from services.content.store import ContentStore
from services.content.worker import Content
from shared import topics
from shared.events import PartnerInfo, Recipient, RitualDue
from shared.kafka import ensure_topics
from shared.redis import Keys, make_redis
from shared.settings import Settings
from tandem.embedded import start_broker, start_redis

HERE = Path(__file__).resolve().parents[1]
ALEX = PartnerInfo(id="p_a", name="Alex", timezone="Europe/Berlin")
SAM = PartnerInfo(id="p_s", name="Sam", timezone="America/New_York")
QUIET = 20  # records sent one at a time, for the quiet evening's latency
SECRET = "x0z4PZk2cOrm9dCcZzZbZxkl7S_JHQq1zcx4Nqo1nsI="  # links are signed, as in production


def events(n: int, couples: int = 500) -> list[RitualDue]:
    """``n`` due occurrences: each couple's two partners' local occurrences of a day, the
    couples' days in order."""
    out = []
    for i in range(n // 2):
        couple = f"cpl_{i % couples}"
        day = i // couples
        wall = datetime(2026, 1, 1, 7, 30) + timedelta(days=day)
        at = datetime(2026, 1, 1, 6, 30, tzinfo=UTC) + timedelta(days=day)
        for partner in (ALEX, SAM):
            out.append(
                RitualDue(
                    occurrence_id=f"r_{couple}@{at:%Y%m%dT%H%M%SZ}/{partner.id}",
                    couple_id=couple,
                    couple_name="A & S",
                    ritual_id=f"r_{couple}",
                    kind="weekly_questions",
                    title="Weekly questions",
                    delivery="local",
                    scheduled_for=at,
                    wall_time=wall,
                    ordinal=day,
                    partners=[ALEX, SAM],
                    recipients=[Recipient(**partner.model_dump(), channels=[])],
                )
            )
    return out


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


@contextmanager
def content_process(
    tree: Path, settings: Settings, log: Path, profile: Path | None = None
) -> Iterator[int]:
    """The content service of ``tree`` as a process, stopped (SIGTERM) on exit; run
    under cProfile, writing its stats to ``profile``, if given."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "TANDEM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TANDEM_KAFKA_IDEMPOTENCE": "false",
        "TANDEM_REDIS_URL": settings.redis_url,
        "TANDEM_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "TANDEM_SECRET_KEY": SECRET,
        "TANDEM_LOG_LEVEL": "WARNING",
    }
    profiling = ["-m", "cProfile", "-o", str(profile)] if profile else []
    command = [sys.executable, *profiling, "-m", "services.content"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=out)
    try:
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Driver:
    """Sends ``ritual.due`` records and reads the nudges back, noting when each arrived."""

    def __init__(self, settings: Settings) -> None:
        self.reader = AIOKafkaConsumer(
            topics.NUDGE_READY,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"bench-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,  # the instrument: it should not add latency of its own
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}

    async def __aenter__(self) -> Driver:
        await self.reader.start()
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()
        await self.reader.stop()

    async def send(self, work: list[RitualDue]) -> None:
        bodies = [
            (d.occurrence_id, d.couple_id.encode(), d.model_dump_json().encode()) for d in work
        ]
        for occurrence, key, body in bodies:
            await self.producer.send(topics.RITUAL_DUE, body, key=key)
            self.sent[occurrence] = time.perf_counter()
        await self.producer.flush()

    async def one_by_one(self, work: list[RitualDue]) -> list[float]:
        """Each record sent alone once the one before was answered: its latency (ms)."""
        latencies = []
        for due in work:
            await asyncio.sleep(0.1)
            await self.send([due])
            await self.read(len(self.seen) + 1, timeout=30)
            latencies.append((self.seen[due.occurrence_id] - self.sent[due.occurrence_id]) * 1000)
        return latencies

    async def read(self, expected: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out: {len(self.seen)} of {expected} nudges")
            batches = await self.reader.getmany(timeout_ms=200)
            now = time.perf_counter()
            for record in (r for rs in batches.values() for r in rs):
                self.seen.setdefault(json.loads(record.value)["occurrence_id"], now)


async def consumer_round(
    tree: Path, n: int, couples: int, log: Path, profile: Path | None = None
) -> dict[str, float]:
    """One measurement of ``tree``'s content service on a fresh broker and Redis: the
    herd (``n`` records waiting when the service starts: events/s from its first nudge
    to its last, and its CPU time per event), then ``n`` records sent while it runs
    (events/s from the first send to the last nudge; each nudge's latency)."""
    broker, redis = start_broker(), start_redis()
    work = events(2 * n, couples)
    herd, live = work[:n], work[n:]
    try:
        settings = Settings(
            kafka_bootstrap=f"127.0.0.1:{broker.port}",
            redis_url=f"redis://127.0.0.1:{redis.port}/0",
            topic_partitions=6,
        )
        await ensure_topics(settings)
        async with Driver(settings) as driver:
            await driver.send(herd)
            with content_process(tree, settings, log, profile) as pid:
                await driver.read(1)
                first, cpu = min(driver.seen.values()), cpu_seconds(pid)
                await driver.read(n)
                herd_took, cpu = max(driver.seen.values()) - first, cpu_seconds(pid) - cpu
                began = time.perf_counter()
                await driver.send(live)
                await driver.read(2 * n)
                live_took = max(driver.seen.values()) - began
                quiet = await driver.one_by_one(
                    [
                        d.model_copy(update={"occurrence_id": f"quiet{i}", "couple_id": f"q{i}"})
                        for i, d in enumerate(events(QUIET))
                    ]
                )
    finally:
        broker.stop()
        redis.stop()
    latencies = [(driver.seen[d.occurrence_id] - driver.sent[d.occurrence_id]) * 1000 for d in live]
    return {
        "herd_events_per_s": round((n - 1) / herd_took, 1),
        "cpu_ms_per_event": round(cpu * 1000 / (n - 1), 3),
        "live_events_per_s": round(n / live_took, 1),
        "live_p50_ms": round(pct(latencies, 50), 1),
        "live_p99_ms": round(pct(latencies, 99), 1),
        "quiet_p50_ms": round(pct(quiet, 50), 1),
        "quiet_max_ms": round(max(quiet), 1),
    }


async def choosing(n: int, concurrency: int) -> dict[str, float]:
    """``Content.nudge`` alone, in process, ``concurrency`` at once, on a fresh Redis."""
    server = start_redis()
    redis = make_redis(Settings(redis_url=f"redis://127.0.0.1:{server.port}/0"))
    try:
        content = Content(load_catalog(), ContentStore(redis, Keys("bench")), link_key=SECRET)
        work = events(n)
        gate = asyncio.Semaphore(concurrency)
        await content.nudge(work[0])  # warm the script cache and the pool

        async def one(due: RitualDue) -> None:
            async with gate:
                await content.nudge(due)

        began = time.perf_counter()
        await asyncio.gather(*(one(d) for d in work))
        return {"events_per_s": round(len(work) / (time.perf_counter() - began), 1)}
    finally:
        await redis.aclose()
        server.stop()


async def run(args: argparse.Namespace, trees: dict[str, Path]) -> None:
    log = Path(args.log)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            profile = Path(args.profile) / f"content-{name}.prof" if args.profile else None
            result = await consumer_round(tree, args.events, args.couples, log, profile)
            results[name].append(result)
            print(f"round {r + 1} {name:8} {tree}: {result}", flush=True)
    best = {name: max(rs, key=lambda x: x["herd_events_per_s"]) for name, rs in results.items()}
    summary: dict[str, object] = {"bench": "content", "events": args.events}
    for name, result in best.items():
        summary.update({f"{name}_{k}": v for k, v in result.items()})
    if "baseline" in best:
        for phase in ("herd", "live"):
            key = f"{phase}_events_per_s"
            ratio = best["this"][key] / best["baseline"][key]
            summary[f"{phase}_speedup"] = round(ratio, 1)
            print(f"content {phase}: {ratio:.1f}x the baseline (best round of {args.rounds})")
    if args.choosing:
        summary["choosing_events_per_s"] = (await choosing(args.events, 64))["events_per_s"]
    # The last line, for bench/run.py: *_per_s is a throughput, *_pNN_ms a latency quantile.
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--couples", type=int, default=3000)
    parser.add_argument("--baseline", help="another tree's root, run side by side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--choosing", action="store_true", help="also time the choosing alone")
    parser.add_argument(
        "--profile", help="a directory: run each service under cProfile, stats written there"
    )
    parser.add_argument("--log", default="/tmp/content-bench.log", help="the services' output")
    args = parser.parse_args()
    trees = {"this": HERE}
    if args.baseline:
        trees = {"baseline": Path(args.baseline).resolve(), **trees}
    asyncio.run(run(args, trees))


if __name__ == "__main__":
    main()
