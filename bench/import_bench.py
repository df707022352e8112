"""Onboarding speed: couples created per second through the API, side by side with a baseline.

    .venv/bin/python bench/import_bench.py [--baseline /tmp/onboard-base] [--couples 1000]
        [--single 300] [--in-flight 16] [--rounds 5] [--idle-probe 0] [--replicas 2]
        [--replica-couples 6000]

Starts one embedded broker and one Redis, then for each tree (``--baseline``, a ``git
worktree add`` of ``main``, and this one) a scheduler process of that tree's code on a free
port, in its own Redis key prefix, and measures over real HTTP, each round:

1. Bulk import: ``--couples`` couples of two channels and two rituals each (the default
   evening check-in and a weekly date night in another zone), as ``tandem import`` sends
   them: ``POST /v1/couples/import`` 500 at a time, one request after the other; meanwhile
   a ``GET /healthz`` every 20 ms, whose latency says how long the import holds the API's
   event loop (what a test nudge sent during an import would wait).
2. Single: ``--single`` ``POST /v1/couples`` with ``--in-flight`` requests in flight (what
   the herd bench does), counting requests that failed without an HTTP answer (a dropped
   connection) apart from error answers.

Then, with ``--idle-probe N``: N bursts of ``--in-flight`` requests about 5 s apart, the
moment a client (httpx keeps idle connections 5 s) reuses a connection the server may be
closing; counts requests lost without an answer.

Last, unless ``--replicas 0``: this tree's ``tandem import`` command, end to end (a file of
``--replica-couples`` couples read, sent and answered), to one scheduler replica and then to
``--replicas`` replicas of one deployment (one key prefix), with the command's default of
one request in flight per replica (two each measured no faster: a replica is CPU-bound):
how an operator adds replicas to import faster.

Both trees' processes run at once, and the rounds alternate between them (who goes first
alternates too), so a noisy neighbour on a shared machine hits both alike; the last line is
a JSON summary: per tree the median round, and the median of the per-round ratios. A
missing ``--baseline`` is made with ``git worktree add --detach PATH main``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.secrets import SecretBox  # noqa: E402
from tandem.dev import settings_from  # noqa: E402
from tandem.embedded import free_port, start_broker, start_redis  # noqa: E402

IMPORT_CHUNK = 500
ADMIN = "bench-admin-token"
# The channels' host: loopback, allowed to the scheduler by TANDEM_CHANNEL_ALLOW (nothing
# is ever sent: no ritual is due while the bench runs).
SINK = "127.0.0.1:9"


def couple(i: int, with_rituals: bool) -> dict[str, Any]:
    """Couple ``i``: two partners in two zones, a push and an e-mail channel with their own
    secrets, and (for the import) two rituals."""
    body: dict[str, Any] = {
        "name": f"Couple {i}",
        "partners": [
            {
                "name": "Sam",
                "timezone": "Europe/Berlin",
                "channels": [{"url": f"json://{SINK}/hook?token=t{i:07d}", "kind": "push"}],
            },
            {
                "name": "Alex",
                "timezone": "America/New_York",
                "channels": [
                    {
                        "url": f"mailto://{SINK}?to=alex{i}@example.com&from=t@example.com"
                        "&mode=insecure",
                        "kind": "email",
                    }
                ],
            },
        ],
    }
    if with_rituals:
        body["rituals"] = [
            {"kind": "evening_checkin"},
            {
                "kind": "date_night",
                "schedule": {
                    "rrule": "FREQ=WEEKLY;BYDAY=FR",
                    "timezone": "Europe/Berlin",
                    "start": "2026-01-02T19:00:00",
                },
            },
        ]
    return body


class Api:
    """One tree's scheduler process, started on a free port with its own key prefix."""

    def __init__(self, tree: Path, env: dict[str, str], log: Path, prefix: str = "") -> None:
        """``prefix``: a deployment's key prefix, to share with other replicas (default: a
        prefix of its own)."""
        self.tree = tree
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.prefix = prefix or f"b{uuid.uuid4().hex[:8]}"
        env = {
            **env,
            "TANDEM_API_PORT": str(port),
            "TANDEM_REDIS_PREFIX": self.prefix,
            "PYTHONPATH": str(tree),
        }
        python = tree / ".venv" / "bin" / "python"
        self.proc = subprocess.Popen(
            [str(python if python.exists() else sys.executable), "-m", "services.scheduler"],
            cwd=tree,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scheduler of {self.tree} exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"scheduler of {self.tree} did not answer /healthz")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def bulk(url: str, n: int, offset: int) -> tuple[float, list[float]]:
    """Couples/s of importing ``n`` couples, one request of 500 after the other, and the
    latency of ``GET /healthz`` sent every 20 ms meanwhile (what any other request, a test
    nudge among them, waits while an import runs)."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    waits: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300, trust_env=False) as c:
        done = asyncio.Event()

        async def probe() -> None:
            while not done.is_set():
                sent = time.perf_counter()
                await c.get("/healthz")
                waits.append(time.perf_counter() - sent)
                await asyncio.sleep(0.02)

        probing = asyncio.create_task(probe())
        began = time.perf_counter()
        for start in range(0, n, IMPORT_CHUNK):
            items = [couple(offset + i, True) for i in range(start, min(n, start + IMPORT_CHUNK))]
            answer = await c.post("/v1/couples/import", json={"couples": items})
            answer.raise_for_status()
            if answer.json()["created"] != len(items):
                raise RuntimeError(f"import refused items: {answer.text[:500]}")
        seconds = time.perf_counter() - began
        done.set()
        await probing
    return n / seconds, waits


async def single(url: str, n: int, in_flight: int, offset: int) -> dict[str, Any]:
    """Couples/s of ``n`` single POSTs with ``in_flight`` at once; dropped connections and
    error answers counted."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    limits = httpx.Limits(max_connections=in_flight)
    dropped = 0
    failed: dict[int, int] = {}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=60, trust_env=False, limits=limits
    ) as client:
        next_index = 0

        async def worker() -> None:
            nonlocal next_index, dropped, failed
            while next_index < n:
                i = next_index
                next_index += 1
                try:
                    answer = await client.post("/v1/couples", json=couple(offset + i, False))
                except httpx.TransportError:
                    dropped += 1
                    continue
                if answer.status_code != 201:
                    failed[answer.status_code] = failed.get(answer.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        seconds = time.perf_counter() - began
    return {"per_s": n / seconds, "dropped": dropped, "failed": failed}


async def idle_probe(url: str, rounds: int, in_flight: int) -> int:
    """Requests lost without an answer when a client's idle keep-alive connections are
    reused after about 5 s (httpx keeps them 5 s): ``rounds`` bursts of ``in_flight``
    requests, 4.9-5.1 s apart."""
    dropped = 0
    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False, limits=limits) as c:

        async def one() -> None:
            nonlocal dropped
            try:
                await c.get("/healthz")
            except httpx.TransportError:
                dropped += 1

        for n in range(rounds):
            await asyncio.gather(*(one() for _ in range(in_flight)))
            await asyncio.sleep(4.9 + (n % 5) * 0.05)
    return dropped


def measure(url: str, args: argparse.Namespace, offset: int) -> dict[str, Any]:
    """One round on one tree's API: an import of ``--couples`` then ``--single`` POSTs."""
    imported, waits = asyncio.run(bulk(url, args.couples, offset))
    one_by_one = asyncio.run(single(url, args.single, args.in_flight, offset + args.couples))
    return {
        "import_per_s": imported,
        "healthz_during_import_ms": {
            "p50": round(1000 * statistics.median(waits), 1),
            "max": round(1000 * max(waits), 1),
        },
        "single": one_by_one,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, default=Path("/tmp/onboard-base"))
    parser.add_argument("--couples", type=int, default=1000, help="imported per round")
    parser.add_argument("--single", type=int, default=300, help="single POSTs per round")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--idle-probe", type=int, default=0, help="bursts of the keep-alive probe (0: none)"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="then `tandem import` of this tree to one replica and to this many (0: skip)",
    )
    parser.add_argument("--replica-couples", type=int, default=6000, help="couples a CLI run")
    args = parser.parse_args()
    if not args.baseline.exists():  # what the numbers are beside: main, as committed
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(args.baseline), "main"],
            check=True,
        )
    trees = {"baseline": args.baseline.resolve(), "this": ROOT}
    redis, broker = start_redis(), start_broker()
    env = {
        **os.environ,
        "TANDEM_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "TANDEM_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker.port}",
        "TANDEM_KAFKA_IDEMPOTENCE": "false",
        "TANDEM_ADMIN_TOKEN": ADMIN,
        "TANDEM_SECRET_KEY": SecretBox.generate_key(),
        "TANDEM_CHANNEL_ALLOW": SINK,
        "TANDEM_LOG_LEVEL": "WARNING",
        # One admin token sends everything: no rate limit in the way of what is measured.
        "TANDEM_RATE_LIMIT": "",
        "TANDEM_ADMIN_RATE_LIMIT": "",
    }
    settings_from(env)  # fail early on a bad setting
    logs = Path(tempfile.gettempdir())
    apis: dict[str, Api] = {}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    idle: dict[str, int] = {}
    try:
        for name, tree in trees.items():
            apis[name] = Api(tree, env, logs / f"import-bench-{name}.log")
        for api in apis.values():
            api.wait_healthy()
        per_round = args.couples + args.single
        for run in range(args.rounds):
            # Alternate who goes first: a noisy neighbour hits both alike.
            order = list(trees) if run % 2 == 0 else list(reversed(trees))
            for name in order:
                offset = (2 * run + order.index(name)) * per_round
                got = measure(apis[name].url, args, offset)
                results[name].append(got)
                print_round(run, name, got, args)
        for name, api in apis.items():
            idle[name] = asyncio.run(idle_probe(api.url, args.idle_probe, args.in_flight))
        for api in apis.values():
            api.stop()
        apis.clear()
        cli = command_over_replicas(env, args.replicas, args.replica_couples, logs)
    finally:
        for api in apis.values():
            api.stop()
        broker.stop()
        redis.stop()
    print(json.dumps({**summarize(results, idle, args), **cli}))


def command_over_replicas(
    env: dict[str, str], replicas: int, couples: int, logs: Path
) -> dict[str, Any]:
    """``tandem import`` of this tree, end to end (reading the file included), of
    ``couples`` couples to one replica, then of as many others to ``replicas`` replicas of
    one deployment (one shared key prefix), one request in flight per replica."""
    if replicas < 1:
        return {}
    prefix = f"r{uuid.uuid4().hex[:8]}"
    apis = [Api(ROOT, env, logs / f"import-bench-replica-{i}.log", prefix) for i in range(replicas)]
    out: dict[str, Any] = {}
    try:
        for api in apis:
            api.wait_healthy()
        for run, used in enumerate((apis[:1], apis)):
            path = logs / f"import-bench-{run}.jsonl"
            offset = 10_000_000 + run * couples
            path.write_text(
                "".join(json.dumps(couple(offset + i, True)) + "\n" for i in range(couples))
            )
            urls = [a for api in used for a in ("--url", api.url)]
            began = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "tandem.cli", "import", str(path), *urls],
                cwd=ROOT,
                env={**env, "PYTHONPATH": str(ROOT)},
                check=True,
                capture_output=True,
            )
            per_s = couples / (time.perf_counter() - began)
            out[f"cli_{len(used)}_replicas_per_s"] = round(per_s, 1)
            print(f"tandem import of {couples} couples to {len(used)} replica(s): {per_s:.0f}/s")
    finally:
        for api in apis:
            api.stop()
    return out


def print_round(run: int, name: str, got: dict[str, Any], args: argparse.Namespace) -> None:
    single_got = got["single"]
    print(
        f"round {run + 1} {name:<9} import {got['import_per_s']:6.0f} couples/s "
        f"(/healthz meanwhile p50 {got['healthz_during_import_ms']['p50']} ms, "
        f"max {got['healthz_during_import_ms']['max']} ms)   "
        f"single ({args.in_flight} in flight) {single_got['per_s']:5.0f}/s, "
        f"dropped {single_got['dropped']}, error answers {single_got['failed'] or 0}",
        flush=True,
    )


def summarize(
    results: dict[str, list[dict[str, Any]]], idle: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    """Per tree: the median of the rounds; per round, this tree's figure over the baseline's
    (the ratio's median is what to read on a noisy machine)."""

    def figure(r: dict[str, Any], pick: str) -> float:
        return float(r["import_per_s"] if pick == "import" else r["single"]["per_s"])

    out: dict[str, Any] = {
        "bench": "import",
        "couples_per_round": args.couples,
        "single_per_round": args.single,
        "in_flight": args.in_flight,
        "rounds": args.rounds,
    }
    for pick in ("import", "single"):
        base = [figure(r, pick) for r in results["baseline"]]
        this = [figure(r, pick) for r in results["this"]]
        # Flat numbers, named as bench/run.py charts them (``*_per_s``: a throughput).
        out[f"{pick}_per_s"] = round(statistics.median(this), 1)
        out[f"{pick}_baseline_per_s"] = round(statistics.median(base), 1)
        out[f"{pick}_ratio"] = round(
            statistics.median(t / b for t, b in zip(this, base, strict=True)), 2
        )
    out["healthz_during_import_max_ms"] = {
        n: max(r["healthz_during_import_ms"]["max"] for r in rs) for n, rs in results.items()
    }
    out["dropped"] = {n: sum(r["single"]["dropped"] for r in rs) for n, rs in results.items()}
    out["idle_probe_dropped"] = idle
    return out


if __name__ == "__main__":
    main()
