"""The scheduler process: HTTP API, firing loop, outbox publisher and history consumer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import Response
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis

from services.scheduler.api import create_app
from services.scheduler.firing import Firer
from services.scheduler.history import NudgeHistory
from services.scheduler.keeping import Keeping
from services.scheduler.store import SchedulerStore
from shared.events import (
    DeadLetter,
    NudgeDelivered,
    NudgeFailed,
    NudgeReady,
    RitualDue,
    RitualMissed,
)
from shared.kafka import (
    declare_publishers,
    decode,
    ensure_topics,
    guarded,
    make_broker,
    subscriber,
)
from shared.ops import consumer_report, render_metrics
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.topics import NUDGE_DELIVERED, NUDGE_FAILED, NUDGE_READY, RITUAL_DUE, RITUAL_MISSED, dlq
from shared.vault import Vault

log = logging.getLogger("tandem.scheduler")
SERVICE = "scheduler"


def subscribe_history(broker: KafkaBroker, history: NudgeHistory) -> Any:
    """Feed the couple's nudge history from the content and notifier events (one consumer
    for the three topics: each consumer costs a group join). Returns the subscriber."""
    record = {
        NUDGE_READY: lambda m: history.record_ready(decode(NudgeReady, m)),
        NUDGE_DELIVERED: lambda m: history.record_delivered(decode(NudgeDelivered, m)),
        NUDGE_FAILED: lambda m: history.record_failed(decode(NudgeFailed, m)),
    }

    consumer = subscriber(broker, *record, group_id="scheduler-history")

    @consumer
    @guarded(broker, service=SERVICE)
    async def on_event(message: KafkaMessage) -> None:
        await record[message.raw_message.topic](message)  # type: ignore[union-attr]

    return consumer


async def redis_config_report(redis: Redis) -> dict[str, Any]:
    """What the scheduler needs from Redis: no eviction (an evicted schedule entry is a
    ritual that silently stops) and persistence (AOF), so a restart loses nothing."""
    config = await redis.config_get("maxmemory-policy")
    aof = await redis.config_get("appendonly")
    policy = config.get("maxmemory-policy")
    appendonly = aof.get("appendonly")
    problems = []
    if policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy!r}; rituals may be evicted (want 'noeviction')"
        )
    if appendonly != "yes":
        problems.append(
            "appendonly is off; a Redis restart loses schedules (want 'appendonly yes')"
        )
    return {"maxmemory_policy": policy, "appendonly": appendonly, "problems": problems}


class Scheduler:
    """One scheduler replica. ``start``/``stop`` for tests; ``run`` for the process."""

    def __init__(self, settings: Settings) -> None:
        if not settings.secret_key:
            raise ValueError("TANDEM_SECRET_KEY must be set (make one with `tandem keygen`)")
        self.settings = settings
        self.redis = make_redis(settings)
        keys = Keys(settings.redis_prefix)
        self.store = SchedulerStore(
            self.redis, keys, Vault(self.redis, keys, SecretBox(settings.secret_key))
        )
        self.history = NudgeHistory(self.redis, keys)
        self.broker = make_broker(settings, service=SERVICE)
        self.subscriber = subscribe_history(self.broker, self.history)
        # The firing loop publishes these from the outbox (raw JSON); declared for the docs.
        declare_publishers(
            self.broker,
            SERVICE,
            {
                RITUAL_DUE: RitualDue,
                RITUAL_MISSED: RitualMissed,
                **{dlq(t): DeadLetter for t in (NUDGE_READY, NUDGE_DELIVERED, NUDGE_FAILED)},
            },
        )
        self.keeping = Keeping(self.store, self.history)
        self.firer = Firer(self.store, self.broker, settings, extras=self.keeping.extras)
        self.app = create_app(
            settings,
            self.store,
            self.history,
            self.keeping,
            on_enqueue=self.firer.wake,
            readiness=self.readiness,
        )
        self.app.add_api_route(
            "/metrics", self.metrics, methods=["GET"], tags=["ops"], response_class=Response
        )
        self._stop = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self.redis_problems: list[str] = []

    async def readiness(self) -> dict[str, Any]:
        report: dict[str, Any] = {"service": SERVICE}
        try:
            await self.redis.ping()
            report["redis"] = await redis_config_report(self.redis)
            report["backlog"] = await self.store.backlog()
        except Exception as exc:  # readiness reports, it does not raise
            report["redis"] = {"error": str(exc)}
        report["kafka"] = {"connected": await self.broker.ping(timeout=2)}
        report["consumers"] = await consumer_report([self.subscriber])
        report["ready"] = (
            "error" not in report["redis"]
            and report["kafka"]["connected"]
            and report["consumers"]["ok"]
        )
        return report

    async def metrics(self) -> Response:
        """Prometheus metrics of this replica (no token, like /healthz)."""
        body = await render_metrics([self.subscriber])
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def start(self) -> None:
        report = await redis_config_report(self.redis)
        self.redis_problems = report["problems"]
        for problem in self.redis_problems:
            log.warning("redis configuration: %s", problem)
        await ensure_topics(self.settings)
        # Fire as soon as the producer is connected: starting the history consumer waits for
        # its group to hand out partitions, which after a crash takes until the dead member's
        # session has expired (10-20 s), and firing must not wait on history.
        await self.broker.connect()
        self._stop.clear()
        self._loop_task = asyncio.create_task(self.firer.run(self._stop))
        try:
            await self.broker.start()
        except BaseException:
            self._stop.set()
            await self._loop_task
            raise

    async def stop(self) -> None:
        self._stop.set()
        if self._loop_task:
            await self._loop_task
        await self.broker.stop()
        await self.redis.aclose()

    async def run(self) -> None:
        """Serve the API and fire until SIGINT or SIGTERM, then stop cleanly (exit 0)."""
        config = uvicorn.Config(
            self.app,
            host=self.settings.api_host,
            port=self.settings.api_port,
            log_level="warning",
            access_log=False,
        )
        server = _Server(config)
        loop = asyncio.get_running_loop()
        # Before start(): a signal while the history consumer is still joining its group is
        # a clean stop too (the server then exits at once), not death by the default action.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, setattr, server, "should_exit", True)
        await self.start()
        try:
            await server.serve()
        finally:
            await self.stop()


class _Server(uvicorn.Server):
    """uvicorn re-raises the signal it caught once it has shut down, which would kill the
    process before the scheduler's own clean-up ran; the process handles signals itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
