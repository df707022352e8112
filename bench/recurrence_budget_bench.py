"""What a costly recurrence rule costs the scheduler process: validation time, and /healthz
latency while such rules are POSTed.

    .venv/bin/python bench/recurrence_budget_bench.py [--skip-healthz] [--rule-timeout 60]

Part 1 times, per worst rule (start 1900-01-01 09:00, Europe/Berlin), what a POST of it
evaluates: ``validate`` and the next slot after now, each in its own process (a rule may
take minutes without the budget; ``--rule-timeout`` caps it). Part 2 starts an embedded
broker and Redis (or uses TANDEM_KAFKA_BOOTSTRAP / TANDEM_REDIS_URL) and one in-process
scheduler, asks /healthz every 20 ms, first idle and then while the worst rules
(``--posted``) are POSTed twice each (four at a time), and reports the latency quantiles and
the answers. The last line printed is a JSON summary (collected by bench/run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = "1900-01-01T09:00:00"
WORST = [
    "FREQ=MINUTELY;BYMONTH=1",
    "FREQ=MINUTELY;BYSETPOS=1",
    "FREQ=MINUTELY;COUNT=100000000",
    "FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYSETPOS=2",
    "FREQ=DAILY;INTERVAL=2;BYMONTH=1;BYSETPOS=2",
    "FREQ=DAILY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12;BYHOUR=8,20",
    "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO",
    "FREQ=MINUTELY;INTERVAL=997;BYMONTH=2;BYMONTHDAY=29",
    "FREQ=MONTHLY;BYDAY=1FR,-1SU;BYSETPOS=1",
]
POSTED = [0, 1, 3, 4, 5]  # of WORST: the ones refused with the budget

ONE = """
import sys, time
from datetime import UTC, datetime
from services.scheduler.recurrence import Schedule, ScheduleError, slots_after, validate
schedule = Schedule("Europe/Berlin", sys.argv[1], datetime.fromisoformat(sys.argv[2]))
now = datetime.now(UTC)
began = time.perf_counter()
try:
    validate(schedule, now=now)
    slots_after(schedule, "Europe/Berlin", now, 1)
    outcome = "accepted"
except ScheduleError as exc:
    outcome = exc.reason
print(time.perf_counter() - began, outcome, sep="\\t")
"""


def time_rules(timeout: float) -> dict[str, dict[str, object]]:
    timings: dict[str, dict[str, object]] = {}
    for rule in WORST:
        try:
            out = subprocess.run(
                [sys.executable, "-c", ONE, rule, START],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            ).stdout.strip()
            seconds, outcome = out.split("\t", 1)
            timings[rule] = {"seconds": round(float(seconds), 3), "outcome": outcome[:60]}
        except subprocess.TimeoutExpired:
            timings[rule] = {"seconds": f">{timeout}", "outcome": "timed out"}
        print(f"{rule:58} {timings[rule]['seconds']!s:>8} s  {timings[rule]['outcome']}")
    return timings


def couple_body() -> dict[str, object]:
    """A couple whose channels point nowhere: this bench measures validation, not delivery."""
    partner = {
        "timezone": "Europe/Berlin",
        "channels": [{"url": "json://127.0.0.1:9/hook", "kind": "push"}],
    }
    return {"name": "Bench", "partners": [{"name": "Sam", **partner}, {"name": "Alex", **partner}]}


async def healthz_under_load(posted: list[str]) -> dict[str, object]:
    import httpx

    from services.scheduler.service import Scheduler
    from shared.settings import Settings
    from tandem.embedded import start_broker, start_redis

    started = []
    bootstrap = os.environ.get("TANDEM_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("TANDEM_REDIS_URL")
    if not bootstrap:
        started.append(start_broker())
        bootstrap = f"127.0.0.1:{started[-1].port}"
    if not redis_url:
        started.append(start_redis())
        redis_url = f"redis://127.0.0.1:{started[-1].port}/0"
    settings = Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        redis_prefix="budget-bench",
        kafka_idempotence=False,
        admin_token="bench",
        secret_key="x0z4PZk2cOrm9dCcZzZbZxkl7S_JHQq1zcx4Nqo1nsI=",
    )
    admin = {"Authorization": "Bearer bench"}
    scheduler = Scheduler(settings)
    await scheduler.start()
    try:
        transport = httpx.ASGITransport(app=scheduler.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as api:
            body = couple_body()
            couple = (await api.post("/v1/couples", json=body, headers=admin)).json()
            url = f"/v1/couples/{couple['id']}/rituals"

            async def poll(done: asyncio.Event, least: int) -> list[float]:
                latencies: list[float] = []
                while not done.is_set() or len(latencies) < least:
                    began = time.perf_counter()
                    await api.get("/healthz")
                    latencies.append(time.perf_counter() - began)
                    await asyncio.sleep(0.02)
                return latencies

            idle_done = asyncio.Event()
            idle_done.set()
            idle = await poll(idle_done, 50)

            done = asyncio.Event()
            limit = asyncio.Semaphore(4)

            async def post(rule: str) -> tuple[int, str]:
                async with limit:
                    schedule = {"rrule": rule, "timezone": "Europe/Berlin", "start": START}
                    answer = await api.post(
                        url, json={"kind": "hug", "schedule": schedule}, headers=admin
                    )
                    return answer.status_code, answer.text[:120]

            async def post_all() -> list[tuple[int, str]]:
                try:
                    return list(await asyncio.gather(*(post(r) for r in posted * 2)))
                finally:
                    done.set()

            began = time.perf_counter()
            loaded, answers = await asyncio.gather(poll(done, 10), post_all())
            posting = time.perf_counter() - began
    finally:
        await scheduler.stop()
        for process in started:
            process.stop()

    def ms(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    result = {
        "healthz_idle_p50_ms": ms(idle, 0.5),
        "healthz_idle_max_ms": ms(idle, 1.0),
        "healthz_loaded_p50_ms": ms(loaded, 0.5),
        "healthz_loaded_p99_ms": ms(loaded, 0.99),
        "healthz_loaded_max_ms": ms(loaded, 1.0),
        "healthz_polls_loaded": len(loaded),
        "posting_s": round(posting, 2),
        "answers": sorted({status for status, _ in answers}),
    }
    for status, text in answers[: len(posted)]:
        print(status, text)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-healthz", action="store_true")
    parser.add_argument("--rule-timeout", type=float, default=60.0)
    parser.add_argument(
        "--posted", default=",".join(map(str, POSTED)), help="indices in WORST to POST"
    )
    args = parser.parse_args()
    timings = time_rules(args.rule_timeout)
    summary: dict[str, object] = {
        "worst_rule_s": max(
            (t["seconds"] for t in timings.values() if isinstance(t["seconds"], float)),
            default=None,
        ),
        "timed_out": sum(1 for t in timings.values() if t["outcome"] == "timed out"),
    }
    if not args.skip_healthz:
        posted = [WORST[int(i)] for i in args.posted.split(",")]
        summary |= asyncio.run(healthz_under_load(posted))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
