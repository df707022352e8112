"""Long loops that share their event loop: let what else waits run every few milliseconds.

A herd's batch (2,000 tracks to decode, decide, encode and hand to the producer) is
hundreds of milliseconds of synchronous work on a busy machine. A loop that never awaits
something that suspends holds the event loop all that time, and every other task of the
process -- the API answering a test nudge, a heartbeat -- waits for the whole of it, once
per ``await`` it has to make. Counting items is not enough (an item's cost varies tenfold
with the machine's load); time is.
"""

from __future__ import annotations

import asyncio

# Long enough that the switches cost nothing measurable (one is ~10 us), short enough that a
# request with a dozen awaits in it is not held up by more than a few tens of milliseconds.
SLICE_SECONDS = 0.005


class TimeSlice:
    """Call :meth:`share` between the items of a long loop, inside a running event loop:
    once ``seconds`` have gone by since the loop last got in, it lets it in."""

    def __init__(self, seconds: float = SLICE_SECONDS) -> None:
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._until = self._loop.time() + seconds

    async def share(self) -> None:
        """Let other tasks run if this slice is used up; return at once otherwise."""
        if self._loop.time() >= self._until:
            await asyncio.sleep(0)
            self._until = self._loop.time() + self._seconds
