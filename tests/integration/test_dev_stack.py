"""`tandem dev` as a user runs it: a subprocess that starts real processes and must leave
none behind.

Most tests run it against stub services (tiny scripts in a temp dir that shadow
``services.*``) so they exercise the runner itself: startup, the demo requests, replicas,
Ctrl-C, a dying service, a taken port. The last test runs the real services end to end.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tandem.embedded import free_port

REPO = Path(__file__).resolve().parents[2]

STUB_SCHEDULER = """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ["TANDEM_ADMIN_TOKEN"]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._send(401, {"detail": "bad token"})
        return False

    def do_GET(self):
        if self.path == "/healthz":
            self._send(200, {"ok": True})
        elif self._authorized():
            self._send(200, ["2026-11-21T20:00:00+01:00"])

    def do_POST(self):
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/couples":
            zones = sorted(p["timezone"] for p in body["partners"])
            assert zones == ["America/New_York", "Europe/Berlin"], zones
            self._send(201, {"id": "c-stub", "token": "couple-token-stub"})
        else:
            assert body["schedule"]["rrule"].startswith("FREQ=MINUTELY"), body
            self._send(201, {"id": "r-stub"})


print("stub scheduler on", os.environ["TANDEM_API_PORT"], flush=True)
ThreadingHTTPServer(
    (os.environ.get("TANDEM_API_HOST", "127.0.0.1"), int(os.environ["TANDEM_API_PORT"])), Handler
).serve_forever()
"""

# Content also starts a grandchild, so the test sees that the whole process group goes.
STUB_WORKER = """
import os, subprocess, sys, time

subprocess.Popen(["sleep", "300"])
print("stub worker up", flush=True)
code = os.environ.get("STUB_EXIT_CODE")
if code and __spec__.name.startswith("services.notifier"):
    time.sleep(1)
    sys.exit(int(code))
while True:
    time.sleep(1)
"""


@pytest.fixture
def stub_services(tmp_path: Path) -> Path:
    """A directory whose ``services`` package shadows the real one."""
    root = tmp_path / "stubs"
    for name, source in (
        ("scheduler", STUB_SCHEDULER),
        ("content", STUB_WORKER),
        ("notifier", STUB_WORKER),
    ):
        package = root / "services" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text(textwrap.dedent(source))
    (root / "services" / "__init__.py").write_text("")
    return root


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Dev:
    """``tandem dev`` in a subprocess, its output collected line by line."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], run_dir: Path) -> None:
        self.marker = f"TANDEM_DEV_TEST_MARKER={uuid.uuid4().hex}"
        key, value = self.marker.split("=")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tandem.cli", "dev", "--run-dir", str(run_dir), *args],
            cwd=cwd,
            env={**env, key: value},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("timed out; output:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError("tandem dev ended; output:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if predicate(line):
                return line

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def pids(self) -> dict[str, int]:
        line = next(line for line in self.lines if line.strip().startswith("pids"))
        return {k: int(v) for k, v in re.findall(r"(\S+)=(\d+)", line)}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in processes_with(self.marker):
            os.kill(pid, signal.SIGKILL)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(extra)
    return env


@pytest.fixture
def dev_runs() -> Iterator[list[Dev]]:
    """Every Dev a test started; whatever a failed test left running is killed."""
    runs: list[Dev] = []
    yield runs
    for run in runs:
        run.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_process(
    stub_services: Path, dev_runs: list[Dev], sig: signal.Signals
) -> None:
    port = free_port()
    token = f"given-{uuid.uuid4().hex}"
    env = _env(TANDEM_API_PORT=str(port), TANDEM_ADMIN_TOKEN=token, PYTHONPATH=str(stub_services))
    dev = Dev(
        ["--demo", "--logs", "--replicas", "notifier=3,scheduler=2"],
        cwd=stub_services,
        env=env,
        run_dir=stub_services.parent / "run",
    )
    dev_runs.append(dev)

    dev.wait_for(lambda line: "Press Ctrl-C" in line, timeout=60)
    out = dev.output
    assert f"API          http://127.0.0.1:{port}" in out
    assert re.search(rf"API replica  http://127\.0\.0\.1:(?!{port}\b)\d+", out)
    assert "couple id     c-stub" in out and "couple token  couple-token-stub" in out
    assert f"admin token  {token}" in out  # a given token is used as it is
    assert re.search(r"inbox page   http://127\.0\.0\.1:\d+/", out)
    pids = dev.pids()
    assert set(pids) == {
        "redis", "kafka", "scheduler-1", "scheduler-2", "content",
        "notifier-1", "notifier-2", "notifier-3",
    }  # fmt: skip
    assert all(alive(pid) for pid in pids.values())
    started = processes_with(dev.marker)
    assert len(started) >= len(pids) + 4  # + the runner and each worker's grandchild

    dev.proc.send_signal(sig)
    assert dev.finish() == 0, dev.output
    assert f"{sig.name}: stopping" in dev.output and "stopped every process" in dev.output
    assert not [pid for pid in pids.values() if alive(pid)]
    assert processes_with(dev.marker) == []


def test_a_dying_service_stops_the_stack(stub_services: Path, dev_runs: list[Dev]) -> None:
    env = _env(TANDEM_API_PORT=str(free_port()), PYTHONPATH=str(stub_services), STUB_EXIT_CODE="3")
    dev = Dev([], cwd=stub_services, env=env, run_dir=stub_services.parent / "run")
    dev_runs.append(dev)

    assert dev.finish(timeout=60) == 1, dev.output
    assert "error: notifier exited with code 3" in dev.output
    assert processes_with(dev.marker) == []


def test_a_taken_api_port_is_refused(stub_services: Path, dev_runs: list[Dev]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = _env(TANDEM_API_PORT=str(port), PYTHONPATH=str(stub_services))
        dev = Dev([], cwd=stub_services, env=env, run_dir=stub_services.parent / "run")
        dev_runs.append(dev)
        assert dev.finish(timeout=60) == 1, dev.output
    assert f"TANDEM_API_PORT={port} is already in use" in dev.output
    assert processes_with(dev.marker) == []


@pytest.mark.e2e
def test_demo_nudges_reach_both_partners(tmp_path: Path, dev_runs: list[Dev]) -> None:
    env = _env(TANDEM_API_PORT=str(free_port()))
    dev = Dev(["--demo", "--demo-in", "8"], cwd=REPO, env=env, run_dir=tmp_path / "run")
    dev_runs.append(dev)
    dev.wait_for(lambda line: "Press Ctrl-C" in line, timeout=90)

    # The demo ritual first fires 8 s after it is created, together for both partners.
    got: set[str] = set()
    while got != {"sam-phone", "alex-phone"}:
        line = dev.wait_for(lambda line: line.startswith("INBOX"), 120)
        got |= {a for a in ("sam-phone", "alex-phone") if a in line}

    dev.proc.send_signal(signal.SIGINT)
    assert dev.finish() == 0, dev.output
    assert processes_with(dev.marker) == []


@pytest.mark.e2e
def test_devstack_in_process(tmp_path: Path) -> None:
    """The programmatic API an end-to-end test builds on."""
    from tandem.dev import DevStack, create_demo

    environ = _env(TANDEM_API_PORT=str(free_port()), TANDEM_CHANNEL_ALLOW="10.0.5.0/24")
    with DevStack(replicas={"notifier": 2}, environ=environ, run_dir=tmp_path) as stack:
        assert stack.settings is not None and stack.settings.kafka_idempotence is False
        assert stack.env["TANDEM_ADMIN_TOKEN"] == stack.admin_token
        # The environment's egress exceptions plus exactly the inbox's sinks.
        allow = ["10.0.5.0/24", *stack.inbox.allow]
        assert stack.env["TANDEM_CHANNEL_ALLOW"].split(",") == allow
        assert stack.settings.channel_allow.split(",") == allow
        create_demo(stack, first_in=2)
        stack.inbox.wait_for(
            lambda got: {r.address for r in got} >= {"sam-phone", "alex-phone"}, timeout=60
        )
        pids = stack.pids()
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert (tmp_path / "notifier-2.log").exists()
