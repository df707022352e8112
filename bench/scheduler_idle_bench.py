"""A scheduler replica's idle memory: RSS of ``python -m services.scheduler`` at rest.

    .venv/bin/python bench/scheduler_idle_bench.py [--baseline DIR] [--rounds 2]

Starts an embedded broker and Redis, then a scheduler process the way ``tandem dev`` starts
one (same module, console logs), waits until ``/healthz`` answers and 5 s more, and reads
its RSS and USS (psutil); then asks one API page and reads them again (what a first request
pays for what idle no longer loads). ``--baseline DIR``: a second checkout measured the same
way, alternating with this tree, ``--rounds`` times each. The last line printed is a JSON
summary.
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
from typing import Any

import httpx
import psutil

from shared.kafka import ensure_topics
from shared.secrets import SecretBox
from shared.settings import Settings
from tandem.embedded import free_port, start_broker, start_redis

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def memory(pid: int) -> dict[str, float]:
    info = psutil.Process(pid).memory_full_info()
    return {"rss_mib": round(info.rss / MIB, 1), "uss_mib": round(info.uss / MIB, 1)}


def idle(code: Path, env: dict[str, str]) -> dict[str, Any]:
    """Start one scheduler from the tree ``code``; its memory at rest and after a request."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.scheduler"],
        cwd=code,
        env={**env, "PYTHONPATH": str(code), "TANDEM_API_PORT": str(port)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("the scheduler did not answer /healthz within 120 s")
        time.sleep(5)
        at_rest = memory(proc.pid)
        headers = {"Authorization": f"Bearer {env['TANDEM_ADMIN_TOKEN']}"}
        httpx.get(f"{url}/v1/couples?limit=1", headers=headers, timeout=30, trust_env=False)
        httpx.get(f"{url}/app/", timeout=30, trust_env=False)
        return {"idle": at_rest, "after_requests": memory(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    broker, redis = start_broker(), start_redis()
    env = {
        **os.environ,
        "TANDEM_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker.port}",
        "TANDEM_KAFKA_IDEMPOTENCE": "false",
        "TANDEM_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "TANDEM_ADMIN_TOKEN": "bench",
        "TANDEM_SECRET_KEY": SecretBox.generate_key(),
        "TANDEM_LOG_FORMAT": "console",
        "TANDEM_TOPIC_PARTITIONS": "4",
    }
    asyncio.run(ensure_topics(Settings(kafka_bootstrap=env["TANDEM_KAFKA_BOOTSTRAP"])))
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    try:
        for r in range(args.rounds):
            for label, code in trees if r % 2 == 0 else trees[::-1]:
                result = idle(code, env)
                runs[label].append(result)
                print(f"{label} (round {r + 1}): {result}", flush=True)
    finally:
        broker.stop()
        redis.stop()
    print(json.dumps({"bench": "scheduler_idle", **runs}))


if __name__ == "__main__":
    main()
