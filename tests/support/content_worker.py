"""The content worker in process, and a :class:`Bus` that feeds it ``ritual.due`` records
with a plain aiokafka producer and collects what it emits (``nudge.ready`` and
``ritual.due.dlq``) with its own consumer group. The ``bus`` fixture is in
``tests/integration/conftest.py``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.content.decks import load_catalog
from services.content.store import ContentStore
from services.content.worker import build
from shared import topics
from shared.events import DeadLetter, NudgeReady, RitualDue
from shared.redis import Keys, make_redis
from shared.settings import Settings

TIMEOUT = 30.0
CATALOG = load_catalog()


class Bus:
    """A producer for ``ritual.due`` and a consumer of what the worker emits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        servers = settings.kafka_bootstrap.split(",")
        self.producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=False)
        self.consumer = AIOKafkaConsumer(
            topics.NUDGE_READY,
            topics.NUDGE_READY_URGENT,  # a snooze's or a test nudge's
            topics.dlq(topics.RITUAL_DUE),
            bootstrap_servers=servers,
            group_id=f"test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
        )
        self.nudges: list[NudgeReady] = []
        self.dead: list[DeadLetter] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _collect(self) -> None:
        async for record in self.consumer:
            if record.topic in (topics.NUDGE_READY, topics.NUDGE_READY_URGENT):
                self.nudges.append(NudgeReady.model_validate_json(record.value))
            else:
                self.dead.append(DeadLetter.model_validate_json(record.value))

    async def send(
        self, event: RitualDue | bytes, *, key: str = "cpl", partition: int | None = None
    ) -> None:
        value = event if isinstance(event, bytes) else event.model_dump_json().encode()
        if isinstance(event, RitualDue):
            key = event.couple_id
        await self.producer.send_and_wait(
            topics.RITUAL_DUE, value, key=key.encode(), partition=partition
        )

    def of(self, couple: str) -> list[NudgeReady]:
        return [n for n in self.nudges if n.couple_id == couple]

    async def wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}: {len(self.nudges)} nudges, "
                    f"{[d.reason for d in self.dead]} dead letters"
                )
            await asyncio.sleep(0.05)


async def start_workers(stack: AsyncExitStack, settings: Settings, n: int = 1) -> None:
    """``n`` content workers on the shipped decks, stopped when ``stack`` closes."""
    for _ in range(n):
        await stack.enter_async_context(build(settings, catalog=CATALOG))


async def history_used(settings: Settings, couple: str, deck: str) -> frozenset[str]:
    """The prompts of ``deck`` the couple has had, as the content store remembers them."""
    redis = make_redis(settings)
    try:
        store = ContentStore(redis, Keys(settings.redis_prefix))
        return (await store.history(couple, deck)).used
    finally:
        await redis.aclose()
