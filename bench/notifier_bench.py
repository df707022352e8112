"""Notifier throughput on one process: deliveries/s to a local HTTP sink, latency and
partner skew percentiles, and the connections the sink saw (keep-alive). Nothing leaves
the machine.

    .venv/bin/python bench/notifier_bench.py [--nudges N] [--couples M] [--baseline DIR]

Each run gets its own embedded broker and Redis and a fresh sink (an asyncio HTTP/1.1
server in this process); the notifier under test runs in a child process, so the sink
does not share its interpreter. ``--baseline DIR``: a checkout of another revision (e.g.
``git worktree add /tmp/notifier-base main``) benchmarked first in the same run, with the
same sink and load, and the two printed side by side with their ratio. The child imports
only what both revisions have (``tandem.notifier_harness``'s couple/nudge helpers).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else 0.0


# -- the child: one notifier process under test ----------------------------------------------
async def child(config: dict[str, Any]) -> dict[str, Any]:
    """Run the notifier of the revision on ``sys.path`` against the given broker, Redis
    and sink; publish the nudges, wait for every receipt; the summary."""
    from services.notifier.metrics import partner_skew
    from shared.settings import Settings
    from tandem.notifier_harness import (
        Couple,
        Partner,
        make_nudge,
        publish_nudges,
        running_notifier,
        store_couple,
        watching,
    )

    n, m, sink = config["nudges"], config["couples"], config["sink"]
    settings = Settings(**config["settings"])
    couples = [
        Couple(
            id=f"cpl_{i}",
            partners=[
                Partner(f"a{i}", [("c1", "push", f"json://{sink}/a{i}")]),
                Partner(f"b{i}", [("c2", "push", f"ntfy://{sink}/b{i}")]),
            ],
        )
        for i in range(m)
    ]
    for c in couples:
        await store_couple(settings, c)
    # The whole burst is on the topic before the notifier starts, as in a herd: what is
    # timed is the notifier draining it (from its partitions being assigned to the last
    # receipt), not the publisher.
    await publish_nudges(settings, *(make_nudge(couples[i % m]) for i in range(n)))
    async with watching(settings) as out, running_notifier(settings):
        start = time.perf_counter()
        await out.wait_for(lambda o: len(o.delivered) >= 2 * n, within=900)
        elapsed = time.perf_counter() - start
    latencies = [d.latency_ms for d in out.delivered]
    by_occ = defaultdict(list)
    for d in out.delivered:
        by_occ[d.occurrence_id].append(d)
    skews = [s * 1000 for s in map(partner_skew, by_occ.values()) if s is not None]
    return {
        "deliveries": len(out.delivered),
        "seconds": round(elapsed, 3),
        "deliveries_per_s": round(2 * n / elapsed, 1),
        # from each nudge's scheduled_for (its creation, before the publish and the start)
        "lateness_p50_ms": round(pct(latencies, 50), 1),
        "lateness_p99_ms": round(pct(latencies, 99), 1),
        "partner_skew_p50_ms": round(pct(skews, 50), 3),
        "partner_skew_p99_ms": round(pct(skews, 99), 3),
        "partner_skew_mean_ms": round(statistics.mean(skews), 3) if skews else 0.0,
    }


# -- the parent: infrastructure, one child per revision, the comparison ----------------------
def run_revision(code: Path, nudges: int, couples: int, profile: Path | None) -> dict[str, Any]:
    """Benchmark the notifier of the checkout ``code`` on fresh infrastructure."""
    from shared.secrets import SecretBox
    from tandem.embedded import start_broker, start_redis
    from tandem.notifier_harness import HttpSink

    broker, redis, sink = start_broker(), start_redis(), HttpSink().start()
    try:
        config = {
            "profile": str(profile / f"notifier-{code.name}.prof") if profile else None,
            "nudges": nudges,
            "couples": couples,
            "sink": f"127.0.0.1:{sink.port}",
            "settings": {
                "kafka_bootstrap": f"127.0.0.1:{broker.port}",
                "redis_url": f"redis://127.0.0.1:{redis.port}/0",
                "kafka_idempotence": False,
                "topic_partitions": 4,
                "secret_key": SecretBox.generate_key(),
                "channel_allow": sink.allow,
            },
        }
        env = {**os.environ, "PYTHONPATH": str(code)}
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(config)],
            cwd=code,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"notifier-bench-{code.name}.log"
        log.write_text(done.stderr)  # the notifier's own log lines, for a look afterwards
        if done.returncode:
            raise RuntimeError(f"benchmark of {code} failed (log: {log}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return {**result, **{f"sink_{k}": v for k, v in sink.stats().items()}}
    finally:
        sink.stop()
        broker.stop()
        redis.stop()


def revision(code: Path) -> str:
    head = subprocess.run(
        ["git", "-C", str(code), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return head.stdout.strip()[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nudges", type=int, default=1000, help="nudges (2 deliveries each)")
    parser.add_argument("--couples", type=int, default=200)
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with, run first")
    parser.add_argument(
        "--profile", type=Path, help="write each child's cProfile stats into this directory"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config = json.loads(args.child)
        profile = cProfile.Profile() if config.get("profile") else None
        if profile is not None:
            profile.enable()
        result = asyncio.run(child(config))
        if profile is not None:
            profile.disable()
            profile.dump_stats(config["profile"])
        print(json.dumps(result))
        return
    runs: dict[str, dict[str, Any]] = {}
    for name, code in (("baseline", args.baseline), ("this", ROOT)):
        if code is not None:
            runs[name] = run_revision(code.resolve(), args.nudges, args.couples, args.profile)
            print(f"{name:9s} {revision(code)}: {json.dumps(runs[name])}", flush=True)
    if "baseline" in runs:
        keys = [k for k in runs["this"] if k in runs["baseline"]]
        print(f"{'':24s} {'baseline':>10s} {'this':>10s} {'ratio':>7s}")
        for k in keys:
            b, t = runs["baseline"][k], runs["this"][k]
            ratio = f"{t / b:.2f}" if b else "-"
            print(f"{k:24s} {b:>10} {t:>10} {ratio:>7s}")
    # The last line, for bench/run.py: *_per_s is a throughput, *_pNN_ms a latency quantile.
    this = runs["this"]
    summary = {"bench": "notifier", **this}
    if "baseline" in runs:
        summary["baseline_deliveries_per_s"] = runs["baseline"]["deliveries_per_s"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
