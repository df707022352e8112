"""Notifier throughput on one process: deliveries/s to a local HTTP sink, latency and
partner skew percentiles. Runs the embedded broker and Redis; nothing leaves the machine.

    .venv/bin/python bench/notifier_bench.py [nudges] [couples]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict

from services.notifier.metrics import partner_skew
from shared.secrets import SecretBox
from shared.settings import Settings
from tandem.embedded import start_broker, start_redis
from tandem.inbox import Inbox
from tandem.notifier_harness import (
    Couple,
    Partner,
    make_nudge,
    publish_nudges,
    running_notifier,
    store_couple,
    watching,
)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def main(n: int, m: int) -> None:
    broker, redis, inbox = start_broker(), start_redis(), Inbox().start()
    try:
        settings = Settings(
            kafka_bootstrap=f"127.0.0.1:{broker.port}",
            redis_url=f"redis://127.0.0.1:{redis.port}/0",
            kafka_idempotence=False,
            topic_partitions=4,
            secret_key=SecretBox.generate_key(),
            channel_allow=",".join(inbox.allow),
        )
        couples = [
            Couple(
                id=f"cpl_{i}",
                partners=[
                    Partner(f"a{i}", [("c1", "push", inbox.json_url(f"a{i}"))]),
                    Partner(f"b{i}", [("c2", "push", inbox.ntfy_url(f"b{i}"))]),
                ],
            )
            for i in range(m)
        ]
        for c in couples:
            await store_couple(settings, c)
        async with watching(settings) as out, running_notifier(settings):
            nudges = [make_nudge(couples[i % m]) for i in range(n)]
            start = time.perf_counter()
            await publish_nudges(settings, *nudges)
            await out.wait_for(lambda o: len(o.delivered) >= 2 * n, within=600)
            elapsed = time.perf_counter() - start
        latencies = [d.latency_ms for d in out.delivered]
        by_occ = defaultdict(list)
        for d in out.delivered:
            by_occ[d.occurrence_id].append(d)
        skews = [s * 1000 for s in map(partner_skew, by_occ.values()) if s is not None]
        print(f"{2 * n} deliveries in {elapsed:.2f}s: {2 * n / elapsed:.1f} deliveries/s")
        print(
            f"latency ms (from scheduled_for, incl. publish): p50 {pct(latencies, 50):.1f}"
            f" p99 {pct(latencies, 99):.1f}"
        )
        print(
            f"partner skew ms: p50 {pct(skews, 50):.2f} p99 {pct(skews, 99):.2f}"
            f" mean {statistics.mean(skews):.2f}"
        )
        # The last line, for bench/run.py: *_per_s is a throughput, *_pNN_ms a latency quantile.
        summary = {
            "bench": "notifier",
            "deliveries": 2 * n,
            "deliveries_per_s": round(2 * n / elapsed, 1),
            "lateness_p50_ms": round(pct(latencies, 50), 1),
            "lateness_p99_ms": round(pct(latencies, 99), 1),
            "partner_skew_p50_ms": round(pct(skews, 50), 3),
            "partner_skew_p99_ms": round(pct(skews, 99), 3),
        }
        print(json.dumps(summary))
    finally:
        inbox.stop()
        broker.stop()
        redis.stop()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [500, 20][len(args) :])))
