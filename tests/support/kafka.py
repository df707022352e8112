"""Reading what services put on Kafka."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.settings import Settings


class TopicReader:
    """Reads a topic from the beginning in its own consumer group, accumulating records."""

    def __init__(self, settings: Settings, *topics: str, **options: Any) -> None:
        """``options`` go to the consumer (``fetch_max_wait_ms=10`` to see records sooner)."""
        self.consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **options,
        )
        self.records: list[dict[str, Any]] = []
        self.keys: list[str | None] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> None:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms)
        for batch in batches.values():
            for record in batch:
                self.records.append(json.loads(record.value))
                self.keys.append(record.key.decode() if record.key else None)

    async def until(self, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``predicate(records)`` holds; fail with what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; got {len(self.records)} records: {self.records[-5:]}"
                )
            await self.poll()
        return self.records

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Keep reading for ``seconds`` (to prove nothing more arrives)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.poll()
            await asyncio.sleep(0)
        return self.records
