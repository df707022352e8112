"""What the scheduler (owner of couples) shares with the notifier through Redis: the
encrypted channel URLs and whether a couple is paused. The scheduler writes; the notifier
only reads, at the moment of sending, so a pause or a changed channel takes effect on the
next delivery attempt.

Both keys of a couple carry the couple's hash tag (``vault:{<couple>}:channels``, a hash
channel id -> ciphertext, and ``vault:{<couple>}:paused``, present while paused), so the
scheduler can write them in the same MULTI/EXEC as its own keys of that couple on a Redis
Cluster (see :mod:`shared.redis`)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio.client import Pipeline

from shared.redis import Keys, StrRedis
from shared.secrets import SecretBox

# Replace one channel's ciphertext only if it is still the one that was read (a channel
# the scheduler rewrote meanwhile is left as it is).
_SWAP = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


@dataclass
class Rotation:
    """What :meth:`Vault.rotate` did: couples seen, channel URLs re-encrypted, already
    under the current key, and unreadable (no configured key opens them)."""

    couples: int = 0
    rotated: int = 0
    current: int = 0
    unreadable: int = 0


class Vault:
    def __init__(self, redis: StrRedis, keys: Keys, box: SecretBox) -> None:
        self.redis = redis
        self.keys = keys
        self.box = box
        self._swap = redis.register_script(_SWAP)

    def _channels(self, couple_id: str) -> str:
        return self.keys("vault", Keys.tag(couple_id), "channels")

    def _paused(self, couple_id: str) -> str:
        return self.keys("vault", Keys.tag(couple_id), "paused")

    def store_channels(self, pipe: Pipeline, couple_id: str, urls: dict[str, str]) -> None:
        """Queue on ``pipe``: replace the couple's channels (channel id -> plain URL)."""
        key = self._channels(couple_id)
        pipe.delete(key)
        if urls:
            pipe.hset(key, mapping={cid: self.box.encrypt(url) for cid, url in urls.items()})

    def put_channel(self, pipe: Pipeline, couple_id: str, channel_id: str, url: str) -> None:
        """Queue on ``pipe``: add or replace one channel (the others stay)."""
        pipe.hset(self._channels(couple_id), channel_id, self.box.encrypt(url))

    def drop_channel(self, pipe: Pipeline, couple_id: str, channel_id: str) -> None:
        """Queue on ``pipe``: remove one channel (the notifier no longer finds it)."""
        pipe.hdel(self._channels(couple_id), channel_id)

    def set_paused(self, pipe: Pipeline, couple_id: str, paused: bool) -> None:
        if paused:
            pipe.set(self._paused(couple_id), "1")
        else:
            pipe.delete(self._paused(couple_id))

    def forget(self, pipe: Pipeline, couple_id: str) -> None:
        pipe.delete(self._channels(couple_id), self._paused(couple_id))

    async def channel_url(self, couple_id: str, channel_id: str) -> str | None:
        """The plain URL of a channel, or None if the couple or channel is gone."""
        token = await self.redis.hget(self._channels(couple_id), channel_id)
        return self.box.decrypt(token) if token else None

    async def is_paused(self, couple_id: str) -> bool:
        return bool(await self.redis.exists(self._paused(couple_id)))

    async def exists(self, couple_id: str) -> bool:
        return bool(await self.redis.exists(self._channels(couple_id)))

    async def swap(self, key: str, field: str, old: str, new: str) -> bool:
        """Set ``field`` of the hash ``key`` to ``new`` only if it still holds ``old`` (a
        value rewritten meanwhile is left as it is); whether it was set."""
        return bool(await self._swap(keys=[key], args=[field, old, new]))

    async def rotate(self) -> Rotation:
        """Re-encrypt every stored channel URL under the box's current key (the old keys
        still decrypt them until then). Idempotent: a URL already under the current key is
        left alone, so a second run re-encrypts nothing."""
        done = Rotation()
        # On a cluster, scan_iter walks every master.
        async for key in self.redis.scan_iter(match=self.keys("vault", "*", "channels")):
            done.couples += 1
            for channel_id, token in (await self.redis.hgetall(key)).items():
                if self.box.is_current(token):
                    done.current += 1
                    continue
                try:
                    fresh = self.box.rotate(token)
                except ValueError:
                    done.unreadable += 1
                    continue
                swapped = await self._swap(keys=[key], args=[channel_id, token, fresh])
                done.rotated += int(swapped)
                done.current += 1 - int(swapped)  # rewritten meanwhile, by the scheduler
        return done
