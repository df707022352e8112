"""Coalesced Redis round trips: what concurrent callers ask within one event-loop turn goes
to Redis as one pipeline.

A keyed consumer (:class:`shared.kafka.KeyedSubscriber`) handles a batch's couples at once;
each handler asking Redis on its own would cost a round trip per record. A
:class:`Coalescer` queues each caller's commands and sends everything queued by the end
of the current loop turn as one non-transactional pipeline, then hands each caller its
own replies: the per-record code stays per record, the Redis work is batched.

Cluster-safe as long as each caller's commands are (a non-transactional pipeline is split
by slot by a cluster client; a script's keys must share one hash tag, as Tandem's do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shared.redis import StrRedis

Commands = Callable[[Any], object]
"""Queues one caller's commands on the pipeline it is given (``pipe.get(key)``,
``pipe.eval(...)``: plain commands, not ``Script`` objects, which want the pipeline itself)."""


class _Counting:
    """A pipeline as one caller sees it: every command it queues is counted, so its replies
    can be told from the next caller's. (``len(pipe)`` would do on a plain pipeline, but
    redis-py 8's asyncio ``ClusterPipeline`` keeps no command stack to count.)"""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe
        self.queued = 0

    def __getattr__(self, name: str) -> Any:
        command = getattr(self._pipe, name)

        def queue(*args: Any, **kwargs: Any) -> _Counting:
            command(*args, **kwargs)
            self.queued += 1
            return self

        return queue


class Coalescer:
    """Batches concurrent callers' Redis commands into one pipeline per loop turn."""

    def __init__(self, redis: StrRedis) -> None:
        self.redis = redis
        self._queued: list[tuple[Commands, asyncio.Future[list[Any]]]] = []
        self._sending: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly

    async def run(self, commands: Commands) -> list[Any]:
        """The replies to what ``commands`` queues, in order, once the pipeline they went
        out in came back. Raises what Redis raised for one of them (a reply that is an
        error), or for the whole pipeline (Redis out of reach: every caller gets it)."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queued.append((commands, future))
        if len(self._queued) == 1:
            # Everyone who queues during this turn of the loop rides along.
            asyncio.get_running_loop().call_soon(self._send)
        replies = await future
        error = next((r for r in replies if isinstance(r, Exception)), None)
        if error is not None:
            raise error
        return replies

    def _send(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _execute(self, batch: list[tuple[Commands, asyncio.Future[list[Any]]]]) -> None:
        sizes = []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for commands, _ in batch:
                    counting = _Counting(pipe)
                    commands(counting)
                    sizes.append(counting.queued)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the pipeline as a whole: every caller learns of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for (_, future), size in zip(batch, sizes, strict=True):
            if not future.done():  # a cancelled caller no longer waits
                future.set_result(list(replies[start : start + size]))
            start += size
