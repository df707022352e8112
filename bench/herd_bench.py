"""The 21:00 herd, measured over the whole path: N couples, one nudge each, due at one instant.

    .venv/bin/python bench/herd_bench.py [--couples 1000] [--scheduler 2] [--notifier 2]
        [--quiet 10] [--vs-apscheduler 20000] [--aps-redis-max M] [--no-herd]
        [--redis single|cluster] [--sink-latency-ms 0]

Starts the suite with the ``tandem dev`` machinery (:class:`tandem.dev.DevStack`: embedded
broker and Redis, ``--scheduler`` scheduler and ``--notifier`` notifier processes, one
content process) and a fast HTTP sink of its own on 127.0.0.1 (raw asyncio, allowed through
``TANDEM_CHANNEL_ALLOW``) that records when each partner's Apprise ``json://`` POST arrived
(and answers ``--sink-latency-ms`` later: a provider's answer time; the services' settings,
``TANDEM_DELIVERY_PER_HOST`` among them, come from this process's environment).

1. Quiet evening: one couple, ``--quiet`` one-off rituals a few seconds apart (each fires
   alone); lateness of every delivery relative to its instant (p50, max).
2. The herd: N couples created through the API (16 requests in flight, round robin over
   the scheduler replicas; couples/s measured), then one ``at`` one-off ritual each, all due
   at one shared instant; waits until every partner's nudge arrived (or a deadline) and
   reports lateness (p50, p99, max = when the last phone buzzed), partner skew per couple,
   duplicates and misses at the sink, and each process's RSS (before and after the herd)
   and CPU seconds from /proc. Per Redis master (``bench/redis_nodes.py``): keys and used
   memory empty, with the couples created and after the herd (so keys and bytes per
   couple), commands per second by command and Redis CPU over the herd (``INFO``
   deltas), and how fast the master's share of the herd's schedule was claimed and
   committed (its bucket queues polled every 50 ms).
3. With ``--vs-apscheduler N``: the scheduler-only herd side by side with APScheduler 3.11
   (the ``bench`` extra): N rituals drained to Kafka by Tandem's scheduler
   (``bench/scheduler_bench.py``) vs N APScheduler ``date`` jobs due at the same instant,
   each publishing one record to Kafka, with its memory job store and its Redis job store,
   as a BackgroundScheduler (thread pool of 10, the usual pick) and as an AsyncIOScheduler
   (coroutine jobs). Each variant runs twice: with APScheduler's defaults (misfire_grace_time
   1 s: a job that cannot start within a second of its instant is dropped, so its "drain" is
   partly giving up) and in a fair configuration (job defaults ``misfire_grace_time=None,
   coalesce=False``, as APScheduler's user guide describes, which runs every job however
   late). Ratios of Tandem's drain against the fair rows are the like-for-like ones.
   ``--aps-redis-max M`` caps the Redis store's jobs at M (its seeding alone takes ~0.5 ms a
   job); a capped row is labelled and compared per job (drain ms per 1,000 jobs).

``--redis cluster`` runs the suite on a local 3-master Redis Cluster
(:func:`tests.support.redis_cluster.started_cluster`: ``redis-server --cluster-enabled yes``
on free ports, ``redis-cli --cluster create``) through ``TANDEM_REDIS_URL=redis+cluster://``
instead of ``tandem dev``'s single Redis.

Writes ``bench/results/herd-<N>.json`` (``herd-<N>-cluster.json`` on a cluster; and
``herd-vs-apscheduler-<N>.json``), prints a table, and as its last line a JSON summary that
``bench/run.py`` collects and charts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis_nodes import ClaimWatch, Nodes, store_figures  # noqa: E402  (this folder)
from spy import sampling  # noqa: E402  (this folder)

from tandem.dev import DevStack  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def pct(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def r3(x: float) -> float:
    return round(x, 3)


# -- the sink ------------------------------------------------------------------------------


class Sink:
    """An HTTP server on 127.0.0.1 (its own thread and event loop) that answers every
    request 200 ``latency`` seconds after it came (at once by default; a real provider
    takes ~0.1-0.3 s) and records ``(path, time.time())`` on arrival of the whole body,
    and the nudge's title by arrival index."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.arrivals: list[tuple[str, float]] = []
        self.titles: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="herd-sink", daemon=True)

    def start(self) -> Sink:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def url(self, address: str) -> str:
        """A partner's channel: the sink at ``address``, with a secret of its own in a
        header, as a real webhook carries one (the notifier remembers it, to mask it in
        every log line, as it would a provider's token)."""
        return f"json://127.0.0.1:{self.port}/{address}?+X-Token={secrets.token_urlsafe(16)}"

    @property
    def allow(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if " " in lines[0] else ""
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value.strip())
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                body = await reader.readexactly(length) if length else b""
                at = time.time()
                try:
                    title = str(json.loads(body).get("title", ""))
                except (ValueError, AttributeError):
                    title = ""
                self.titles.append(title)  # before the arrival: readers index by arrivals
                self.arrivals.append((path.lstrip("/"), at))
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def since(self, index: int) -> list[tuple[str, float]]:
        return self.arrivals[index:]


# -- /proc ---------------------------------------------------------------------------------


def proc_stats(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    """RSS (MiB) and CPU seconds (user + system) of each process, from /proc."""
    out: dict[str, dict[str, float]] = {}
    for name, pid in pids.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            statm = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
        out[name] = {"rss_mib": round(int(statm[1]) * PAGE / 2**20, 1), "cpu_s": round(cpu, 2)}
    return out


# -- the API -------------------------------------------------------------------------------


def couple_body(sink: Sink, tag: str) -> dict[str, Any]:
    return {
        "name": f"herd {tag}",
        "partners": [
            {
                "name": name,
                "timezone": "UTC",
                "channels": [{"url": sink.url(f"{tag}/{side}"), "kind": "push"}],
                "quiet_hours": None,
            }
            for name, side in (("Sam", "a"), ("Alex", "b"))
        ],
    }


def ritual_body(at: datetime, title: str = "Evening check-in") -> dict[str, Any]:
    return {
        "kind": "evening_checkin",
        "title": title,
        "schedule": {"at": at.isoformat(timespec="milliseconds")},
        "delivery": "together",
        "rotation": None,
        "deck": None,
    }


async def in_flight(n: int, concurrency: int, job: Any) -> list[Any]:
    """Run ``job(i)`` for i in range(n), ``concurrency`` at a time; results in order."""
    results: list[Any] = [None] * n
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            results[i] = await job(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    for attempt in range(5):
        response = await client.post(url, json=body)
        if response.status_code == 429 and attempt < 4:
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        response.raise_for_status()
        return dict(response.json())
    raise AssertionError("unreachable")


# -- the herd ------------------------------------------------------------------------------


def wait_for(sink: Sink, start: int, expected: set[str], deadline: float) -> None:
    """Until every expected path arrived after index ``start`` (or the deadline), then a
    short while longer for late duplicates."""
    while time.time() < deadline:
        if expected <= {p for p, _ in sink.since(start)}:
            break
        time.sleep(0.05)
    time.sleep(2.0)


async def quiet_evening(stack: DevStack, sink: Sink, repeats: int, gap: float) -> dict[str, Any]:
    """One couple, ``repeats`` one-off rituals ``gap`` seconds apart."""
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    start = len(sink.arrivals)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=headers, timeout=30, trust_env=False
    ) as client:
        couple = await post(client, "/v1/couples", couple_body(sink, "quiet"))
        first = datetime.now(UTC) + timedelta(seconds=3)
        instants = [first + timedelta(seconds=gap * k) for k in range(repeats)]
        for k, at in enumerate(instants):
            await post(
                client,
                f"/v1/couples/{couple['id']}/rituals",
                ritual_body(at, f"quiet {k}"),
            )
    wait_for_count(sink, start, 2 * repeats, instants[-1].timestamp() + 30)
    arrivals = sink.since(start)
    titles = sink.titles[start : start + len(arrivals)]
    lateness: list[float] = []
    out_of_order = 0
    seen: dict[str, int] = {}  # per partner: the last nudge number that arrived
    for (path, at_), title in zip(arrivals, titles, strict=True):
        k = int(title.rsplit(" ", 1)[-1])
        lateness.append(at_ - instants[k].timestamp())
        out_of_order += k < seen.get(path, -1)
        seen[path] = k
    return {
        "repeats": repeats,
        "delivered": len(arrivals),
        "expected": 2 * repeats,
        "lateness_p50_s": r3(pct(lateness, 0.5)),
        "lateness_max_s": r3(max(lateness) if lateness else float("nan")),
        "lateness_all_s": [r3(x) for x in lateness],
        "out_of_order": out_of_order,
    }


def wait_for_count(sink: Sink, start: int, count: int, deadline: float) -> None:
    while time.time() < deadline and len(sink.arrivals) - start < count:
        time.sleep(0.05)
    time.sleep(1.0)


async def herd(
    stack: DevStack, sink: Sink, n: int, concurrency: int, nodes: Nodes, spy: Path | None = None
) -> dict[str, Any]:
    """The herd itself (see the module docstring); ``spy``: a folder for py-spy samples of
    every service process over the herd (``bench/spy.py`` reads them)."""
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    empty = nodes.snapshot()
    urls = stack.scheduler_urls
    clients = [
        httpx.AsyncClient(
            base_url=u,
            headers=headers,
            timeout=60,
            trust_env=False,
            limits=httpx.Limits(max_connections=concurrency),
        )
        for u in urls
    ]
    try:
        began = time.monotonic()
        couples = await in_flight(
            n,
            concurrency,
            lambda i: post(clients[i % len(clients)], "/v1/couples", couple_body(sink, f"c{i}")),
        )
        couple_seconds = time.monotonic() - began
        couples_per_s = n / couple_seconds
        # Rituals: about as fast as couples on a quiet machine, ~1.8x slower on a busy
        # one; the instant leaves that time and a margin.
        instant = datetime.now(UTC) + timedelta(seconds=2.5 * couple_seconds + 10)
        began = time.monotonic()
        await in_flight(
            n,
            concurrency,
            lambda i: post(
                clients[i % len(clients)],
                f"/v1/couples/{couples[i]['id']}/rituals",
                ritual_body(instant),
            ),
        )
        ritual_seconds = time.monotonic() - began
        probe = await post(clients[0], "/v1/couples", couple_body(sink, "probe"))
        probe_ritual = await post(
            clients[0],
            f"/v1/couples/{probe['id']}/rituals",
            ritual_body(instant + timedelta(days=1), "Test nudge probe"),
        )
    finally:
        for c in clients:
            await c.aclose()
    lead = instant.timestamp() - time.time()
    print(
        f"created {n} couples in {couple_seconds:.1f}s ({couples_per_s:.0f}/s) and their "
        f"rituals in {ritual_seconds:.1f}s; the herd is due in {lead:.1f}s",
        flush=True,
    )
    seeded = nodes.snapshot()
    await asyncio.sleep(max(0.0, lead - 1.5))
    pids = {**stack.pids(), **nodes.pids()}
    before = proc_stats(pids)
    store_before = nodes.snapshot()
    # Tracks due within the hour: the herd's, not the probe's (due a day later).
    watch = ClaimWatch(
        stack.env["TANDEM_REDIS_URL"], nodes.prefix, len(nodes.owner), instant.timestamp() + 3600
    ).start()
    start = len(sink.arrivals)
    expected = {f"c{i}/{side}" for i in range(n) for side in "ab"}
    waiting = asyncio.create_task(
        asyncio.to_thread(wait_for, sink, start, expected, instant.timestamp() + 600)
    )
    with sampling(stack.pids(), spy):
        trigger = await test_nudge_during(
            stack, sink, probe_ritual["id"], instant.timestamp() + 1.0
        )
        await waiting
    after = proc_stats(pids)
    watch.stop()
    store = store_figures(
        nodes.names, empty, seeded, store_before, nodes.snapshot(), n + 1, watch.polled
    )
    for name, claims in zip(nodes.names, watch.per_node(instant.timestamp()), strict=True):
        store["masters"][name]["claims"] = claims
    arrivals = sink.since(start)
    t0 = instant.timestamp()
    first_at: dict[str, float] = {}
    counts: dict[str, int] = defaultdict(int)
    for path, at_ in arrivals:
        if path.startswith("probe/"):
            continue
        counts[path] += 1
        first_at.setdefault(path, at_)
    lateness = [t - t0 for p, t in first_at.items() if p in expected]
    skew = [
        abs(first_at[f"c{i}/a"] - first_at[f"c{i}/b"])
        for i in range(n)
        if f"c{i}/a" in first_at and f"c{i}/b" in first_at
    ]
    a_first = sum(
        1
        for i in range(n)
        if f"c{i}/a" in first_at
        and f"c{i}/b" in first_at
        and first_at[f"c{i}/a"] <= first_at[f"c{i}/b"]
    )
    processes = {
        name: {
            "rss_before_mib": before.get(name, {}).get("rss_mib"),
            "rss_after_mib": after.get(name, {}).get("rss_mib"),
            "cpu_s_total": after.get(name, {}).get("cpu_s"),
            "cpu_s_herd": r3(after[name]["cpu_s"] - before[name]["cpu_s"])
            if name in before and name in after
            else None,
        }
        for name in pids
    }
    return {
        "couples": n,
        "deliveries_expected": len(expected),
        "delivered": len(first_at.keys() & expected),
        "missed": len(expected - first_at.keys()),
        "duplicates": sum(c - 1 for p, c in counts.items() if c > 1),
        "unexpected": len(first_at.keys() - expected),
        "api_couples_per_s": round(couples_per_s, 1),
        "api_rituals_per_s": round(n / ritual_seconds, 1),
        "setup_lead_s": r3(lead),
        "lateness_p50_s": r3(pct(lateness, 0.5)),
        "lateness_p99_s": r3(pct(lateness, 0.99)),
        "lateness_max_s": r3(max(lateness) if lateness else float("nan")),
        "lateness_first_s": r3(min(lateness) if lateness else float("nan")),
        "skew_p50_ms": round(1000 * pct(skew, 0.5), 1),
        "skew_p99_ms": round(1000 * pct(skew, 0.99), 1),
        "skew_max_ms": round(1000 * max(skew), 1) if skew else float("nan"),
        "partner_a_first": a_first,
        "test_nudge_s": trigger["total"],
        "test_nudge_hops_s": trigger,
        "processes": processes,
        "store": store,
    }


async def test_nudge_during(
    stack: DevStack, sink: Sink, ritual_id: str, at: float
) -> dict[str, float | None]:
    """A test nudge sent at ``at`` (the herd in full flight): seconds from the request until
    both of the probe couple's phones got it (``total``; None: not within 60 s), and where
    they went: until the API answered, until the scheduler and content published it on the
    urgent topics (their records' Kafka timestamps: the producers' send times)."""
    await asyncio.sleep(max(0.0, at - time.time()))
    start = len(sink.arrivals)
    began = time.time()
    async with httpx.AsyncClient(
        base_url=stack.scheduler_urls[0],
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        trust_env=False,
        timeout=30,
    ) as client:
        (await client.post(f"/v1/rituals/{ritual_id}/trigger")).raise_for_status()
    answered = time.time()
    hops: dict[str, float | None] = {"total": None, "api": r3(answered - began)}
    while time.time() < began + 60:
        arrived = {p: t for p, t in sink.since(start) if p.startswith("probe/")}
        if {"probe/a", "probe/b"} <= arrived.keys():
            hops["total"] = r3(max(arrived.values()) - began)
            break
        await asyncio.sleep(0.02)
    bootstrap = stack.env["TANDEM_KAFKA_BOOTSTRAP"]
    for hop, topic in (("fired", "ritual.due.urgent"), ("ready", "nudge.ready.urgent")):
        # The urgent topics carry nothing but this probe in a bench run.
        stamps = await _timestamps(bootstrap, topic)
        hops[hop] = r3(max(stamps) - began) if stamps else None
    return hops


async def _timestamps(bootstrap: str, topic: str) -> list[float]:
    """The Kafka timestamps (s) of every record on ``topic`` so far."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=2000)
        return [r.timestamp / 1000 for records in batches.values() for r in records]
    finally:
        await consumer.stop()


# -- APScheduler side by side --------------------------------------------------------------

_producer: Any = None
_loop: asyncio.AbstractEventLoop | None = None
_topic = "bench.apscheduler"


async def publish(i: int, due: float) -> None:
    """An APScheduler job: one record to Kafka, as a Tandem firing would."""
    await _producer.send_and_wait(
        _topic, json.dumps({"job": i, "due": due}).encode(), key=str(i).encode()
    )


def publish_sync(i: int, due: float) -> None:
    """The same job for a BackgroundScheduler's worker threads: the one producer lives on
    the bench's event loop; the thread waits for the acknowledgement."""
    assert _loop is not None
    asyncio.run_coroutine_threadsafe(publish(i, due), _loop).result()


# APScheduler's job defaults per configuration: its own defaults (misfire_grace_time 1 s,
# coalesce True), and the fair ones its user guide gives for jobs that must run however late.
APS_CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "fair": {"misfire_grace_time": None, "coalesce": False},
}


def aps_scheduler(kind: str, store: str, redis_port: int | None, config: str) -> Any:
    """An unstarted APScheduler 3.11 scheduler (``kind``: "background" or "asyncio") with its
    memory or Redis job store, default executor, and the job defaults of ``config``."""
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.redis import RedisJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.schedulers.background import BackgroundScheduler

    # A warning per dropped job (tens of thousands under the defaults) would flood the
    # output and cost CPU; the bench counts the misses at the topic instead.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    jobstore = (
        RedisJobStore(host="127.0.0.1", port=redis_port) if store == "redis" else MemoryJobStore()
    )
    cls = BackgroundScheduler if kind == "background" else AsyncIOScheduler
    return cls(jobstores={"default": jobstore}, job_defaults=APS_CONFIGS[config], timezone=UTC)


def job_outcomes(scheduler: Any) -> dict[str, int]:
    """Counts, from APScheduler's own events, how each job ended: "executed", "error" (an
    exception), "missed" (dropped past its misfire grace) or "max_instances"."""
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        JobEvent,
    )

    names = {
        EVENT_JOB_EXECUTED: "executed",
        EVENT_JOB_ERROR: "error",
        EVENT_JOB_MISSED: "missed",
        EVENT_JOB_MAX_INSTANCES: "max_instances",
    }
    outcomes = dict.fromkeys(names.values(), 0)

    def count(event: JobEvent) -> None:
        outcomes[names[event.code]] += 1  # += under the GIL: listeners run on many threads

    scheduler.add_listener(count, sum(names))
    return outcomes


async def count_topic(
    bootstrap: str, n: int, due: float, outcomes: dict[str, int]
) -> dict[str, Any]:
    """Reads the bench topic until every job has an outcome (``outcomes``, see
    :func:`job_outcomes`) and the executed ones' records arrived or 3 s were quiet, or
    600 s past ``due``. (Jobs leave APScheduler's store when handed to its executor, so an
    empty store does not mean they ran.)"""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        _topic,
        bootstrap_servers=bootstrap,
        group_id=f"aps-{time.time_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    await consumer.start()
    counts: dict[int, int] = defaultdict(int)
    last_ts = 0.0
    lateness: list[float] = []
    quiet_since = time.time()
    try:
        while time.time() < due + 600:
            batches = await consumer.getmany(timeout_ms=300, max_records=5000)
            for records in batches.values():
                for record in records:
                    counts[json.loads(record.value)["job"]] += 1
                    last_ts = max(last_ts, record.timestamp / 1000)
                    lateness.append(record.timestamp / 1000 - due)
                quiet_since = time.time()
            if sum(outcomes.values()) >= n and (
                len(counts) >= outcomes["executed"] or time.time() - quiet_since > 3
            ):
                break
    finally:
        await consumer.stop()
    return {"counts": counts, "last_ts": last_ts, "lateness": lateness}


async def apscheduler_herd(n: int, store: str, kind: str, config: str) -> dict[str, Any]:
    """N ``date`` jobs due at one instant under APScheduler 3.11 (see :func:`aps_scheduler`),
    each publishing one record; counted from the topic. CPU is the bench process's from 1 s
    before the instant to the end: APScheduler plus the Kafka producer and the counting
    consumer, so an upper bound on APScheduler's own."""
    global _producer, _loop
    _loop = asyncio.get_running_loop()
    from aiokafka import AIOKafkaProducer

    from shared.kafka import ensure_topics
    from shared.settings import Settings
    from tandem.embedded import start_broker, start_redis

    infra = [start_broker()]
    if store == "redis":
        infra.append(start_redis())
    try:
        bootstrap = f"127.0.0.1:{infra[0].port}"
        await ensure_topics(
            Settings(kafka_bootstrap=bootstrap, topic_partitions=6), topics=(_topic,)
        )
        _producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        await _producer.start()
        scheduler = aps_scheduler(kind, store, infra[-1].port if store == "redis" else None, config)
        job = publish_sync if kind == "background" else publish
        outcomes = job_outcomes(scheduler)
        scheduler.start()
        # Every job must be in the store before the instant: ~0.15 ms a job in memory,
        # ~1.1 ms in Redis (one round trip per add_job), with room for a loaded machine.
        lead = 5 + n * (0.0025 if store == "redis" else 0.0004)
        due = datetime.now(UTC) + timedelta(seconds=lead)
        began = time.monotonic()
        for i in range(n):
            scheduler.add_job(job, "date", run_date=due, args=[i, due.timestamp()], id=f"j{i}")
        seed_seconds = time.monotonic() - began
        if time.time() > due.timestamp() - 1:
            raise RuntimeError(f"seeding took {seed_seconds:.1f}s, past the instant")
        await asyncio.sleep(due.timestamp() - 1 - time.time())
        cpu_before = time.process_time()
        seen = await count_topic(bootstrap, n, due.timestamp(), outcomes)
        cpu = time.process_time() - cpu_before
        scheduler.shutdown(wait=False)
        await _producer.stop()
    finally:
        for p in reversed(infra):
            p.stop()
    counts, last_ts, lateness = seen["counts"], seen["last_ts"], seen["lateness"]
    drain = r3(last_ts - due.timestamp()) if last_ts else None
    return {
        "scheduler": f"apscheduler-3.11-{kind}-{store}" + ("-fair" if config == "fair" else ""),
        "kind": kind,
        "store": store,
        "config": config,
        "job_defaults": dict(APS_CONFIGS[config]),
        "rituals": n,
        "seed_seconds": r3(seed_seconds),
        "drain_seconds": drain,
        "drain_ms_per_1000": r3(1e6 * drain / n) if drain else None,
        "lateness_p50_s": r3(pct(lateness, 0.5)),
        "lateness_p99_s": r3(pct(lateness, 0.99)),
        "delivered": len(counts),
        "missed": n - len(counts),
        "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "aps_outcomes": outcomes,
        "bench_cpu_ms_per_job": r3(1000 * cpu / n),
    }


def tandem_scheduler_herd(n: int, replicas: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "scheduler_bench.py"),
            "--rituals",
            str(n),
            "--replicas",
            str(replicas),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "scheduler": f"tandem-{replicas}-replicas",
        "rituals": n,
        "drain_seconds": summary["drain_seconds"],
        "drain_ms_per_1000": r3(1e6 * summary["drain_seconds"] / n),
        "lateness_p50_s": summary["lateness_p50_s"],
        "lateness_p99_s": summary["lateness_p99_s"],
        "delivered": n - summary["missed"],
        "missed": summary["missed"],
        "duplicates": summary["duplicates"],
        "cpu_ms_per_ritual": summary["cpu_ms_per_ritual"],
    }


async def side_by_side(n: int, replicas: int, redis_max: int) -> dict[str, Any]:
    """Tandem's scheduler-only herd, then each APScheduler variant with its default and its
    fair job defaults (the Redis store with at most ``redis_max`` jobs, 0: no cap). Ratios
    are APScheduler's drain over Tandem's (how many times faster Tandem is): ``ratios``
    whole drains of equal N, ``fair_ratios`` per job (so capped rows compare too)."""
    rows = [await asyncio.to_thread(tandem_scheduler_herd, n, replicas)]
    print(f"  {rows[-1]}", flush=True)
    for kind in ("background", "asyncio"):
        for store in ("memory", "redis"):
            jobs = min(n, redis_max) if store == "redis" and redis_max else n
            for config in APS_CONFIGS:
                rows.append(await apscheduler_herd(jobs, store, kind, config))
                print(f"  {rows[-1]}", flush=True)
    tandem = rows[0]
    ratios = {
        f"{row['scheduler']}_drain_vs_tandem": r3(row["drain_seconds"] / tandem["drain_seconds"])
        for row in rows[1:]
        if row["drain_seconds"] and tandem["drain_seconds"] and row["rituals"] == n
    }
    fair_ratios = {
        f"{row['scheduler']}_per_job_vs_tandem": r3(
            row["drain_ms_per_1000"] / tandem["drain_ms_per_1000"]
        )
        for row in rows[1:]
        if row["config"] == "fair" and row["drain_ms_per_1000"] and tandem["drain_seconds"]
    }
    return {
        "rituals": n,
        "aps_redis_max": redis_max or None,
        "rows": rows,
        "ratios": ratios,
        "fair_ratios": fair_ratios,
        "targets": fair_targets(rows),
    }


def fair_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's bar against the fair rows: Tandem at least 5x the fastest fair memory
    store and 10x the fastest fair Redis store per job, with no misses or duplicates."""
    tandem = rows[0]
    out: dict[str, Any] = {"tandem_clean": tandem["missed"] == 0 and tandem["duplicates"] == 0}
    for store, bar in (("memory", 5), ("redis", 10)):
        fair = [
            r["drain_ms_per_1000"]
            for r in rows[1:]
            if r["config"] == "fair"
            and r["store"] == store
            and r["drain_ms_per_1000"]
            and not r["missed"]  # a fair row that lost jobs (producer timeouts) is no bar
        ]
        if fair and tandem["drain_ms_per_1000"]:
            ratio = r3(min(fair) / tandem["drain_ms_per_1000"])
            out[f"vs_fair_{store}"] = {"ratio": ratio, "bar": bar, "met": ratio >= bar}
    return out


# -- output --------------------------------------------------------------------------------


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load avg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
    )


def print_herd(result: dict[str, Any]) -> None:
    h = result["herd"]
    q = result.get("quiet")
    print(f"\nherd: {h['couples']} couples, {h['deliveries_expected']} deliveries")
    print(f"  {'delivered':<30}{h['delivered']}  (missed {h['missed']}, dup {h['duplicates']})")
    print(f"  {'API couples/s (setup)':<30}{h['api_couples_per_s']}")
    hops = h["test_nudge_hops_s"]
    print(
        f"  {'test nudge during the herd':<30}{h['test_nudge_s']} s (both phones; API "
        f"answered {hops['api']} s, scheduler published {hops['fired']} s, content "
        f"{hops['ready']} s)"
    )
    print(
        f"  {'lateness p50 / p99 / max':<30}"
        f"{h['lateness_p50_s']} s / {h['lateness_p99_s']} s / {h['lateness_max_s']} s"
    )
    print(
        f"  {'partner skew p50 / p99 / max':<30}"
        f"{h['skew_p50_ms']} ms / {h['skew_p99_ms']} ms / {h['skew_max_ms']} ms"
    )
    print(f"  {'process':<16}{'RSS before':>12}{'RSS after':>12}{'CPU herd':>10}{'CPU all':>10}")
    for name, p in h["processes"].items():
        print(
            f"  {name:<16}{p['rss_before_mib']!s:>10}Mi{p['rss_after_mib']!s:>10}Mi"
            f"{p['cpu_s_herd']!s:>9}s{p['cpu_s_total']!s:>9}s"
        )
    if q:
        print(
            f"quiet evening: {q['repeats']} x one couple: lateness p50 {q['lateness_p50_s']} s, "
            f"max {q['lateness_max_s']} s; delivered {q['delivered']}/{q['expected']}, "
            f"out of order {q['out_of_order']}"
        )


def print_store(store: dict[str, Any]) -> None:
    print(
        f"store: {store['keys_per_couple']} keys, {store['bytes_per_couple']} bytes per couple "
        f"({store['keys_per_couple_after_herd']} keys, {store['bytes_per_couple_after_herd']} "
        f"bytes after the herd); less client buffers {store['data_bytes_per_couple']} and "
        f"{store['data_bytes_per_couple_after_herd']} bytes; "
        f"Redis CPU in the herd {store['redis_cpu_s_herd']} s"
    )
    print(
        f"  {'master':<16}{'keys e/s/a':>22}{'MiB e/s/a':>20}{'tracks':>8}{'claims/s':>10}"
        f"{'cmds/s':>8}{'CPU':>7}  busiest commands/s"
    )
    for name, m in store["masters"].items():
        c, herd = m["claims"], m["herd"]
        keys = "/".join(map(str, m["keys"]))
        mem = "/".join(map(str, m["used_memory_mib"]))
        busiest = ", ".join(f"{k} {v}" for k, v in list(herd["by_command_per_s"].items())[:4])
        print(
            f"  {name:<16}{keys:>22}{mem:>20}{c['tracks']:>8}{c['claims_per_s']!s:>10}"
            f"{herd['commands_per_s']:>8} {herd['cpu_s']:>6}s  {busiest}"
        )


@contextmanager
def redis_store(kind: str) -> Iterator[str | None]:
    """A ``redis+cluster://`` URL of a local 3-master cluster for the run (``kind``
    "cluster"), or None: ``DevStack`` starts its own single Redis."""
    if kind != "cluster":
        yield None
        return
    from tests.support.redis_cluster import cluster_missing, started_cluster

    missing = cluster_missing()
    if missing:
        raise SystemExit(missing)
    with started_cluster() as url:
        yield url


async def run_herd(args: argparse.Namespace, machine_line: str) -> dict[str, Any]:
    """The quiet evening and the herd on a fresh suite; writes the result JSON and answers
    the summary's entries."""
    sink = Sink(args.sink_latency_ms / 1000).start()
    environ = {
        **os.environ,
        "TANDEM_CHANNEL_ALLOW": sink.allow,
        "TANDEM_LOG_LEVEL": args.log_level,
        "TANDEM_RATE_LIMIT": "",  # the setup is 2N requests from one token
    }
    environ.pop("TANDEM_API_PORT", None)
    with redis_store(args.redis) as cluster_url:
        if cluster_url:
            environ["TANDEM_REDIS_URL"] = cluster_url
        stack = DevStack(
            replicas={"scheduler": args.scheduler, "notifier": args.notifier},
            environ=environ,
            show_service_output=False,
        )
        result: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_line,
            "redis": args.redis,
            "replicas": stack.replicas,
        }
        try:
            await asyncio.to_thread(stack.start)
            assert stack.settings is not None
            nodes = Nodes(
                stack.env["TANDEM_REDIS_URL"],
                stack.settings.redis_prefix,
                stack.settings.scheduler_buckets,
            )
            if args.quiet:
                result["quiet"] = await quiet_evening(stack, sink, args.quiet, args.quiet_gap)
            result["herd"] = await herd(
                stack, sink, args.couples, args.concurrency, nodes, args.py_spy
            )
            nodes.close()
        finally:
            await asyncio.to_thread(stack.stop)
            sink.stop()
    suffix = "-cluster" if args.redis == "cluster" else ""
    path = args.results / f"herd-{args.couples}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print_herd(result)
    print_store(result["herd"]["store"])
    print(f"wrote {path}")
    return summarize(result)


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The herd's entries in the bench's one-line JSON summary."""
    h = result["herd"]
    store = h["store"]
    out: dict[str, Any] = {
        "redis": result["redis"],
        "couples": h["couples"],
        "herd_lateness_p50_s": h["lateness_p50_s"],
        "herd_lateness_p99_s": h["lateness_p99_s"],
        "last_phone_s": h["lateness_max_s"],
        "skew_p50_ms": h["skew_p50_ms"],
        "skew_p99_ms": h["skew_p99_ms"],
        "missed": h["missed"],
        "duplicates": h["duplicates"],
        "api_couples_per_s": h["api_couples_per_s"],
        "redis_bytes_per_couple": store["bytes_per_couple"],
        "redis_keys_per_couple": store["keys_per_couple"],
        "redis_cpu_s_herd": store["redis_cpu_s_herd"],
    }
    if "quiet" in result:
        out.update(
            quiet_lateness_p50_s=result["quiet"]["lateness_p50_s"],
            quiet_lateness_max_s=result["quiet"]["lateness_max_s"],
        )
    return out


def print_side_by_side(vs: dict[str, Any]) -> None:
    """The side-by-side table (a capped row says so), its ratios and the issue's bars."""
    print(
        f"  {'scheduler':<42}{'jobs':>7}{'drain s':>9}{'ms/1000':>9}{'delivered':>10}"
        f"{'missed':>8}{'dup':>5}{'CPU ms/job':>11}"
    )
    for row in vs["rows"]:
        name = row["scheduler"] + (" (capped)" if row["rituals"] < vs["rituals"] else "")
        cpu = row.get("cpu_ms_per_ritual", row.get("bench_cpu_ms_per_job"))
        print(
            f"  {name:<42}{row['rituals']:>7}{row['drain_seconds']!s:>9}"
            f"{row['drain_ms_per_1000']!s:>9}{row['delivered']:>10}{row['missed']:>8}"
            f"{row['duplicates']:>5}{cpu!s:>11}"
        )
    print("  (CPU: Tandem's replicas; APScheduler's bench process incl. producer and consumer)")
    if vs["aps_redis_max"]:
        print(f"  Redis store capped at {vs['aps_redis_max']} jobs: compare per job (ms/1000)")
    for key, value in vs["ratios"].items():
        print(f"  {key}: {value}x")
    for key, value in vs["fair_ratios"].items():
        print(f"  {key}: {value}x")
    for key, value in vs["targets"].items():
        print(f"  target {key}: {value}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--couples", type=int, default=1000)
    parser.add_argument("--scheduler", type=int, default=2)
    parser.add_argument("--notifier", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--sink-latency-ms",
        type=float,
        default=0.0,
        help="the sink answers each request this late (a provider's answer time)",
    )
    parser.add_argument("--quiet", type=int, default=10, help="quiet-evening repeats (0: skip)")
    parser.add_argument("--quiet-gap", type=float, default=2.0)
    parser.add_argument("--vs-apscheduler", type=int, default=20_000, metavar="N", help="0: skip")
    parser.add_argument(
        "--aps-redis-max",
        type=int,
        default=0,
        metavar="M",
        help="at most M jobs in APScheduler's Redis store (compared per job; 0: no cap)",
    )
    parser.add_argument("--no-herd", action="store_true", help="only the side-by-side")
    parser.add_argument(
        "--redis",
        choices=("single", "cluster"),
        default="single",
        help="the suite's store: one Redis, or a local 3-master Redis Cluster",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="the services' TANDEM_LOG_LEVEL (INFO, their default, logs every delivery)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample each service process over the herd with py-spy into DIR "
        "(when installed; read with bench/spy.py)",
    )
    args = parser.parse_args()
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"bench": "herd", "machine": machine()}

    if not args.no_herd:
        summary.update(await run_herd(args, summary["machine"]))

    if args.vs_apscheduler:
        print(f"\nscheduler-only herd, {args.vs_apscheduler} rituals due at one instant:")
        vs = await side_by_side(args.vs_apscheduler, args.scheduler, args.aps_redis_max)
        vs["machine"] = summary["machine"]
        vs["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        path = results / f"herd-vs-apscheduler-{args.vs_apscheduler}.json"
        path.write_text(json.dumps(vs, indent=2) + "\n")
        print_side_by_side(vs)
        print(f"wrote {path}")
        for row in vs["rows"]:
            tag = row["scheduler"].replace("-", "_").replace(".", "")
            summary[f"{tag}_drain_s"] = row["drain_seconds"]
            summary[f"{tag}_missed"] = row["missed"]
        for store, target in vs["targets"].items():
            if store.startswith("vs_fair_"):
                summary[f"tandem_{store}_ratio"] = target["ratio"]
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
