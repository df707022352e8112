"""Coalesced Redis round trips (shared.coalesce) against a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from shared.coalesce import Coalescer
from shared.redis import make_redis
from shared.settings import Settings
from tandem.embedded import free_port
from tests.support.infra import Infra


async def test_concurrent_callers_share_one_pipeline_and_get_their_own_replies(
    module_infra: Infra,
) -> None:
    redis = make_redis(module_infra.settings())
    prefix = f"co{uuid.uuid4().hex[:6]}"
    pipelines = 0
    real = redis.pipeline

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal pipelines
        pipelines += 1
        return real(*args, **kwargs)

    redis.pipeline = counting  # type: ignore[method-assign]
    batch = Coalescer(redis)
    try:
        await redis.set(f"{prefix}:text", "not a number")

        def write_then_read(i: int) -> Any:
            return lambda p: (p.set(f"{prefix}:{i}", i), p.get(f"{prefix}:{i}"))

        replies = await asyncio.gather(
            *(batch.run(write_then_read(i)) for i in range(50)),
            batch.run(lambda p: p.incr(f"{prefix}:text")),  # an error reply: this caller's own
            return_exceptions=True,
        )
        assert pipelines == 1
        assert replies[:50] == [[True, str(i)] for i in range(50)]
        assert isinstance(replies[50], ResponseError)
        assert await batch.run(lambda p: p.get(f"{prefix}:7")) == ["7"]  # a later turn, alone
        assert pipelines == 2
    finally:
        await redis.aclose()


async def test_redis_out_of_reach_reaches_every_caller() -> None:
    redis = make_redis(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    batch = Coalescer(redis)
    try:
        results = await asyncio.gather(
            *(batch.run(lambda p: p.get("k")) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results)
        with pytest.raises(RedisConnectionError):
            await batch.run(lambda p: p.get("k"))
    finally:
        await redis.aclose()
