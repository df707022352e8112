"""What the scheduler (owner of couples) shares with the notifier through Redis: the
encrypted channel URLs and whether a couple is paused. The scheduler writes; the notifier
only reads, at the moment of sending, so a pause or a changed channel takes effect on the
next delivery attempt."""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from shared.redis import Keys, StrRedis
from shared.secrets import SecretBox


class Vault:
    def __init__(self, redis: StrRedis, keys: Keys, box: SecretBox) -> None:
        self.redis = redis
        self.keys = keys
        self.box = box

    def _channels(self, couple_id: str) -> str:
        return self.keys("vault", couple_id, "channels")

    def _paused(self) -> str:
        return self.keys("vault", "paused")

    def store_channels(self, pipe: Pipeline, couple_id: str, urls: dict[str, str]) -> None:
        """Queue on ``pipe``: replace the couple's channels (channel id -> plain URL)."""
        key = self._channels(couple_id)
        pipe.delete(key)
        if urls:
            pipe.hset(key, mapping={cid: self.box.encrypt(url) for cid, url in urls.items()})

    def set_paused(self, pipe: Pipeline, couple_id: str, paused: bool) -> None:
        if paused:
            pipe.sadd(self._paused(), couple_id)
        else:
            pipe.srem(self._paused(), couple_id)

    def forget(self, pipe: Pipeline, couple_id: str) -> None:
        pipe.delete(self._channels(couple_id))
        pipe.srem(self._paused(), couple_id)

    async def channel_url(self, couple_id: str, channel_id: str) -> str | None:
        """The plain URL of a channel, or None if the couple or channel is gone."""
        token = await self.redis.hget(self._channels(couple_id), channel_id)
        return self.box.decrypt(token) if token else None

    async def is_paused(self, couple_id: str) -> bool:
        return bool(await self.redis.sismember(self._paused(), couple_id))

    async def exists(self, couple_id: str) -> bool:
        return bool(await self.redis.exists(self._channels(couple_id)))
