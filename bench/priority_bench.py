"""A test nudge during a herd, the scheduler's part: how long from ``POST .../trigger`` until
its record is on ``ritual.due``, while a herd waits in the outbox, beside a baseline tree.

    .venv/bin/python bench/priority_bench.py [--baseline /tmp/onboard-base] [--herd 10000]
        [--rounds 3]

Starts one embedded broker and one Redis; per tree (``--baseline``, a ``git worktree add``
of ``main``, and this one; rounds alternate who goes first) a scheduler process of that
tree's code in its own key prefix, one couple with one ritual made through its API, then
``--herd`` due records of that couple put in its outbox at once (as a herd's firing commits
them: visible since its instant, a second ago) and, right after, a test nudge through the
API. Reports per tree the time from the trigger's request to its record read back from the
broker, and how many of the herd's records the broker had before it. Last line: a JSON
summary (medians).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from import_bench import ADMIN, SINK, Api, couple  # noqa: E402  (this folder heads sys.path)

from services.scheduler import planning  # noqa: E402
from services.scheduler.firing import outgoing_due  # noqa: E402
from services.scheduler.store import SchedulerStore  # noqa: E402
from shared.events import RitualDue  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.redis import Keys, make_redis  # noqa: E402
from shared.secrets import SecretBox  # noqa: E402
from shared.topics import RITUAL_DUE  # noqa: E402
from shared.vault import Vault  # noqa: E402
from tandem.dev import settings_from  # noqa: E402
from tandem.embedded import start_broker, start_redis  # noqa: E402


async def one_round(api: Api, env: dict[str, str], herd: int) -> dict[str, Any]:
    """The trigger's latency to the broker with ``herd`` records waiting in the outbox."""
    settings = settings_from(env)
    redis = make_redis(settings)
    keys = Keys(api.prefix)
    store = SchedulerStore(redis, keys, Vault(redis, keys, SecretBox(settings.secret_key or "")))
    headers = {"Authorization": f"Bearer {ADMIN}"}
    consumer = AIOKafkaConsumer(
        RITUAL_DUE,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    try:
        while not consumer.assignment():  # aiokafka offers no event to await
            await consumer.getmany(timeout_ms=100)
        async with httpx.AsyncClient(base_url=api.url, headers=headers, trust_env=False) as c:
            made = (await c.post("/v1/couples", json=couple(0, False))).json()
            ritual_id = (
                await c.post(f"/v1/couples/{made['id']}/rituals", json={"kind": "hug"})
            ).json()["id"]
            pair, ritual = await store.get_couple(made["id"]), await store.get_ritual(ritual_id)
            assert pair is not None and ritual is not None
            now = datetime.now(UTC)
            due = [
                json.loads(o.value)
                for _ in range(herd)
                for o in planning.manual_trigger(pair, ritual, now)
            ]
            waiting = [
                outgoing_due(
                    RitualDue.model_validate({**e, "trigger": "schedule", "urgent": False})
                )
                for e in due
            ]
            await store.enqueue((now - timedelta(seconds=1)).timestamp(), waiting)
            sent = time.perf_counter()
            answer = await c.post(f"/v1/rituals/{ritual_id}/trigger")
            occurrence = answer.json()["occurrence_id"]
        before = 0
        deadline = sent + 120
        while time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for record in (r for rs in batches.values() for r in rs):
                if json.loads(record.value)["occurrence_id"] == occurrence:
                    return {"seconds": time.perf_counter() - sent, "herd_before": before}
                before += 1
        raise RuntimeError("the trigger's record did not arrive within 120 s")
    finally:
        await consumer.stop()
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, default=Path("/tmp/onboard-base"))
    parser.add_argument("--herd", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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
        "TANDEM_RATE_LIMIT": "",
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    logs = Path("/tmp")
    try:
        asyncio.run(ensure_topics(settings_from(env)))
        for run in range(args.rounds):
            order = list(trees) if run % 2 == 0 else list(reversed(trees))
            for name in order:
                api = Api(trees[name], env, logs / f"priority-bench-{name}.log")
                try:
                    api.wait_healthy()
                    got = asyncio.run(one_round(api, env, args.herd))
                finally:
                    api.stop()
                results[name].append(got)
                print(
                    f"round {run + 1} {name:<9} trigger on the broker after "
                    f"{got['seconds']:.2f} s, behind {got['herd_before']} herd records",
                    flush=True,
                )
    finally:
        broker.stop()
        redis.stop()
    summary: dict[str, Any] = {"bench": "priority", "herd": args.herd, "rounds": args.rounds}
    for name, rounds in results.items():
        seconds = statistics.median(r["seconds"] for r in rounds)
        summary[f"trigger_{name}_median_s"] = round(seconds, 3)
        summary[f"herd_before_{name}_median"] = statistics.median(r["herd_before"] for r in rounds)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
