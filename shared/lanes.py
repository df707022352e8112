"""Keyed lanes: work on many items at once while each key's items keep their order.

The pure scheduling under :func:`shared.kafka.keyed_subscriber`, with no Kafka in it: a
batch of records is split into one *lane* per key (the couple id), in arrival order;
lanes run concurrently, a lane's items strictly one after another. That is the order a
Kafka partition promises per key, kept while different couples overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")

Attempt = Callable[[T, int], Awaitable[float | None]]
"""One try at an item, given how many tries of it failed in a row so far: ``None`` when
the item is settled, else how many seconds to wait before trying it again."""


def lanes(items: Iterable[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """``items`` grouped by ``key``: one list per key, each in the items' order, the
    lists in the order their first items came."""
    grouped: dict[Hashable, list[T]] = {}
    for item in items:
        grouped.setdefault(key(item), []).append(item)
    return list(grouped.values())


async def run_lanes(
    items: Iterable[T], key: Callable[[T], Hashable], attempt: Attempt[T], *, concurrency: int
) -> None:
    """Settle every item of ``items`` with ``attempt``; returns once all are settled.

    Promises: items of one key are attempted one at a time, in order, an item only after
    the one before it settled (a retried item holds back its own lane and no other); at
    most ``concurrency`` attempts run at once across lanes; the wait between two tries
    of an item is spent outside that bound, so a lane that is backing off never holds a
    slot another lane could use. An exception ``attempt`` raises (rather than returning a
    pause) cancels the other lanes and propagates, in an ``ExceptionGroup``.
    """
    if concurrency < 1:
        raise ValueError("concurrency is at least 1")
    gate = asyncio.Semaphore(concurrency)

    async def lane(queue: list[T]) -> None:
        for item in queue:
            failures = 0
            while True:
                async with gate:
                    delay = await attempt(item, failures)
                if delay is None:
                    break
                failures += 1
                await asyncio.sleep(delay)

    async with asyncio.TaskGroup() as group:
        for queue in lanes(items, key):
            group.create_task(lane(queue))
