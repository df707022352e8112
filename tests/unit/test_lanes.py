"""Keyed lanes (shared.lanes): each key in order, keys at once, the bound, retries."""

from __future__ import annotations

import asyncio
import random

import pytest

from shared.lanes import lanes, run_lanes

Item = tuple[str, int]


def key(item: Item) -> str:
    return item[0]


def test_lanes_group_by_key_in_order_of_first_arrival() -> None:
    items = [("b", 0), ("a", 0), ("b", 1), ("c", 0), ("a", 1), ("b", 2)]
    assert lanes(items, key) == [[("b", 0), ("b", 1), ("b", 2)], [("a", 0), ("a", 1)], [("c", 0)]]
    assert lanes([], key) == []


async def test_each_key_in_order_keys_concurrently_within_the_bound() -> None:
    items = [(f"k{k}", n) for n in range(8) for k in range(12)]
    random.Random(7).shuffle(items)  # keys interleave; each key's own order is kept below
    items.sort(key=lambda i: i[1])
    done: dict[str, list[int]] = {}
    running: set[str] = set()
    peak = 0

    async def attempt(item: Item, failures: int) -> float | None:
        nonlocal peak
        assert item[0] not in running  # never two of one key at once
        running.add(item[0])
        peak = max(peak, len(running))
        await asyncio.sleep(random.random() / 500)
        running.discard(item[0])
        done.setdefault(item[0], []).append(item[1])
        return None

    await run_lanes(items, key, attempt, concurrency=5)
    assert all(seq == list(range(8)) for seq in done.values()) and len(done) == 12
    assert 1 < peak <= 5


async def test_a_retried_item_holds_back_its_own_lane_only() -> None:
    finished: list[Item] = []
    tries: list[int] = []

    async def attempt(item: Item, failures: int) -> float | None:
        if item == ("slow", 0) and failures < 3:
            tries.append(failures)
            return 0.02  # try again after a pause
        finished.append(item)
        return None

    items = [("slow", 0), ("fast", 0), ("slow", 1), ("fast", 1)]
    # One slot: the slow lane's pauses are spent outside it, so the fast lane goes through.
    await run_lanes(items, key, attempt, concurrency=1)
    assert tries == [0, 1, 2]
    assert finished.index(("fast", 1)) < finished.index(("slow", 0))
    assert finished.index(("slow", 0)) < finished.index(("slow", 1))


async def test_an_exception_propagates() -> None:
    async def attempt(item: Item, failures: int) -> float | None:
        if item[0] == "bad":
            raise RuntimeError("boom")
        await asyncio.sleep(0.01)
        return None

    with pytest.raises(ExceptionGroup) as raised:
        await run_lanes([("ok", 0), ("bad", 0)], key, attempt, concurrency=2)
    assert raised.group_contains(RuntimeError)


async def test_the_bound_is_at_least_one() -> None:
    async def attempt(item: Item, failures: int) -> float | None:
        return None

    with pytest.raises(ValueError, match="at least 1"):
        await run_lanes([("a", 0)], key, attempt, concurrency=0)
