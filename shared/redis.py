"""Redis wiring: one client factory and one key scheme for every service."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, cast, overload

from redis.asyncio import Redis

from shared.settings import Settings

if TYPE_CHECKING:
    from redis.typing import FieldT, KeyT, ZScoreBoundT

    class StrRedis(Redis):
        """``redis.asyncio.Redis`` as the type checker should see a client made with
        ``decode_responses=True``: the read commands Tandem uses answer ``str``.

        redis-py (8.x) types every reply ``bytes | str`` whatever the client decodes and has
        no generic client type to say which, so without this every read would need a cast.
        The narrower replies are declared once, here; the ``override`` ignores are that
        narrowing (sound only because ``make_redis`` always decodes). The type exists only
        for the checker: at run time ``StrRedis`` *is* ``Redis``, so a parameter typed
        ``Redis`` accepts one. Declare a command here when a store starts reading its reply.
        """

        async def get(self, name: KeyT) -> str | None: ...
        async def mget(  # type: ignore[override]
            self, keys: KeyT | Iterable[KeyT], *args: KeyT
        ) -> list[str | None]: ...
        async def hget(self, name: KeyT, key: FieldT) -> str | None: ...
        async def hgetall(self, name: KeyT) -> dict[str, str]: ...  # type: ignore[override]
        async def hmget(  # type: ignore[override]
            self, name: KeyT, keys: FieldT | Iterable[FieldT], *args: FieldT
        ) -> list[str | None]: ...
        async def smembers(self, name: KeyT) -> set[str]: ...  # type: ignore[override]
        async def zrevrange(  # type: ignore[override]
            self, name: KeyT, start: int, end: int
        ) -> list[str]: ...
        async def zrangebyscore(  # type: ignore[override]
            self, name: KeyT, min: ZScoreBoundT, max: ZScoreBoundT
        ) -> list[str]: ...
        @overload  # type: ignore[override]
        async def zrange(
            self, name: KeyT, start: int, end: int, withscores: Literal[False] = False
        ) -> list[str]: ...
        @overload
        async def zrange(
            self, name: KeyT, start: int, end: int, withscores: Literal[True]
        ) -> list[tuple[str, float]]: ...
        async def zrange(
            self, name: KeyT, start: int, end: int, withscores: bool = False
        ) -> list[str] | list[tuple[str, float]]: ...

else:
    StrRedis = Redis


def make_redis(settings: Settings) -> StrRedis:
    """An asyncio Redis client (a connection pool) for ``settings.redis_url``; values are str."""
    client = Redis.from_url(settings.redis_url, decode_responses=True, health_check_interval=15)
    return cast(StrRedis, client)  # decode_responses=True is what makes it one


class Keys:
    """Every Redis key Tandem writes, under one prefix so several deployments (or test runs)
    can share a server."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))
