"""Wiring: the ``nudge.ready`` consumer and the delay-queue drain, as one service.

``build(settings)`` returns a :class:`Notifier` whose ``service`` runs both: the Kafka handler
delivers fresh nudges inline (the low-latency path), couples concurrently and each couple's
nudges in order (the keyed consumer of :mod:`shared.kafka`), and a batch commits only after
every partner's outcome of each of its records is recorded; the drain task, started after
the broker and stopped before it, runs retries and held nudges from Redis so a failing
provider never stalls a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from services.notifier.channels import Channels
from services.notifier.delivery import SERVICE, Delivery
from services.notifier.store import ClaimedJob, NotifierStore
from shared.backoff import pause
from shared.egress import policy as egress_policy
from shared.events import NudgeReady
from shared.kafka import Record, describe, is_transient
from shared.redis import Keys
from shared.secrets import SecretBox
from shared.service import URGENT_POLL_MS, Service
from shared.settings import Settings
from shared.topics import NUDGE_DELIVERED, NUDGE_FAILED, NUDGE_READY, NUDGE_READY_URGENT, dlq
from shared.vault import Vault

log = logging.getLogger("tandem.notifier")

GROUP_ID = "notifier"


@dataclass
class Notifier:
    """The notifier's parts: ``service`` runs them (``serve()``, or ``async with``)."""

    service: Service
    store: NotifierStore
    delivery: Delivery
    subscriber: Any
    # How often an idle drain looks for due jobs: the worst-case extra delay of a retry or
    # the end of a quiet-hours hold. One cheap ZRANGEBYSCORE per replica per tick.
    poll_seconds: float = 0.2
    batch: int = 32

    @property
    def queue_lease_seconds(self) -> float:
        # A claimed job returns to the queue after this: long enough for a job to finish
        # (several channels, each bounded by Channels.longest_send), short enough that a
        # killed replica's jobs come back within about a minute with default timeouts.
        return 2 * self.delivery.channels.longest_send + 10.0

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

    async def drain_once(self) -> int:
        """Claim and run the jobs due now; how many were claimed."""
        claimed = await self.store.claim(self.batch, self.queue_lease_seconds)
        if claimed:
            await asyncio.gather(*(self._run(c) for c in claimed))
        return len(claimed)

    async def _run(self, claimed: ClaimedJob) -> None:
        """Run one claimed job under the consumers' rule (:mod:`shared.kafka`): a
        transient failure leaves it claimed, so it comes due again when its lease ends,
        without limit; any other error is bounded by :meth:`Delivery.crashed` (retried
        a few times, then dead-lettered) so a job that cannot run never comes back
        forever. Never raises: one job's failure must not abort its batch."""
        try:
            await self.delivery.run(claimed.job, claimed)
        except Exception as exc:
            if is_transient(exc):
                log.warning(
                    "delayed job %s failed (%s); it will come back",
                    claimed.job.id,
                    describe(exc),
                    exc_info=exc,
                )
                return
            try:
                await self.delivery.crashed(claimed, exc)
            except Exception:
                # The job stays claimed and comes due again when its lease ends.
                log.exception(
                    "delayed job %s: failure not recorded; it will come back", claimed.job.id
                )

    async def drain(self, stop: asyncio.Event) -> None:
        """Run the delay queue until ``stop`` is set: busy, at once again; idle, after a
        poll; failing (Redis down), after a growing pause."""
        failures = 0
        while not stop.is_set():
            try:
                busy = await self.drain_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("delay queue drain failed")
                busy = 0
                await asyncio.sleep(pause(failures, cap=5.0))
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_seconds)


def build(settings: Settings) -> Notifier:
    """The notifier for ``settings``; ``notifier.service`` runs it: the ``nudge.ready``
    consumer delivers inline, the delay-queue drain runs while it runs (started after the
    consumers, stopped before them, given a send timeout to finish its jobs), and the ops
    endpoints are served on ``TANDEM_OPS_HOST:TANDEM_OPS_PORT`` when a port is set."""
    secret_key = settings.require_secret_key()  # it decrypts the channel URLs
    bind = (settings.ops_host, settings.ops_port) if settings.ops_port else None
    service = Service(SERVICE, settings, bind=bind)
    keys = Keys(settings.redis_prefix)
    store = NotifierStore(service.redis, keys)
    vault = Vault(service.redis, keys, SecretBox(secret_key, settings.old_keys()))
    channels = Channels(
        connect_timeout=settings.delivery_connect_timeout,
        read_timeout=settings.delivery_read_timeout,
        plugins_dir=settings.plugins_dir,
        egress=egress_policy(settings.channel_allow),
        per_host=settings.delivery_per_host,
        overall=settings.delivery_concurrency,
    )
    channels.load_plugins()
    publishers = {t: service.publisher(t) for t in (NUDGE_DELIVERED, NUDGE_FAILED)}
    consumer = service.keyed_subscriber(NUDGE_READY, group_id=GROUP_ID)
    # The urgent lane (test nudges, snoozes) is fetched apart from a herd's backlog, in a
    # group of its own so neither one's rebalance pauses the other.
    urgent = service.keyed_subscriber(
        NUDGE_READY_URGENT, group_id=f"{GROUP_ID}.urgent", idle_poll_ms=URGENT_POLL_MS
    )
    publishers[dlq(NUDGE_READY)] = service.publisher(dlq(NUDGE_READY))

    async def publish(event: BaseModel, topic: str, key: str) -> Awaitable[object]:
        # no_confirm: into the producer's batch now, the broker's ack as a future.
        ack: Awaitable[object] = await publishers[topic].publish(
            event, key=key.encode(), no_confirm=True
        )
        return ack

    delivery = Delivery(settings, store, vault, channels, publish)

    @urgent
    @consumer
    async def on_nudge_ready(nudge: NudgeReady, record: Record) -> None:
        """Deliver to every partner (the ledger makes a redelivery a no-op for whoever
        was reached); returns once every outcome is recorded and its receipts are in
        Kafka. Couples run concurrently, one couple's nudges in order; the batch commits
        once all of its records returned (:class:`shared.kafka.KeyedSubscriber`)."""
        await delivery.handle(nudge, partition=record.partition, offset=record.offset)

    async def adopt_legacy_queue() -> None:
        moved = await store.adopt_legacy_queue()
        if moved:
            log.info("moved %d delayed jobs from the pre-cluster delay queue", moved)

    service.on_startup(adopt_legacy_queue)
    notifier = Notifier(service, store, delivery, consumer.subscriber)
    service.loop(notifier.drain, grace=channels.send_timeout + 5)
    service.loop(channels.clients.sweep, grace=1)
    return notifier
