"""Redis wiring: one client factory and one key scheme for every service."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.settings import Settings


def make_redis(settings: Settings) -> Redis:
    """An asyncio Redis client (a connection pool) for ``settings.redis_url``; values are str."""
    return Redis.from_url(settings.redis_url, decode_responses=True, health_check_interval=15)


class Keys:
    """Every Redis key Tandem writes, under one prefix so several deployments (or test runs)
    can share a server."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))
