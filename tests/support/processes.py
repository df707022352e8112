"""The three services as real processes, for end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

SERVICES = ("scheduler", "content", "notifier")


@contextmanager
def running_services(
    envs: Mapping[str, Mapping[str, str]], *, log_dir: Path | None = None
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start ``python -m services.<name>`` for each name in ``envs`` with its environment;
    on exit stop them with SIGTERM and fail the test unless each exited cleanly (0).
    ``log_dir``: each process's whole stderr goes to ``log_dir/<name>.log`` (else to a pipe
    read only when it fails)."""
    with ExitStack() as files:
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env=dict(env),
                stdout=subprocess.DEVNULL,
                stderr=(
                    files.enter_context((log_dir / f"{name}.log").open("wb"))
                    if log_dir is not None
                    else subprocess.PIPE
                ),
            )
            for name, env in envs.items()
        }
        yield from _stopped_cleanly(procs, log_dir)


def _stopped_cleanly(
    procs: dict[str, subprocess.Popen[bytes]], log_dir: Path | None
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    try:
        yield procs
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        failures = {}
        for name, proc in procs.items():
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0:
                failures[name] = (code, _stderr(proc, log_dir and log_dir / f"{name}.log"))
        assert not failures, failures


def _stderr(proc: subprocess.Popen[bytes], log: Path | None) -> str:
    if proc.stderr is not None:
        return proc.stderr.read().decode()[-3000:]
    return log.read_text(errors="replace")[-3000:] if log is not None else ""
