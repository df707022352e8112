"""Fixtures only the integration tests use (the shared ones are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.kafka import ensure_topics
from tests.support.content_worker import Bus
from tests.support.infra import Infra
from tests.support.scheduler import running_scheduler


@pytest.fixture
async def bus(infra: Infra) -> AsyncIterator[Bus]:
    """A started :class:`~tests.support.content_worker.Bus` on ``infra``'s broker."""
    settings = infra.settings()
    await ensure_topics(settings)
    b = Bus(settings)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture(scope="module")
async def running(module_infra: Infra) -> AsyncIterator[Any]:
    """One in-process scheduler replica and its API client, shared by a module's tests (a
    consumer group's first join costs seconds on the embedded broker: each module pays it
    once); each test makes its own couples."""
    async with running_scheduler(module_infra.settings()) as pair:
        yield pair
