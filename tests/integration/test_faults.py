"""Break it: the three services as real processes over the real broker and a real Redis,
with one thing failing at a time, counting what reached the partners' phones.

* SIGKILL of each service in the middle of a burst, then a restart: every partner gets
  every nudge; exactly once when the scheduler or content dies (their re-sends carry the
  same occurrence id and the notifier's ledger absorbs them), at most one in-flight
  together nudge twice when the notifier dies (the window ``services/notifier/delivery.py``
  documents).
* Redis gone for 20 s while rituals are due and records wait for content and the notifier:
  every service answers 503 on /readyz, no process exits, and the backlog is delivered
  exactly once when Redis (append-only, same port and directory) is back.
* The broker gone: the services stay up and not ready, the API and the scheduler keep
  working into the Redis outbox, and what came due or was triggered meanwhile is delivered
  exactly once after the memory-only broker's restart procedure (README, "Operating").
* Poison records on every consumed topic go to ``<topic>.dlq`` with a reason, and the
  good record behind them on the same partition is still handled.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from shared.events import (
    Message,
    NudgeDelivered,
    NudgeFailed,
    NudgeReady,
    PartnerInfo,
    Prompt,
    Recipient,
    RitualDue,
)
from shared.ids import OccurrenceId
from shared.kafka import ensure_topics
from shared.topics import (
    NUDGE_DELIVERED,
    NUDGE_FAILED,
    NUDGE_READY,
    NUDGE_READY_URGENT,
    RITUAL_DUE,
    RITUAL_DUE_URGENT,
    dlq,
)
from tandem.embedded import Process, free_port, start_broker, start_redis, wait_for_port
from tandem.inbox import Fault, Inbox, Received
from tests.support.infra import Infra, allowing
from tests.support.kafka import TopicReader
from tests.support.notifier import CRASH_DUPLICATES
from tests.support.processes import SERVICES
from tests.support.scheduler import ADMIN

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Fast failure handling so a test's recovery takes seconds: a killed scheduler's leased
# tracks and outbox entries come back after 3 s; a failed send is retried within a second.
FAST: dict[str, object] = {
    "scheduler_lease_seconds": 3.0,
    "delivery_connect_timeout": 1.0,
    "delivery_read_timeout": 2.0,
    "delivery_backoff_seconds": 0.2,
    "delivery_backoff_max_seconds": 1.0,
    "log_format": "console",
}


# -- the services as processes -------------------------------------------------------------
@dataclass
class Services:
    """The three services as child processes, each of which can be killed and restarted."""

    env: dict[str, str]
    logs: Path
    api_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    every: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # /healthz and /readyz of content and notifier (the scheduler's are on its API port)
    ops_ports: dict[str, int] = field(
        default_factory=lambda: {"content": free_port(), "notifier": free_port()}
    )

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def ops(self, name: str) -> str:
        port = self.api_port if name == "scheduler" else self.ops_ports[name]
        return f"http://127.0.0.1:{port}"

    def start(self, name: str) -> subprocess.Popen[bytes]:
        env = dict(self.env)
        if name in self.ops_ports:
            env["TANDEM_OPS_PORT"] = str(self.ops_ports[name])
        with (self.logs / f"{name}.log").open("ab") as out:  # restarts append
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        self.every.append(proc)
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.procs[name].pid, sig)

    def dead(self) -> dict[str, int]:
        """Services whose current process has exited, with the exit code."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def tail(self, chars: int = 4000) -> str:
        return "\n".join(
            f"--- {n}.log ---\n{(self.logs / f'{n}.log').read_text(errors='replace')[-chars:]}"
            for n in SERVICES
            if (self.logs / f"{n}.log").exists()
        )

    def stop(self) -> dict[str, int]:
        """SIGTERM every live process; the exit codes of the current ones."""
        for proc in self.every:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
                proc.send_signal(signal.SIGTERM)
        for proc in self.every:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return {n: p.returncode for n, p in self.procs.items()}


@asynccontextmanager
async def running(infra: Infra, logs: Path, **overrides: object) -> AsyncIterator[Services]:
    """The three services, started once; on exit each must stop cleanly on SIGTERM."""
    port = free_port()
    services = Services(infra.env(api_port=port, **{**FAST, **overrides}), logs, port)
    for name in SERVICES:
        services.start(name)
    try:
        await asyncio.to_thread(wait_for_port, port, 60.0, services.procs["scheduler"])
        yield services
    except BaseException:
        services.stop()
        print(services.tail())
        raise
    codes = services.stop()
    assert all(c == 0 for c in codes.values()), (codes, services.tail())


# -- couples, rituals and what the phones got ------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """A couple made through the API, each partner with one push channel of their own."""

    id: str
    ritual: str
    sam: str  # the partners' inbox addresses
    alex: str

    @property
    def addresses(self) -> tuple[str, str]:
        return (self.sam, self.alex)


async def make_pairs(
    api: httpx.AsyncClient, inbox: Inbox, tag: str, n: int, at: datetime | None = None
) -> list[Pair]:
    """``n`` couples, each with a one-off ritual at ``at`` (default: tomorrow, so it fires
    only when triggered)."""
    when = (at or datetime.now(UTC) + timedelta(days=1)).isoformat()
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> Pair:
        sam, alex = f"{tag}-s{i}", f"{tag}-a{i}"
        body = {
            "name": f"{tag} {i}",
            "partners": [
                {
                    "name": "Sam",
                    "timezone": "Europe/Berlin",
                    "channels": [{"url": inbox.json_url(sam), "kind": "push"}],
                },
                {
                    "name": "Alex",
                    "timezone": "America/New_York",
                    "channels": [{"url": inbox.ntfy_url(alex), "kind": "push"}],
                },
            ],
        }
        async with sem:
            couple = await api.post("/v1/couples", json=body)
            assert couple.status_code == 201, couple.text
            cid = couple.json()["id"]
            ritual = await api.post(
                f"/v1/couples/{cid}/rituals",
                json={"kind": "hug", "title": "Hug", "schedule": {"at": when}},
            )
            assert ritual.status_code == 201, ritual.text
        return Pair(cid, ritual.json()["id"], sam, alex)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def trigger(api: httpx.AsyncClient, pairs: list[Pair]) -> None:
    for pair in pairs:
        answer = await api.post(f"/v1/rituals/{pair.ritual}/trigger")
        assert answer.status_code == 202, answer.text


def addresses(pairs: list[Pair]) -> set[str]:
    return {a for p in pairs for a in p.addresses}


async def all_arrived(inbox: Inbox, expected: set[str], timeout: float) -> None:
    await asyncio.to_thread(inbox.wait_for, lambda rs: expected <= {r.address for r in rs}, timeout)


def counts(inbox: Inbox, expected: set[str]) -> Counter[str]:
    return Counter(r.address for r in inbox.received if r.address in expected)


async def settled(inbox: Inbox, expected: set[str], quiet: float = 2.0) -> Counter[str]:
    """What ``expected`` got, once nothing more has arrived for ``quiet`` seconds: a
    straggling duplicate (a redelivered record after a restart) gets its chance to show."""
    last = -1
    while True:
        now = len(inbox.received)
        if now == last:
            return counts(inbox, expected)
        last = now
        await asyncio.sleep(quiet)


async def warm_up(api: httpx.AsyncClient, inbox: Inbox) -> None:
    """One nudge end to end: the consumer groups have their partitions from here on."""
    pairs = await make_pairs(api, inbox, f"warm{uuid.uuid4().hex[:4]}", 1)
    await trigger(api, pairs)
    await all_arrived(inbox, addresses(pairs), 90)


async def poll_until(
    check: Callable[[], Any], timeout: float, what: str, every: float = 0.2
) -> Any:
    """Call ``check`` (sync or async) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


class Tripwire:
    """Calls ``action`` from the inbox's thread when the ``at``-th watched nudge arrives:
    the kill lands while the burst is still being delivered, without a polling delay."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watch: set[str] = set()
        self.at = 0
        self.seen = 0
        self.action: Callable[[], None] | None = None

    def arm(self, watch: set[str], at: int, action: Callable[[], None]) -> None:
        with self.lock:
            self.watch, self.at, self.seen, self.action = watch, at, 0, action

    def __call__(self, item: Received) -> None:
        with self.lock:
            if item.address not in self.watch or self.action is None:
                return
            self.seen += 1
            if self.seen < self.at:
                return
            action, self.action = self.action, None
        action()


@pytest.fixture
def wired_inbox() -> Iterator[tuple[Inbox, Tripwire]]:
    wire = Tripwire()
    box = Inbox(on_receive=wire).start()
    try:
        with allowing(box.allow):
            yield box, wire
    finally:
        box.stop()


# -- 1. SIGKILL each service mid-burst -------------------------------------------------------
BURST = 30  # couples, one together ritual each, all due at the same instant


@pytest.mark.parametrize("victim", SERVICES)
async def test_sigkill_mid_burst_then_restart(
    victim: str, infra: Infra, wired_inbox: tuple[Inbox, Tripwire], tmp_path: Path
) -> None:
    inbox, wire = wired_inbox
    settings = infra.settings()
    # One track per claim: the scheduler's burst is BURST claim/commit/publish rounds, long
    # enough that the first nudge reaches a phone while the scheduler is still firing.
    async with (
        running(infra, tmp_path, scheduler_batch=1) as services,
        httpx.AsyncClient(base_url=services.api, headers=ADMIN, timeout=30) as api,
        # A short fetch wait: the kill must follow the victim's first record closely.
        TopicReader(settings, RITUAL_DUE, NUDGE_READY, fetch_max_wait_ms=5) as topics,
    ):
        await warm_up(api, inbox)
        at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        pairs = await make_pairs(api, inbox, victim, BURST, at=at)
        ids = {p.id for p in pairs}
        expected = addresses(pairs)
        assert datetime.now(UTC) < at, "set-up took too long for the burst to be ahead"

        def burst(kind: str) -> int:
            """How many records of the burst are on ritual.due or nudge.ready."""
            return sum(
                1
                for r in topics.records
                if r["couple_id"] in ids and ("messages" in r) == (kind == NUDGE_READY)
            )

        async def kill_on(kind: str) -> None:
            """SIGKILL the victim as soon as its first record of the burst is on ``kind``."""
            deadline = time.monotonic() + 60
            while burst(kind) < 1:
                assert time.monotonic() < deadline, f"no {kind} from the burst"
                await topics.poll(10)
            services.kill(victim)

        if victim == "notifier":
            # A slow provider, so the burst is still being sent when the kill lands; the kill
            # comes from an arrival at a phone (from the inbox's thread, at once), i.e. inside
            # the window between provider acceptance and the ledger write.
            for a in expected:
                inbox.fault(a, Fault(delay=0.05))
            wire.arm(expected, 10, lambda: services.kill(victim))
        elif victim == "content":
            # Content keeps pace with the scheduler; to be caught mid-burst it is stopped until
            # the whole burst waits on ritual.due, then let go and killed at its first nudge.
            services.signal("content", signal.SIGSTOP)
            await topics.until(lambda _: burst(RITUAL_DUE) >= BURST, timeout=60)
            services.signal("content", signal.SIGCONT)
            await kill_on(NUDGE_READY)
        else:
            await kill_on(RITUAL_DUE)
        await poll_until(lambda: services.procs[victim].poll() is not None, 60, f"{victim} killed")
        await topics.quiet(0.3)  # what the victim had published before it died
        at_kill = (len(counts(inbox, expected)), burst(RITUAL_DUE), burst(NUDGE_READY))
        services.start(victim)
        await all_arrived(inbox, expected, 120)
        got = await settled(inbox, expected)
        await topics.quiet(0.5)

    assert set(got) == expected, "every partner got the nudge"
    duplicates = sum(n - 1 for n in got.values())
    print(
        f"{victim} killed with {at_kill[0]}/{len(expected)} partners reached, "
        f"{at_kill[1]}/{BURST} ritual.due and {at_kill[2]}/{BURST} nudge.ready published; "
        f"in the end {burst(RITUAL_DUE)} ritual.due, {burst(NUDGE_READY)} nudge.ready, "
        f"{duplicates} duplicate(s) at the phones"
    )
    if victim == "notifier":
        # Every send between provider and ledger at the kill is sent again after restart.
        assert duplicates <= CRASH_DUPLICATES, got
    else:
        # A re-sent ritual.due or nudge.ready carries the same occurrence id: absorbed.
        assert duplicates == 0, [a for a, n in got.items() if n > 1]


# -- infrastructure the test can take away ---------------------------------------------------
@dataclass
class OwnInfra:
    """A broker and a Redis this test started, so it can stop and restart them on the same
    ports. Redis keeps an append-only file in ``redis_dir``, so a restart keeps the data."""

    infra: Infra
    broker: Process
    redis: Process
    redis_dir: Path

    def stop_redis(self) -> None:
        self.redis.stop()  # SIGTERM: Redis flushes the AOF before exiting

    def start_redis(self) -> None:
        self.redis = start_redis(self.redis.port, appendonly=True, workdir=self.redis_dir)

    def stop_broker(self) -> None:
        self.broker.stop()

    async def start_broker(self) -> None:
        self.broker = start_broker(self.broker.port)
        # A memory-only broker comes back empty: recreate the topics, as an operator would.
        await ensure_topics(self.infra.settings())


@pytest.fixture
def own_infra(tmp_path: Path) -> Iterator[OwnInfra]:
    if os.environ.get("TANDEM_TEST_KAFKA_BOOTSTRAP") or os.environ.get("TANDEM_TEST_REDIS_URL"):
        pytest.skip("stops and restarts its own broker and Redis")
    broker = start_broker()
    redis_dir = tmp_path / "redis"
    redis = start_redis(appendonly=True, workdir=redis_dir)
    own = OwnInfra(
        Infra(
            f"127.0.0.1:{broker.port}",
            f"redis://127.0.0.1:{redis.port}/0",
            f"t{uuid.uuid4().hex[:8]}",
            embedded_broker=True,
        ),
        broker,
        redis,
        redis_dir,
    )
    try:
        yield own
    finally:
        own.broker.stop()
        own.redis.stop()


# -- 2. Redis unavailable for 20 s -----------------------------------------------------------
REDIS_OUTAGE = 20.0


async def test_redis_outage_reports_not_ready_and_delivers_the_backlog(
    own_infra: OwnInfra, inbox: Inbox, tmp_path: Path
) -> None:
    settings = own_infra.infra.settings()
    async with (
        running(own_infra.infra, tmp_path) as services,
        httpx.AsyncClient(base_url=services.api, headers=ADMIN, timeout=30) as api,
        # the triggers below travel the urgent lanes
        TopicReader(settings, RITUAL_DUE, RITUAL_DUE_URGENT) as dues,
        TopicReader(settings, NUDGE_READY, NUDGE_READY_URGENT) as readies,
    ):
        await warm_up(api, inbox)
        assert (await ready_states(services))["scheduler"] == 200
        # Three ways to be caught by the outage: a nudge.ready the notifier has not read, a
        # ritual.due content has not read (each stopped with SIGSTOP while its input is
        # published, as a stalled process would be), and rituals that come due while Redis
        # is down (the scheduler cannot even claim them).
        at_notifier = await make_pairs(api, inbox, "r-notifier", 4)
        at_content = await make_pairs(api, inbox, "r-content", 4)

        def published(reader: TopicReader, pairs: list[Pair]) -> Callable[[], Any]:
            async def check() -> bool:
                await reader.poll(100)
                return {p.id for p in pairs} <= {r["couple_id"] for r in reader.records}

            return check

        services.signal("notifier", signal.SIGSTOP)
        await trigger(api, at_notifier)
        await poll_until(published(readies, at_notifier), 30, "nudge.ready published")
        services.signal("content", signal.SIGSTOP)
        await trigger(api, at_content)
        await poll_until(published(dues, at_content), 30, "ritual.due published")
        at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
        due_in_outage = await make_pairs(api, inbox, "r-due", 6, at=at)

        own_infra.stop_redis()
        down_at = time.monotonic()
        assert datetime.now(UTC) < at, "set-up took too long: the rituals were due before"
        services.signal("content", signal.SIGCONT)
        services.signal("notifier", signal.SIGCONT)
        seen: dict[str, list[int]] = {name: [] for name in SERVICES}
        while time.monotonic() - down_at < REDIS_OUTAGE:
            for name, status in (await ready_states(services)).items():
                seen[name].append(status)
            assert not services.dead(), ("a service exited while Redis was down", services.tail())
            await asyncio.sleep(1.0)
        for name, statuses in seen.items():
            # content and notifier serve /readyz only where their ops server is wired in
            served = name == "scheduler" or any(statuses)
            assert not served or set(statuses) == {503}, (name, statuses)
        expected = addresses(at_notifier + at_content + due_in_outage)
        assert not counts(inbox, expected), "nothing can be sent without Redis"

        own_infra.start_redis()
        await all_arrived(inbox, expected, 120)
        got = await settled(inbox, expected)
        assert not services.dead(), "no process restarted: the same ones recovered"
        states = await poll_until(
            lambda: _all_ready(services), 60, "every service ready again", every=0.5
        )

    assert set(got) == expected
    assert max(got.values()) == 1, [a for a, n in got.items() if n > 1]
    print(f"Redis down {REDIS_OUTAGE:.0f}s; /readyz while down: {seen}; after: {states}")


async def ready_states(services: Services) -> dict[str, int]:
    """Each service's /readyz status; 0 where nothing answers."""
    out = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for name in SERVICES:
            try:
                out[name] = (await client.get(f"{services.ops(name)}/readyz")).status_code
            except httpx.HTTPError:
                out[name] = 0
    return out


async def _all_ready(services: Services) -> dict[str, int] | None:
    states = await ready_states(services)
    served = {n: s for n, s in states.items() if s}
    return states if served.get("scheduler") and set(served.values()) == {200} else None


# -- 3. the broker unavailable ---------------------------------------------------------------
BROKER_OUTAGE = 10.0


async def test_broker_outage_delivers_what_came_due_meanwhile(
    own_infra: OwnInfra, inbox: Inbox, tmp_path: Path
) -> None:
    async with (
        running(own_infra.infra, tmp_path) as services,
        httpx.AsyncClient(base_url=services.api, headers=ADMIN, timeout=30) as api,
    ):
        await warm_up(api, inbox)
        own_infra.stop_broker()
        down_at = time.monotonic()
        # The API keeps working on Redis alone: couples and rituals are made, and manual
        # triggers accepted, while the broker is away; all of it waits in the outbox.
        at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        due_in_outage = await make_pairs(api, inbox, "b-due", 6, at=at)
        triggered = await make_pairs(api, inbox, "b-trig", 4)
        await trigger(api, triggered)
        owed = len(due_in_outage) + len(triggered)
        await poll_until(
            lambda: _outbox_holds(own_infra.infra, owed), 60, "due rituals waiting in the outbox"
        )
        states = await poll_until(
            lambda: _none_ready(services), 30, "every service not ready", every=0.5
        )
        while time.monotonic() - down_at < BROKER_OUTAGE:
            assert not services.dead(), ("a service exited without the broker", services.tail())
            await asyncio.sleep(0.5)
        expected = addresses(due_in_outage + triggered)
        assert not counts(inbox, expected)

        # The memory-only broker comes back empty, committed offsets included, so the
        # services are restarted around it (README, "Operating"): a consumer left running
        # could commit an offset of the old log into the new one and skip the first records
        # of a partition. Killing them is a fair stop: every service is crash-safe (above),
        # and a graceful stop would first wait out the producers' timeouts.
        for name in SERVICES:
            services.kill(name)
        await own_infra.start_broker()
        for name in SERVICES:
            services.start(name)
        await all_arrived(inbox, expected, 120)
        got = await settled(inbox, expected)
        await poll_until(lambda: _all_ready(services), 60, "every service ready again", every=0.5)

    assert set(got) == expected
    assert max(got.values()) == 1, [a for a, n in got.items() if n > 1]
    print(f"broker down {BROKER_OUTAGE:.0f}s; /readyz while down: {states}")


async def _none_ready(services: Services) -> dict[str, int] | None:
    states = await ready_states(services)
    return states if states["scheduler"] == 503 and 200 not in states.values() else None


async def _outbox_holds(infra: Infra, n: int) -> bool:
    """At least ``n`` records in the scheduler's outbox (written, not yet acknowledged)."""
    redis = Redis.from_url(infra.redis_url, decode_responses=True)
    try:
        held = 0  # the outbox is split over the schedule's buckets
        async for key in redis.scan_iter(match=f"{infra.prefix}:s:{{s*}}:o"):
            held += int(await redis.zcard(key))
        return held >= n
    finally:
        await redis.aclose()


# -- 4. poison on every consumed topic -------------------------------------------------------
def _valid_events(couple_id: str) -> dict[str, dict[str, Any]]:
    """A well-formed event of each consumed topic for ``couple_id`` (as JSON objects), from
    which a poison with only its ``schema_version`` wrong is made."""
    now = datetime.now(UTC)
    partner = PartnerInfo(id="prt_x", name="Sam", timezone="UTC")
    due = RitualDue(
        occurrence_id=str(OccurrenceId("rit_poison", now)),
        couple_id=couple_id,
        couple_name="Poison",
        ritual_id="rit_poison",
        kind="hug",
        title="Hug",
        delivery="together",
        scheduled_for=now,
        wall_time=now.replace(tzinfo=None),
        ordinal=0,
        partners=[partner],
        recipients=[Recipient(**partner.model_dump(), channels=[])],
    )
    ready = NudgeReady(
        **due.model_dump(),
        prompt=Prompt(deck="d", prompt_id="p", text="t"),
        messages=[Message(partner_id="prt_x", title="t", body="b")],
    )
    delivered = NudgeDelivered(
        occurrence_id=due.occurrence_id,
        couple_id=couple_id,
        ritual_id="rit_poison",
        partner_id="prt_x",
        channel_id="chn_x",
        channel_kind="push",
        channel="json://***",
        attempt=1,
        scheduled_for=now,
        delivered_at=now,
        latency_ms=1.0,
    )
    failed = NudgeFailed(
        occurrence_id=due.occurrence_id,
        couple_id=couple_id,
        ritual_id="rit_poison",
        partner_id="prt_x",
        reason="x",
        final=True,
    )
    return {
        RITUAL_DUE: json.loads(due.model_dump_json()),
        NUDGE_READY: json.loads(ready.model_dump_json()),
        NUDGE_DELIVERED: json.loads(delivered.model_dump_json()),
        NUDGE_FAILED: json.loads(failed.model_dump_json()),
    }


def _poisons(valid: dict[str, Any]) -> list[bytes | None]:
    """Garbage, a tombstone, valid JSON of the wrong shape, and a well-formed event with a
    schema_version nobody knows."""
    return [
        b"\xff\x00 not json at all",
        None,
        b"[1, 2, 3]",
        json.dumps({"hello": "world"}).encode(),
        json.dumps({**valid, "schema_version": 2}).encode(),
    ]


# Who consumes what: every consumer of a topic dead-letters what it cannot read.
CONSUMERS = {
    RITUAL_DUE: {"content"},
    NUDGE_READY: {"notifier", "scheduler"},
    NUDGE_DELIVERED: {"scheduler"},
    NUDGE_FAILED: {"scheduler"},
}


async def test_poison_records_are_dead_lettered_and_consumers_go_on(
    infra: Infra, inbox: Inbox, tmp_path: Path
) -> None:
    settings = infra.settings()
    async with (
        running(infra, tmp_path, delivery_max_attempts=1) as services,
        httpx.AsyncClient(base_url=services.api, headers=ADMIN, timeout=30) as api,
        TopicReader(settings, *(dlq(t) for t in CONSUMERS)) as letters,
    ):
        await warm_up(api, inbox)
        [pair] = await make_pairs(api, inbox, "poison", 1)
        # Alex's provider is down for good: with one attempt allowed, Alex's part ends as a
        # final nudge.failed, so all four consumed topics carry a good record for the pair.
        inbox.fault(pair.alex, Fault(forever=True))
        sent: dict[str, list[bytes | None]] = {}
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for topic, valid in _valid_events(pair.id).items():
                sent[topic] = _poisons(valid)
                for value in sent[topic]:
                    # Keyed like the good records: same partition, so they sit in front.
                    await producer.send_and_wait(topic, value, key=pair.id.encode())
        finally:
            await producer.stop()
        await trigger(api, [pair])

        await all_arrived(inbox, {pair.sam}, 90)

        async def history_done() -> bool:
            nudges = (await api.get(f"/v1/couples/{pair.id}/nudges")).json()["nudges"]
            statuses = {p.get("status") for n in nudges for p in n["partners"].values()}
            return bool(nudges) and statuses == {"delivered", "failed"}

        await poll_until(history_done, 60, "history: Sam delivered, Alex failed", every=0.5)

        def poison_letters(rs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
            return {(r["source_topic"], r["service"], r["payload"]) for r in rs}

        wanted = {
            (topic, service, (value or b"").decode(errors="replace"))
            for topic, values in sent.items()
            for value in values
            for service in CONSUMERS[topic]
        }
        await letters.until(lambda rs: wanted <= poison_letters(rs), timeout=60)
        assert not services.dead()

    for r in letters.records:
        assert r["reason"], r
        if '"schema_version": 2' in r["payload"]:
            assert "schema_version" in r["reason"], r  # says what is wrong, not just "invalid"
    by_reason = {(r["source_topic"], r["payload"]): r["reason"] for r in letters.records}
    print("\n".join(f"{t}: {p[:30]!r} -> {reason[:100]}" for (t, p), reason in by_reason.items()))
