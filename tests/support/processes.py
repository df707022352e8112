"""The three services as real processes, for end-to-end tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

SERVICES = ("scheduler", "content", "notifier")


@contextmanager
def running_services(
    envs: Mapping[str, Mapping[str, str]],
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start ``python -m services.<name>`` for each name in ``envs`` with its environment;
    on exit stop them with SIGTERM and fail the test unless each exited cleanly (0)."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, env in envs.items()
    }
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
                failures[name] = (code, proc.stderr.read().decode()[-3000:] if proc.stderr else "")
        assert not failures, failures
