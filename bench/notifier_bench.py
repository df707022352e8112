"""Notifier throughput on one process: deliveries/s to a local HTTP sink, latency and
partner skew percentiles, and the connections the sink saw (keep-alive). Nothing leaves
the machine.

    .venv/bin/python bench/notifier_bench.py [--nudges N] [--couples M] [--baseline DIR]

Each run gets its own embedded broker and Redis and a fresh sink (an asyncio HTTP/1.1
server in this process). The notifier under test runs alone in a child process (the
sink, the receipts' watcher and the timing stay here): the burst of nudges is published
before it starts, and its rate is the deliveries over the time from the first receipt's
``delivered_at`` to the last one's, and its CPU time per delivery (user + system, every
thread of the child, sampled every 10 ms and read at the same two instants: the figure to
judge a change by on a busy machine, where deliveries/s swings with the neighbours). The
span starts at the first delivery, not at the notifier's "started": its ``nudge.ready``
consumer may deliver while its urgent consumer is still joining, before the service says
it started (a window from "started" once gave 8,672 deliveries/s). ``--baseline DIR``: a
checkout of another revision (e.g. ``git worktree add /tmp/notifier-base main``)
benchmarked first in the same run, with the same sink and load, and the two printed side
by side with their ratio. The child imports only what both revisions have
(``tandem.notifier_harness``'s couple and nudge helpers and ``running_notifier``).

Profiles: ``--profile DIR`` runs the child under cProfile (the event loop's thread's CPU time);
``--py-spy DIR`` samples every thread of the child with py-spy (when it is installed; not a
project dependency) from its start to the last receipt, as collapsed stacks.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import cProfile
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from spy import finish, sample  # this folder

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else 0.0


# -- the child: one notifier process under test ----------------------------------------------
async def child(config: dict[str, Any], profile: cProfile.Profile | None) -> None:
    """Run the notifier of the revision on ``sys.path`` against the given broker, Redis
    and sink: store the couples, publish the whole burst, start the notifier, print when
    it started (its partitions assigned), and run until stdin closes. Nothing else runs
    in this process: the receipts are watched by the parent. ``profile`` runs from the
    notifier's start to its end, not through the set-up."""
    from shared.settings import Settings
    from tandem.notifier_harness import (
        Couple,
        Partner,
        make_nudge,
        publish_nudges,
        running_notifier,
        store_couple,
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
    # timed is the notifier draining it, not the publisher.
    await publish_nudges(settings, *(make_nudge(couples[i % m]) for i in range(n)))
    if profile is not None:
        profile.enable()
    async with running_notifier(settings):
        print(json.dumps({"started": time.time()}), flush=True)
        await asyncio.to_thread(sys.stdin.read)


# -- the parent: infrastructure, one child per revision, the comparison ----------------------
class CpuTrace:
    """User + system CPU seconds of process ``pid`` (all its threads), sampled every
    ``every`` seconds in a thread of its own from :meth:`start` to :meth:`stop`, so the CPU
    spent between two wall-clock instants can be read afterwards (:meth:`between`)."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._every = every
        self._stop = threading.Event()
        self.samples: list[tuple[float, float]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CpuTrace:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            times = self._process.cpu_times()
            self.samples.append((time.time(), float(times.user + times.system)))
            self._stop.wait(self._every)

    def between(self, first: float, last: float) -> float:
        """CPU seconds from wall-clock ``first`` to ``last`` (the samples just outside)."""
        times = [t for t, _ in self.samples]
        low = max(0, bisect.bisect_right(times, first) - 1)
        high = min(len(times) - 1, bisect.bisect_left(times, last))
        return self.samples[high][1] - self.samples[low][1]


async def run_revision(
    code: Path, nudges: int, couples: int, profile: Path | None, spy: Path | None
) -> dict[str, Any]:
    """Benchmark the notifier of the checkout ``code`` on fresh infrastructure: its
    deliveries/s and CPU per delivery from the first receipt to the last."""
    from services.notifier.metrics import partner_skew
    from shared.secrets import SecretBox
    from shared.settings import Settings
    from tandem.embedded import start_broker, start_redis
    from tandem.notifier_harness import HttpSink, watching

    broker, redis, sink = start_broker(), start_redis(), HttpSink().start()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"notifier-bench-{code.name}.log"
    try:
        values = {
            "kafka_bootstrap": f"127.0.0.1:{broker.port}",
            "redis_url": f"redis://127.0.0.1:{redis.port}/0",
            "kafka_idempotence": False,
            "topic_partitions": 4,
            "secret_key": SecretBox.generate_key(),
            "channel_allow": sink.allow,
        }
        config = {
            "profile": str(profile / f"notifier-{code.name}.prof") if profile else None,
            "nudges": nudges,
            "couples": couples,
            "sink": f"127.0.0.1:{sink.port}",
            "settings": values,
        }
        with log.open("w") as stderr:  # the notifier's own log lines, for a look afterwards
            proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), "--child", json.dumps(config)],
                cwd=code,
                env={**os.environ, "PYTHONPATH": str(code)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            assert proc.stdin is not None and proc.stdout is not None
            try:
                trace = CpuTrace(proc.pid).start()
                line = await asyncio.to_thread(proc.stdout.readline)
                if not line:
                    raise RuntimeError(f"the notifier of {code} did not start (log: {log})")
                spying = sample(proc.pid, spy / f"notifier-{code.name}.raw" if spy else None)
                async with watching(Settings(**values)) as out:  # type: ignore[arg-type]
                    await out.wait_for(lambda o: len(o.delivered) >= 2 * nudges, within=1800)
                trace.stop()
                await asyncio.to_thread(finish, spying)
            finally:
                proc.stdin.close()
                await asyncio.to_thread(proc.wait, 120)
    finally:
        sink.stop()
        broker.stop()
        redis.stop()
    first, last = (f(d.delivered_at.timestamp() for d in out.delivered) for f in (min, max))
    elapsed, cpu = last - first, trace.between(first, last)
    by_occ = defaultdict(list)
    for d in out.delivered:
        by_occ[d.occurrence_id].append(d)
    skews = [s * 1000 for s in map(partner_skew, by_occ.values()) if s is not None]
    return {
        "deliveries": len(out.delivered),
        "seconds": round(elapsed, 3),
        "deliveries_per_s": round((len(out.delivered) - 1) / elapsed, 1),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_delivery": round(1000 * cpu / len(out.delivered), 3),
        "partner_skew_p50_ms": round(pct(skews, 50), 3),
        "partner_skew_p99_ms": round(pct(skews, 99), 3),
        "partner_skew_mean_ms": round(statistics.mean(skews), 3) if skews else 0.0,
        **{f"sink_{k}": v for k, v in sink.stats().items()},
    }


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
    parser.add_argument(
        "--py-spy", type=Path, help="write py-spy samples of each child into this directory"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config = json.loads(args.child)
        # CPU time of the loop's thread, not wall time (which would count its waits).
        profile = cProfile.Profile(time.thread_time) if config.get("profile") else None
        asyncio.run(child(config, profile))
        if profile is not None:
            profile.disable()
            profile.dump_stats(config["profile"])
        return
    runs: dict[str, dict[str, Any]] = {}
    for name, code in (("baseline", args.baseline), ("this", ROOT)):
        if code is not None:
            runs[name] = asyncio.run(
                run_revision(code.resolve(), args.nudges, args.couples, args.profile, args.py_spy)
            )
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
