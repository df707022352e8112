"""Run every ``bench/*_bench.py`` and collect what they report in ``bench/results/summary.json``.

    .venv/bin/python bench/run.py [-k NAME] [--timeout SECONDS]

Each script runs in its own process from the repository root with this interpreter and the
current environment. The summary keeps, per script, its exit code, wall time and the tail of
its output; a last output line that is a JSON object is kept as ``metrics``, so a script can
report numbers for machines to compare while still printing lines for people. Exits 1 when a
script failed, 0 otherwise (also when there is nothing to run yet).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"


def run_one(script: Path, timeout: float) -> dict[str, Any]:
    """Run ``script``; return its entry for the summary."""
    began = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = f"timed out after {timeout:.0f}s"
    lines = out.strip().splitlines()
    entry: dict[str, Any] = {
        "script": script.name,
        "exit_code": code,
        "seconds": round(time.monotonic() - began, 3),
        "output": lines[-20:],
    }
    if lines:
        try:
            metrics = json.loads(lines[-1])
        except ValueError:
            metrics = None
        if isinstance(metrics, dict):
            entry["metrics"] = metrics
    if code != 0:
        entry["error"] = err.strip().splitlines()[-20:]
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="match", default="", help="only scripts whose name has this")
    parser.add_argument("--timeout", type=float, default=1800, help="per script, seconds")
    args = parser.parse_args()
    scripts = sorted(p for p in BENCH.glob("*_bench.py") if args.match in p.name)
    if not scripts:
        print("no bench/*_bench.py scripts to run")
    results = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        entry = run_one(script, args.timeout)
        for line in entry["output"]:
            print(f"   {line}")
        status = "ok" if entry["exit_code"] == 0 else f"FAILED ({entry['exit_code']})"
        print(f"   {status} in {entry['seconds']:.1f}s", flush=True)
        for line in entry.get("error", []):
            print(f"   ! {line}")
        results.append(entry)
    RESULTS.mkdir(exist_ok=True)
    summary = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "results": results,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {RESULTS / 'summary.json'}")
    return 1 if any(r["exit_code"] != 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
