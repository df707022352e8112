"""py-spy for the benches: sample a service process while it works, then say where its CPU
went. py-spy is not a project dependency (``pip install py-spy``); without it, nothing is
sampled and the benches run as usual.

    .venv/bin/python bench/spy.py FILE.raw [--top 25]

prints the functions that held the CPU the longest (inclusive, across every thread) of a
file :func:`sample` wrote. Only samples of a thread holding the GIL are kept (py-spy's
``--gil``): in a Python process that is the time spent running Python (a thread waiting on a
queue, a socket or a lock holds none), so the shares are of the process's Python CPU time;
C code that releases the GIL (compression, TLS, the socket calls) is not counted.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def sample(pid: int, out: Path | None) -> subprocess.Popen[bytes] | None:
    """Start py-spy on ``pid`` (every thread, collapsed stacks into ``out``) if asked and
    installed; :func:`finish` stops it."""
    spy = _py_spy()
    if out is None or spy is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)  # py-spy would fail without a word
    cmd = [spy, "record", "-p", str(pid), "-r", "250", "--threads", "--gil"]
    cmd += ["-f", "raw", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(spying: subprocess.Popen[bytes] | None) -> None:
    """Stop a :func:`sample`: py-spy writes its file on SIGINT and exits."""
    if spying is not None:
        spying.send_signal(signal.SIGINT)
        spying.wait(60)


@contextmanager
def sampling(pids: dict[str, int], folder: Path | None) -> Iterator[None]:
    """Sample each named process into ``folder/<name>.raw`` while the block runs (nothing
    when ``folder`` is None)."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    spies = [sample(pid, folder / f"{name}.raw" if folder else None) for name, pid in pids.items()]
    try:
        yield
    finally:
        for spying in spies:
            finish(spying)


def where(raw: Path, top: int = 25) -> list[tuple[float, str]]:
    """(share of the busy samples, ``function file``) for the ``top`` functions of a
    collapsed-stacks file, counted once per sample however deep they recur."""
    total, inclusive = 0, Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        frames = {_frame(f) for f in stack.split(";")[1:]}  # the first names the thread
        for frame in frames:
            inclusive[frame] += int(count)
    return [(n / total, frame) for frame, n in inclusive.most_common(top)] if total else []


def _frame(frame: str) -> str:
    # "name (path/to/file.py:123)" -> "name file.py"
    name, _, place = frame.partition(" (")
    return f"{name} {place.split(':')[0].rsplit('/', 1)[-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for raw in args.raw:
        print(raw.name)
        for share, frame in where(raw, args.top):
            print(f"  {share:6.1%}  {frame}")


if __name__ == "__main__":
    main()
