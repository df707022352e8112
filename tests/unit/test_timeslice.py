"""A long synchronous loop that calls TimeSlice.share between items lets the other tasks
of its event loop run while it works, and only once its slice is used up."""

from __future__ import annotations

import asyncio
import time

from shared.timeslice import TimeSlice


async def _busy_loop(items: int, item_seconds: float, timeslice: TimeSlice | None) -> None:
    for _ in range(items):
        if timeslice is not None:
            await timeslice.share()
        end = time.monotonic() + item_seconds
        while time.monotonic() < end:  # an item's synchronous work
            pass


async def _other_ran_during(timeslice_seconds: float | None) -> bool:
    ran = asyncio.Event()

    async def other() -> None:
        ran.set()

    task = asyncio.create_task(other())
    timeslice = TimeSlice(timeslice_seconds) if timeslice_seconds is not None else None
    await _busy_loop(20, 0.002, timeslice)
    during = ran.is_set()
    await task
    return during


async def test_another_task_runs_while_a_sliced_loop_works() -> None:
    assert await _other_ran_during(0.005)


async def test_without_slices_it_waits_for_the_whole_loop() -> None:
    assert not await _other_ran_during(None)


async def test_within_its_slice_share_does_not_switch() -> None:
    timeslice = TimeSlice(3600)
    ran = asyncio.Event()

    async def other() -> None:
        ran.set()

    task = asyncio.create_task(other())
    for _ in range(1000):
        await timeslice.share()
    assert not ran.is_set()
    await task
