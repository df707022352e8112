"""Real infrastructure for tests: a Kafka-protocol broker and a Redis per test (or module).

By default both are embedded and started on free ports (the broker starts in milliseconds
and keeps nothing, so isolation is free). Point the suite at external servers instead with
``TANDEM_TEST_KAFKA_BOOTSTRAP`` and ``TANDEM_TEST_REDIS_URL``; where a Docker daemon answers
and ``TANDEM_TEST_CONTAINERS=1`` is set, testcontainers starts Apache Kafka and Redis.
The fixtures using this are in ``tests/conftest.py``.

``TANDEM_TEST_REDIS=cluster`` hands out a local Redis Cluster instead: see
:mod:`tests.support.redis_cluster`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from shared.egress import join_allow
from shared.settings import Settings
from tandem.embedded import Process, start_broker, start_redis

TEST_ADMIN_TOKEN = "test-admin-token"
# Channels that must load but never answer point at the discard port, which nothing here
# listens on; the egress policy lets them be saved (and fail to connect, as they always did).
DISCARD_ALLOW = "127.0.0.1:9"
# The egress exceptions of the local inboxes running now (the ``inbox`` fixture adds its
# sinks while a test runs): every Infra's settings allow them, as ``tandem dev`` does.
_inbox_allow: list[str] = []


@contextmanager
def allowing(entries: list[str]) -> Iterator[None]:
    """Add ``entries`` to every :meth:`Infra.settings`' ``channel_allow`` while inside."""
    _inbox_allow.extend(entries)
    try:
        yield
    finally:
        for entry in entries:
            _inbox_allow.remove(entry)


@dataclass
class Infra:
    kafka_bootstrap: str
    redis_url: str
    prefix: str
    embedded_broker: bool

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka_bootstrap": self.kafka_bootstrap,
            "redis_url": self.redis_url,
            "redis_prefix": self.prefix,
            "kafka_idempotence": not self.embedded_broker,
            "topic_partitions": 4,
            "admin_token": TEST_ADMIN_TOKEN,
            "secret_key": "x0z4PZk2cOrm9dCcZzZbZxkl7S_JHQq1zcx4Nqo1nsI=",
            "channel_allow": join_allow(DISCARD_ALLOW, _inbox_allow),
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def env(self, **overrides: object) -> dict[str, str]:
        """Environment for a service subprocess pointed at this infrastructure."""
        env = dict(os.environ)
        for name, value in self.settings(**overrides).model_dump(exclude_none=True).items():
            env[f"TANDEM_{name.upper()}"] = str(value)
        return env


def containers_wanted() -> bool:
    """``TANDEM_TEST_CONTAINERS=1`` and a Docker daemon that answers."""
    if os.environ.get("TANDEM_TEST_CONTAINERS") != "1":
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@contextmanager
def started_containers() -> Iterator[tuple[str, str]]:
    """Apache Kafka and Redis in containers: (bootstrap servers, Redis URL)."""
    from testcontainers.kafka import KafkaContainer  # type: ignore[import-untyped]
    from testcontainers.redis import RedisContainer  # type: ignore[import-untyped]

    with KafkaContainer().with_kraft() as kafka, RedisContainer() as redis:
        host = redis.get_container_host_ip()
        yield kafka.get_bootstrap_server(), f"redis://{host}:{redis.get_exposed_port(6379)}/0"


@contextmanager
def provide(containers: tuple[str, str] | None, cluster: str | None = None) -> Iterator[Infra]:
    """An :class:`Infra` with a fresh key prefix: the external servers named in the
    environment, else ``containers`` if given, else an embedded broker and Redis started
    here (and stopped on exit). ``cluster`` (a running cluster's URL) replaces the Redis."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    kafka = os.environ.get("TANDEM_TEST_KAFKA_BOOTSTRAP")
    redis_url = cluster or os.environ.get("TANDEM_TEST_REDIS_URL")
    if containers is not None:
        kafka, redis_url = kafka or containers[0], redis_url or containers[1]
    started: list[Process] = []
    embedded_broker = not kafka
    if not kafka:
        broker = start_broker()
        started.append(broker)
        kafka = f"127.0.0.1:{broker.port}"
    if not redis_url:
        redis = start_redis()
        started.append(redis)
        redis_url = f"redis://127.0.0.1:{redis.port}/0"
    try:
        yield Infra(kafka, redis_url, prefix, embedded_broker=embedded_broker)
    finally:
        for process in started:
            process.stop()
