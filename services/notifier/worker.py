"""Wiring: the ``nudge.ready`` consumer and the delay-queue drain, as one FastStream app.

``build(settings)`` returns a :class:`Notifier` whose ``app`` runs both: the Kafka handler
delivers fresh nudges inline (the low-latency path) and commits the record only after every
partner's outcome is recorded; the drain task, started after the broker and stopped before
it, runs retries and held nudges from Redis so a failing provider never stalls a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel
from redis.asyncio import Redis

from services.notifier.channels import Channels
from services.notifier.delivery import SERVICE, Delivery
from services.notifier.store import ClaimedJob, NotifierStore
from shared.events import DeadLetter, NudgeDelivered, NudgeFailed, NudgeReady
from shared.kafka import declare_publishers, decode, guarded, make_broker, subscriber
from shared.ops import attach, kafka_redis_readiness
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.topics import NUDGE_DELIVERED, NUDGE_FAILED, NUDGE_READY, dlq
from shared.vault import Vault

log = logging.getLogger("tandem.notifier")

GROUP_ID = "notifier"


@dataclass
class Notifier:
    settings: Settings
    broker: KafkaBroker
    redis: Redis
    store: NotifierStore
    delivery: Delivery
    app: FastStream = field(init=False)
    # How often an idle drain looks for due jobs: the worst-case extra delay of a retry or
    # the end of a quiet-hours hold. One cheap ZRANGEBYSCORE per replica per tick.
    poll_seconds: float = 0.2
    batch: int = 32
    subscriber: Any = None
    _task: asyncio.Task[None] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def queue_lease_seconds(self) -> float:
        # A claimed job returns to the queue after this: long enough for a job to finish
        # (several channels, each bounded by its hard send timeout), short enough that a
        # killed replica's jobs come back within about a minute with default timeouts.
        return 4 * self.delivery.channels.send_timeout + 10.0

    def assigned(self) -> bool:
        """True once this replica's consumer owns some ``nudge.ready`` partitions."""
        consumer = getattr(self.subscriber, "consumer", None)
        return bool(consumer is not None and consumer.assignment())

    async def wait_assigned(self, within: float = 30.0) -> None:
        """Wait until the consumer group has given this replica partitions (readiness)."""
        deadline = asyncio.get_running_loop().time() + within
        while not self.assigned():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no nudge.ready partitions assigned")
            await asyncio.sleep(0.05)

    async def start_drain(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._drain_forever(), name="notifier-drain")

    async def stop_drain(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=self.delivery.channels.send_timeout + 5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def drain_once(self) -> int:
        """Claim and run the jobs due now; how many were claimed."""
        claimed = await self.store.claim(self.batch, self.queue_lease_seconds)
        if claimed:
            await asyncio.gather(*(self._run(c) for c in claimed))
        return len(claimed)

    async def _run(self, claimed: ClaimedJob) -> None:
        try:
            await self.delivery.run(claimed.job, claimed)
        except Exception:
            # The job stays claimed and comes due again when its lease ends.
            log.exception("delayed job %s failed; it will come back", claimed.job.id)

    async def _drain_forever(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                busy = await self.drain_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("delay queue drain failed")
                busy = 0
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)


def build(settings: Settings) -> Notifier:
    """The notifier for ``settings``: ``notifier.app`` is the FastStream app to run."""
    if not settings.secret_key:
        raise ValueError("TANDEM_SECRET_KEY is required to decrypt channel URLs")
    broker = make_broker(settings, service=SERVICE)
    redis = make_redis(settings)
    keys = Keys(settings.redis_prefix)
    store = NotifierStore(redis, keys)
    vault = Vault(redis, keys, SecretBox(settings.secret_key))
    channels = Channels(
        connect_timeout=settings.delivery_connect_timeout,
        read_timeout=settings.delivery_read_timeout,
        plugins_dir=settings.plugins_dir,
    )

    async def publish(event: BaseModel, topic: str, key: str) -> None:
        await broker.publish(event, topic, key=key.encode())

    delivery = Delivery(settings, store, vault, channels, publish)
    notifier = Notifier(settings, broker, redis, store, delivery)

    consumer = subscriber(broker, NUDGE_READY, group_id=GROUP_ID)
    declare_publishers(
        broker,
        SERVICE,
        {NUDGE_DELIVERED: NudgeDelivered, NUDGE_FAILED: NudgeFailed, dlq(NUDGE_READY): DeadLetter},
    )

    @consumer
    @guarded(broker, service=SERVICE)
    async def on_nudge_ready(message: KafkaMessage) -> None:
        nudge = decode(NudgeReady, message)
        raw = message.raw_message
        await delivery.handle(
            nudge,
            partition=getattr(raw, "partition", None),
            offset=getattr(raw, "offset", None),
        )

    app = FastStream(broker, logger=logging.getLogger("tandem.notifier.app"))
    app.after_startup(notifier.start_drain)
    app.on_shutdown(notifier.stop_drain)

    @app.after_shutdown
    async def close_redis() -> None:
        await redis.aclose()

    async def readiness() -> dict[str, Any]:
        return await kafka_redis_readiness(broker, redis, [consumer], service=SERVICE)

    attach(app, settings, readiness=readiness, subscribers=[consumer])
    notifier.app = app
    notifier.subscriber = consumer
    return notifier
