"""Run every ``bench/*_bench.py`` and collect what they report in ``bench/results/summary.json``.

    .venv/bin/python bench/run.py [-k NAME] [--timeout SECONDS] [--chart-only] [--docs]

Each script runs in its own process from the repository root with this interpreter and the
current environment. The summary keeps, per script, its exit code, wall time and the tail of
its output; a last output line that is a JSON object is kept as ``metrics``, so a script can
report numbers for machines to compare while still printing lines for people. Exits 1 when a
script failed, 0 otherwise (also when there is nothing to run yet).

The metrics are also drawn, with matplotlib when it is installed (the ``dev`` extra), into
``bench/results/summary.png``: a metric named ``*_pNN_s`` or ``*_pNN_ms`` is a lateness or
latency quantile, one named ``*_per_s`` a throughput, and other numbers are printed beneath.
``--chart-only`` redraws it from the existing summary; ``--docs`` also copies it to
``docs/bench.png``, the chart the README shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCS_CHART = ROOT / "docs" / "bench.png"
QUANTILE = re.compile(r"^(?P<what>.+)_p(?P<q>\d+)_(?P<unit>s|ms)$")


def run_one(script: Path, timeout: float) -> dict[str, Any]:
    """Run ``script``; return its entry for the summary."""
    began = time.monotonic()
    # A script's own folder heads its sys.path; the root must too, so the checkout's packages
    # are the ones imported even without an editable install.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
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


def chart_data(
    summary: dict[str, Any],
) -> tuple[dict[str, dict[str, float]], dict[str, float], list[str]]:
    """From a summary: latency quantiles in seconds by row label (``{"p50": .., "p99": ..}``),
    throughputs per second by row label, and one caption line per benchmark with its other
    numbers (counts, duplicates, misses) -- by the metric-name convention in the docstring."""
    quantiles: dict[str, dict[str, float]] = {}
    rates: dict[str, float] = {}
    captions: list[str] = []
    for entry in summary.get("results", []):
        metrics = entry.get("metrics") or {}
        bench = str(metrics.get("bench") or entry["script"].removesuffix("_bench.py"))
        other = []
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if match := QUANTILE.match(key):
                scale = 1000.0 if match["unit"] == "ms" else 1.0
                label = f"{bench}: {match['what'].replace('_', ' ')}"
                quantiles.setdefault(label, {})[f"p{match['q']}"] = value / scale
            elif key.endswith("_per_s"):
                rates[f"{bench}: {key.removesuffix('_per_s').replace('_', ' ')}"] = value
            else:
                other.append(f"{key.replace('_', ' ')} {value:,}")
        if entry.get("exit_code") != 0:
            other.append(f"FAILED (exit {entry.get('exit_code')})")
        if other:
            captions.append(f"{bench}: " + ", ".join(other))
    return quantiles, rates, captions


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def render_chart(summary: dict[str, Any], path: Path) -> bool:
    """Draw ``summary`` into the PNG at ``path``; False (and nothing drawn) when matplotlib is
    missing or there is no metric to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed, none wanted
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[dev]'): no chart")
        return False
    quantiles, rates, captions = chart_data(summary)
    if not quantiles and not rates:
        return False
    rows = max(len(quantiles), len(rates), 1)
    fig, (late, rate) = plt.subplots(
        1, 2, figsize=(12, 1.6 + 0.75 * rows + 0.22 * len(captions)), width_ratios=(3, 2)
    )
    colors = {"p50": "#8b5cf6", "p99": "#ec4899"}
    labels = list(quantiles)
    for i, q in enumerate(("p50", "p99")):
        ys = [n + (i - 0.5) * 0.38 for n in range(len(labels))]
        values = [quantiles[label].get(q, 0.0) for label in labels]
        late.barh(ys, values, height=0.36, color=colors[q], label=q)
        for y, value in zip(ys, values, strict=True):
            if value > 0:
                late.annotate(
                    f" {_duration(value)}", (value, y), va="center", fontsize=8, color="#333"
                )
    late.set_yticks(range(len(labels)), labels, fontsize=9)
    late.set_xscale("log")
    late.set_xlabel("seconds (log scale)")
    late.set_title("Lateness and latency (p50, p99)", fontsize=11, loc="left")
    late.legend(loc="upper right", fontsize=8, frameon=False)
    names = list(rates)
    rate.barh(range(len(names)), [rates[n] for n in names], height=0.5, color="#2b8c8c")
    for y, name in enumerate(names):
        rate.annotate(f" {rates[name]:,.0f}/s", (rates[name], y), va="center", fontsize=8)
    rate.set_yticks(range(len(names)), names, fontsize=9)
    rate.set_xlabel("per second")
    rate.set_title("Throughput", fontsize=11, loc="left")
    for ax in (late, rate):
        ax.invert_yaxis()  # first benchmark on top, as listed
        ax.spines[["top", "right"]].set_visible(False)
        ax.margins(x=0.25)
    footer = [
        f"{summary.get('machine', '')}, Python {summary.get('python', '?')}, "
        f"{summary.get('at', '')}; broker, Redis and every process on the same machine",
        *captions,
    ]
    fig.suptitle("Tandem benchmarks", x=0.01, ha="left", fontsize=13, fontweight="bold")
    fig.text(0.01, 0.01, "\n".join(footer), fontsize=8, color="#555", va="bottom")
    fig.tight_layout(rect=(0, 0.02 + 0.028 * len(footer), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _machine() -> str:
    memory = ""
    try:
        kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        memory = f", {kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores{memory}"


def _publish_chart(summary: dict[str, Any], docs: bool) -> None:
    chart = RESULTS / "summary.png"
    if render_chart(summary, chart):
        print(f"chart: {chart}")
        if docs:
            DOCS_CHART.parent.mkdir(exist_ok=True)
            shutil.copyfile(chart, DOCS_CHART)
            print(f"chart copied to {DOCS_CHART}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="match", default="", help="only scripts whose name has this")
    parser.add_argument("--timeout", type=float, default=1800, help="per script, seconds")
    parser.add_argument(
        "--chart-only", action="store_true", help="redraw the chart from the existing summary"
    )
    parser.add_argument("--docs", action="store_true", help="also copy the chart to docs/")
    args = parser.parse_args()
    if args.chart_only:
        _publish_chart(json.loads((RESULTS / "summary.json").read_text()), args.docs)
        return 0
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
        "machine": _machine(),
        "results": results,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {RESULTS / 'summary.json'}")
    _publish_chart(summary, args.docs)
    return 1 if any(r["exit_code"] != 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
