"""Fixtures only the integration tests use (the shared ones are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.kafka import ensure_topics
from tests.support.content_worker import Bus
from tests.support.infra import Infra


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
