"""The scheduler process: HTTP API, firing loop, outbox publisher and history consumer."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis

from services.scheduler.api import create_app
from services.scheduler.firing import Firer
from services.scheduler.history import NudgeHistory
from services.scheduler.keeping import Keeping
from services.scheduler.store import SchedulerStore
from shared.events import NudgeDelivered, NudgeFailed, NudgeReady
from shared.kafka import Record
from shared.ops import render_metrics
from shared.redis import Keys
from shared.secrets import SecretBox
from shared.service import BACKGROUND_POLL_MS, Service
from shared.settings import Settings
from shared.topics import NUDGE_DELIVERED, NUDGE_FAILED, NUDGE_READY, NUDGE_READY_URGENT
from shared.vault import Vault

log = logging.getLogger("tandem.scheduler")
SERVICE = "scheduler"


# History is not on any nudge's way to a phone: a few couples at once keep up with a herd's
# receipts, while the firing loop and the API (a test nudge) share this event loop.
HISTORY_CONCURRENCY = 8


def subscribe_history(service: Service, history: NudgeHistory) -> Any:
    """Feed the couple's nudge history from the content and notifier events. One keyed
    consumer for the four topics (each consumer costs a group join): couples concurrently,
    each couple's records in order, one commit per batch -- a herd's receipts cost the
    scheduler a fraction of what one commit and one handler dispatch per record did.
    Returns the subscriber."""
    consumer = service.keyed_subscriber(
        NUDGE_READY,
        NUDGE_READY_URGENT,
        NUDGE_DELIVERED,
        NUDGE_FAILED,
        group_id="scheduler-history",
        concurrency=HISTORY_CONCURRENCY,
        idle_poll_ms=BACKGROUND_POLL_MS,
    )

    @consumer
    async def on_nudge_event(event: NudgeReady | NudgeDelivered | NudgeFailed, _: Record) -> None:
        """Keep the event in its couple's nudge history: what a nudge said (ready), then
        each partner's outcome (delivered, or failed and whether for good)."""
        match event:
            case NudgeReady():
                await history.record_ready(event)
            case NudgeDelivered():
                await history.record_delivered(event)
            case NudgeFailed():
                await history.record_failed(event)

    return consumer.subscriber


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
    """One scheduler replica: the API (``api``, mounted on ``service.app`` with the ops
    endpoints on ``TANDEM_API_HOST:TANDEM_API_PORT``), the firing loop, the outbox
    publisher and the history consumer. ``start``/``stop`` (or ``async with
    scheduler.service``) for tests; ``service.serve()`` for the process."""

    def __init__(self, settings: Settings) -> None:
        secret_key = settings.require_secret_key()
        self.settings = settings
        self.service = Service(
            SERVICE, settings, bind=(settings.api_host, settings.api_port), bind_required=True
        )
        self.redis = self.service.redis
        self.broker = self.service.broker
        keys = Keys(settings.redis_prefix)
        self.store = SchedulerStore(
            self.redis,
            keys,
            Vault(self.redis, keys, SecretBox(secret_key, settings.old_keys())),
            buckets=settings.scheduler_buckets,
        )
        self.history = NudgeHistory(
            self.redis, keys, keep=settings.history_keep, ttl=settings.history_ttl_seconds
        )
        self.subscriber = subscribe_history(self.service, self.history)
        self.keeping = Keeping(self.store, self.history)
        self.firer = Firer(self.store, self.broker, settings, extras=self.keeping.extras)
        self.redis_problems: list[str] = []
        self.service.checks["redis"] = self._redis_check
        self.service.checks["backlog"] = self.store.backlog
        self.service.on_startup(self._check_redis_config)
        # Fire as soon as the producer is connected: starting the history consumer waits for
        # its group to hand out partitions, which after a crash takes until the dead member's
        # session has expired (10-20 s), and firing must not wait on history.
        self.service.loop(self.firer.run, before_consumers=True)
        self.api = create_app(
            settings,
            self.store,
            self.history,
            self.keeping,
            on_enqueue=self.firer.wake,
            readiness=self.service.readiness,
        )
        # Served by the ops route in front of the API; declared here too so the OpenAPI
        # document lists it beside /healthz and /readyz.
        self.api.add_api_route(
            "/metrics", self.metrics, methods=["GET"], tags=["ops"], response_class=Response
        )
        self.service.mount(self.api)
        self.app = self.service.app

    async def _redis_check(self) -> dict[str, Any]:
        """Redis answers, with its configuration (problems are warnings, not unready)."""
        return await redis_config_report(self.redis)

    async def _check_redis_config(self) -> None:
        report = await redis_config_report(self.redis)
        self.redis_problems = report["problems"]
        for problem in self.redis_problems:
            log.warning("redis configuration: %s", problem)

    async def metrics(self) -> Response:
        """Prometheus metrics of this replica (no token, like /healthz)."""
        body = await render_metrics(self.service.subscribers)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def start(self) -> None:
        """Start firing, then the history consumer (see ``service.loop`` above); no HTTP."""
        await self.service.start()

    async def stop(self) -> None:
        """Stop firing and consuming, then close Redis."""
        await self.service.stop()


def build(settings: Settings) -> Service:
    """The scheduler replica's service, for :func:`shared.service.main`."""
    return Scheduler(settings).service
