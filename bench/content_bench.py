"""Per-event latency the content service adds (deck choice in Redis + composing), under a burst.

    .venv/bin/python bench/content_bench.py [--events 5000] [--concurrency 64]

Uses ``TANDEM_REDIS_URL`` if set, else starts a throwaway redis-server. Measures
``Content.nudge`` (the Redis round trips and the pure work), not Kafka: that is the part this
service adds between consuming ``ritual.due`` and publishing ``nudge.ready``. Half the events
are the second partner of a local pair (one round trip), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from services.content.decks import load_catalog
from services.content.store import ContentStore
from services.content.worker import Content
from shared.events import PartnerInfo, Recipient, RitualDue
from shared.redis import Keys, make_redis
from shared.settings import Settings

ALEX = PartnerInfo(id="p_a", name="Alex", timezone="Europe/Berlin")
SAM = PartnerInfo(id="p_s", name="Sam", timezone="America/New_York")


def events(n: int) -> list[RitualDue]:
    out = []
    for i in range(n // 2):
        couple = f"cpl_{i % 500}"
        wall = datetime(2026, 1, 1, 7, 30) + timedelta(days=i // 500)
        for partner in (ALEX, SAM):
            at = datetime(2026, 1, 1, 6, 30, tzinfo=UTC) + timedelta(days=i // 500)
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
                    ordinal=i // 500,
                    partners=[ALEX, SAM],
                    recipients=[Recipient(**partner.model_dump(), channels=[])],
                )
            )
    return out


async def run(redis_url: str, n: int, concurrency: int) -> None:
    settings = Settings(redis_url=redis_url, redis_prefix=f"bench{uuid.uuid4().hex[:6]}")
    redis = make_redis(settings)
    content = Content(load_catalog(), ContentStore(redis, Keys(settings.redis_prefix)))
    work = events(n)
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(due: RitualDue) -> None:
        async with gate:
            start = time.perf_counter()
            await content.nudge(due)
            latencies.append((time.perf_counter() - start) * 1000)

    await content.nudge(work[0])  # warm the script cache and the pool
    began = time.perf_counter()
    await asyncio.gather(*(one(d) for d in work))
    took = time.perf_counter() - began
    await redis.aclose()
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{len(work)} events, concurrency {concurrency}: {len(work) / took:.0f} events/s, "
        f"p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, max {max(latencies):.2f} ms"
    )
    # The last line, for bench/run.py: *_per_s is a throughput, *_pNN_ms a latency quantile.
    summary = {
        "bench": "content",
        "events": len(work),
        "concurrency": concurrency,
        "events_per_s": round(len(work) / took, 1),
        "work_p50_ms": round(q[49], 3),
        "work_p99_ms": round(q[98], 3),
    }
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    url = os.environ.get("TANDEM_REDIS_URL")
    server = None
    if not url:
        from tandem.embedded import start_redis

        server = start_redis()
        url = f"redis://127.0.0.1:{server.port}/0"
    try:
        asyncio.run(run(url, args.events, args.concurrency))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
