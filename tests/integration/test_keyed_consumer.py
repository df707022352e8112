"""The keyed consumer (shared.kafka.KeyedSubscriber) against a real broker and a real Redis.

A service with one keyed handler on ``ritual.due`` (its own consumer group; records are
keyed by couple id, the ordinal is each couple's sequence number) that appends what it
handled to a Redis list per couple, so the order Redis saw is the order asserted.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaProducer
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import topics
from shared.events import RitualDue
from shared.kafka import Poison, Record
from shared.service import Service
from shared.settings import Settings
from tests.support.content import ritual_due
from tests.support.infra import Infra
from tests.support.kafka import TopicReader

Handler = Callable[[RitualDue, Record], Awaitable[None]]


def due(couple: str, n: int) -> RitualDue:
    return ritual_due(
        "hug", title="Hug", couple_id=couple, ordinal=n, occurrence_id=f"{couple}@{n}"
    )


async def produce(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for key, body in records:
            await producer.send(topics.RITUAL_DUE, body, key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()


def interleaved(couples: list[str], per_couple: int) -> list[tuple[str, bytes]]:
    return [(c, due(c, n).model_dump_json().encode()) for n in range(per_couple) for c in couples]


class Harness:
    """Keyed services of one test: a run's group, its couples, what Redis saw."""

    def __init__(self, infra: Infra, **overrides: object) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.settings = infra.settings(**overrides)
        self.group = f"keyed-{self.run}"

    def couple(self, name: str) -> str:
        return f"{name}-{self.run}"

    def ours(self, due: RitualDue) -> bool:
        return due.couple_id.endswith(self.run)  # the topic is shared with other tests

    async def start(self, stack: AsyncExitStack, handler: Handler) -> Service:
        service = Service(f"keyed-{self.run}", self.settings)
        service.policy.max_pause = 0.1
        consumer = service.keyed_subscriber(topics.RITUAL_DUE, group_id=self.group)

        async def handle(event: RitualDue, record: Record) -> None:
            if self.ours(event):
                await handler(event, record)

        consumer(handle)
        return await stack.enter_async_context(service)

    async def seen(self, service: Service, couple: str) -> list[int]:
        return [int(n) for n in await service.redis.lrange(self.key(couple), 0, -1)]  # type: ignore[misc]

    def key(self, couple: str) -> str:
        return f"{self.settings.redis_prefix}:keyed:{couple}"

    async def wait(self, service: Service, expected: dict[str, int], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            counts = {c: len(await self.seen(service, c)) for c in expected}
            if all(counts[c] >= n for c, n in expected.items()):
                return
            assert time.monotonic() < deadline, f"timed out: {counts} of {expected}"
            await asyncio.sleep(0.05)


async def test_each_couple_keeps_its_order_while_couples_overlap(module_infra: Infra) -> None:
    h = Harness(module_infra, consumer_concurrency=8)
    couples = [h.couple(f"c{i}") for i in range(30)]
    running: set[str] = set()
    peak = 0

    async def handler(event: RitualDue, record: Record) -> None:
        nonlocal peak
        assert event.couple_id not in running  # never two records of one couple at once
        running.add(event.couple_id)
        peak = max(peak, len(running))
        await asyncio.sleep(random.random() / 200)
        await service.redis.rpush(h.key(event.couple_id), event.ordinal)  # type: ignore[misc]
        running.discard(event.couple_id)

    await produce(h.settings, interleaved(couples, 6))
    async with AsyncExitStack() as stack:
        service = await h.start(stack, handler)
        await h.wait(service, dict.fromkeys(couples, 6))
        for couple in couples:
            assert await h.seen(service, couple) == list(range(6))
    assert 1 < peak <= 8  # couples overlapped, within TANDEM_CONSUMER_CONCURRENCY


async def test_a_poison_record_is_dead_lettered_while_the_rest_commit(
    module_infra: Infra,
) -> None:
    h = Harness(module_infra)
    good, bad = h.couple("good"), h.couple("bad")

    async def handler(event: RitualDue, record: Record) -> None:
        if event.couple_id == bad and event.ordinal == 1:
            raise Poison("ordinal 1 of the bad couple can never work")
        await service.redis.rpush(h.key(event.couple_id), event.ordinal)  # type: ignore[misc]

    records = interleaved([good, bad], 3)
    records.insert(3, (bad, b'{"not": "a ritual.due"'))  # undecodable, mid-batch
    await produce(h.settings, records)
    async with TopicReader(h.settings, topics.dlq(topics.RITUAL_DUE)) as letters:
        async with AsyncExitStack() as stack:
            service = await h.start(stack, handler)
            await h.wait(service, {good: 3, bad: 2})
            assert await h.seen(service, good) == [0, 1, 2]
            assert await h.seen(service, bad) == [0, 2]  # the rest of its key went on
            mine = await letters.until(
                lambda rs: len([r for r in rs if r["key"] == bad]) >= 2, timeout=30
            )
        reasons = sorted(r["reason"] for r in mine if r["key"] == bad)
        assert reasons[0].startswith("malformed JSON") and reasons[1].startswith("ordinal 1")
        # Everything was committed: a new member of the group gets nothing again.
        async with AsyncExitStack() as stack:
            service = await h.start(stack, handler)
            await asyncio.sleep(3)
            assert await h.seen(service, good) == [0, 1, 2]
            assert await h.seen(service, bad) == [0, 2]


async def test_a_transient_failure_holds_back_its_couple_only_and_loses_nothing(
    module_infra: Infra,
) -> None:
    h = Harness(module_infra)
    flaky, others = h.couple("flaky"), [h.couple(f"o{i}") for i in range(5)]
    failures = [RedisConnectionError("Redis restarting")] * 4
    finished: list[str] = []

    async def handler(event: RitualDue, record: Record) -> None:
        if event.couple_id == flaky and event.ordinal == 0 and failures:
            raise failures.pop()
        await service.redis.rpush(h.key(event.couple_id), event.ordinal)  # type: ignore[misc]
        finished.append(event.couple_id)

    await produce(h.settings, interleaved([flaky, *others], 3))
    async with AsyncExitStack() as stack:
        service = await h.start(stack, handler)
        await h.wait(service, dict.fromkeys([flaky, *others], 3))
        assert await h.seen(service, flaky) == [0, 1, 2]  # retried in place, in order
        for couple in others:
            assert await h.seen(service, couple) == [0, 1, 2]
    assert not failures
    assert finished.index(flaky) > max(finished.index(c) for c in others)  # nobody waited


async def test_a_crash_mid_batch_redelivers_what_was_not_committed(module_infra: Infra) -> None:
    h = Harness(module_infra)
    stuck, others = h.couple("stuck"), [h.couple(f"o{i}") for i in range(5)]
    handled_first: list[tuple[str, int]] = []

    async def hangs(event: RitualDue, record: Record) -> None:
        if event.couple_id == stuck:
            await asyncio.Event().wait()  # the process dies while this record is in hand
        handled_first.append((event.couple_id, event.ordinal))

    async def handler(event: RitualDue, record: Record) -> None:
        await service.redis.rpush(h.key(event.couple_id), event.ordinal)  # type: ignore[misc]

    await produce(h.settings, interleaved([stuck, *others], 3))
    async with AsyncExitStack() as stack:
        await h.start(stack, hangs)
        deadline = time.monotonic() + 60
        while len(handled_first) < 3 * len(others):
            assert time.monotonic() < deadline, f"only {handled_first}"
            await asyncio.sleep(0.05)
    # The first member stopped mid-batch: nothing of that batch was committed, so the
    # next member of the group gets the stuck couple's records, in order, and nothing is lost.
    async with AsyncExitStack() as stack:
        service = await h.start(stack, handler)
        await h.wait(service, {stuck: 3})
        assert await h.seen(service, stuck) == [0, 1, 2]
        again = {(c, n) for c in others for n in await h.seen(service, c)}
        first = set(handled_first)
        assert first | again == {(c, n) for c in others for n in range(3)}
