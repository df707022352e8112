"""The suite's fixtures (``tests/integration/conftest.py`` adds the integration-only ones).
Helpers live in :mod:`tests.support` (see its docstring); conftest files only register
fixtures, so test modules never import each other or a conftest.

Each integration test gets its own Kafka-protocol broker and its own Redis, started on free
ports; see :mod:`tests.support.infra` for using external servers or testcontainers instead,
and :mod:`tests.support.redis_cluster` for running against a Redis Cluster
(``--redis=cluster`` or ``TANDEM_TEST_REDIS=cluster``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tandem.inbox import Inbox
from tests.support.infra import (
    Infra,
    allowing,
    containers_wanted,
    provide,
    started_containers,
)
from tests.support.redis_cluster import (
    CLUSTER_TESTS,
    cluster_missing,
    cluster_wanted,
    started_cluster,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis",
        choices=("single", "cluster"),
        default=None,
        help="the Redis the integration tests get: one server per test (single, the "
        "default) or a local 3-master Redis Cluster (cluster; also TANDEM_TEST_REDIS)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "redis_cluster: also run against a Redis Cluster (make test-cluster)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`CLUSTER_TESTS` ``redis_cluster``."""
    for item in items:
        if item.nodeid.startswith(CLUSTER_TESTS):
            item.add_marker(pytest.mark.redis_cluster)


@pytest.fixture(scope="session")
def _containers() -> Iterator[tuple[str, str] | None]:
    if not containers_wanted():
        yield None
        return
    with started_containers() as servers:
        yield servers


@pytest.fixture(scope="session")
def _cluster(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """On a cluster run, one local Redis Cluster for the session (its URL), else None."""
    if not cluster_wanted(request.config.getoption("--redis")):
        yield None
        return
    missing = cluster_missing()
    if missing:
        pytest.skip(missing)
    with started_cluster() as url:
        yield url


@pytest.fixture
def infra(_containers: tuple[str, str] | None, _cluster: str | None) -> Iterator[Infra]:
    """A broker and a Redis for one test; see :mod:`tests.support.infra` for where they come
    from."""
    with provide(_containers, _cluster) as provided:
        yield provided


@pytest.fixture(scope="module")
def module_infra(_containers: tuple[str, str] | None, _cluster: str | None) -> Iterator[Infra]:
    """Like ``infra``, shared by the tests of one module (each still uses its own data)."""
    with provide(_containers, _cluster) as provided:
        yield provided


@pytest.fixture(scope="module")
def module_inbox() -> Iterator[Inbox]:
    """Like ``inbox``, shared by the tests of one module (for services started once per
    module, whose settings must allow its sinks from the start)."""
    box = Inbox().start()
    try:
        with allowing(box.allow):
            yield box
    finally:
        box.stop()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """Local HTTP and SMTP sinks standing in for the partners' phones; while it runs, every
    ``Infra.settings()`` allows exactly its sinks (``inbox.allow``) through the egress
    policy."""
    box = Inbox().start()
    try:
        with allowing(box.allow):
            yield box
    finally:
        box.stop()


@pytest.fixture(autouse=True)
def _inbox_first(request: pytest.FixtureRequest) -> None:
    """Start a test's ``inbox`` before its other fixtures, so settings a fixture builds from
    ``infra`` already allow the inbox's sinks (autouse fixtures are set up first)."""
    if "inbox" in request.fixturenames:
        request.getfixturevalue("inbox")
