"""The herd benchmark's harness at a tiny size: every partner's nudge counted at its sink."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_herd_bench_counts_every_delivery(tmp_path: Path) -> None:
    # A bench that overruns is interrupted, not killed: its services run in sessions of their
    # own, which only the bench's cleanup (on KeyboardInterrupt) stops.
    bench = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench" / "herd_bench.py"),
            "--couples",
            "5",
            "--quiet",
            "2",
            "--vs-apscheduler",
            "0",
            "--results",
            str(tmp_path),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        bench.send_signal(signal.SIGINT)
        stdout, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["missed"] == 0 and summary["duplicates"] == 0
    result = json.loads((tmp_path / "herd-5.json").read_text())
    herd, quiet = result["herd"], result["quiet"]
    assert herd["deliveries_expected"] == 10 and herd["delivered"] == 10
    assert herd["unexpected"] == 0
    assert 0 <= herd["lateness_first_s"] <= herd["lateness_max_s"]
    assert quiet["delivered"] == quiet["expected"] == 4 and quiet["out_of_order"] == 0
    assert {"scheduler-1", "scheduler-2", "notifier-1", "notifier-2", "content"} <= set(
        herd["processes"]
    )
