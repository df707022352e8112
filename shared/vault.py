"""What the scheduler (owner of couples) shares with the notifier through Redis: the
encrypted channel URLs and whether a couple is paused (``<prefix>:{<couple id>}:p``, present
while it is). The scheduler writes; the notifier
only reads, at the moment of sending, so a pause or a changed channel takes effect on the
next delivery attempt.

A couple's channels are one value, ``<prefix>:{<couple id>}:v``: the Fernet token of the
compact JSON object channel id -> URL (one token per couple rather than per channel: a
Fernet token carries ~60 bytes of overhead before base64). The key shares the couple's hash
tag, so it sits in the couple's Redis Cluster slot.

The JSON is compressed before it is encrypted (what is encrypted cannot be compressed):
``1`` and its raw deflate with a preset dictionary of the URL pieces channels share, which
saves about two fifths of the token (Fernet encrypts bytes, so nothing is base64-encoded
twice). Tokens written before (up to c44b517) hold the JSON itself, starting with ``{``;
both read the same, and a couple's channels are stored compressed the next time they are
written."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from shared.redis import Keys, StrRedis
from shared.secrets import SecretBox

# Replace a couple's ciphertext only if it is still the one that was read (channels the
# scheduler rewrote meanwhile are left as they are).
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_LAYOUT = b"1"
# Frozen: tokens written with it must stay readable, so changing it needs a new layout mark.
# Pieces of the URLs Apprise users give (schemes, hosts, option names), the commonest last.
_ZDICT = (
    b"twilio://tgram://pover://discord://slack://gotify://signal://pushover://matrix://"
    b"msteams://rocket://https://hooks.slack.com/services/https://discord.com/api/webhooks/"
    b"ntfys://ntfy.sh/?priority=&mode=starttls&mode=insecure&smtp=&user=&pass=&format=text"
    b"mailtos://@gmail.com?to=&from=?token=json://http://localhost:sms://+1"
    b'{"chn_":"'
)


def _pack(urls: dict[str, str]) -> bytes:
    """The plaintext a couple's channels are encrypted as (read back by :func:`_unpack`)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=_ZDICT)
    packed = deflate.compress(json.dumps(urls, separators=(",", ":")).encode())
    return _LAYOUT + packed + deflate.flush()


def _unpack(plain: bytes) -> dict[str, str]:
    """Channel id -> URL from a decrypted value, compressed or (older) plain JSON."""
    if not plain.startswith(_LAYOUT):
        return dict(json.loads(plain))
    inflate = zlib.decompressobj(-15, zdict=_ZDICT)
    return dict(json.loads(inflate.decompress(plain[1:]) + inflate.flush()))


@dataclass
class Rotation:
    """What :meth:`Vault.rotate` did: couples seen, channel URLs re-encrypted, already
    under the current key, and unreadable (no configured key opens them)."""

    couples: int = 0
    rotated: int = 0  # rotated and current count channel URLs; unreadable, couples
    current: int = 0
    unreadable: int = 0


class Vault:
    def __init__(self, redis: StrRedis, keys: Keys, box: SecretBox) -> None:
        self.redis = redis
        self.keys = keys
        self.box = box
        self._swap = redis.register_script(_SWAP)

    def _channels(self, couple_id: str) -> str:
        return self.keys(f"{{{couple_id}}}", "v")

    def _paused(self, couple_id: str) -> str:
        return self.keys(f"{{{couple_id}}}", "p")

    def store_channels(self, pipe: Pipeline, couple_id: str, urls: dict[str, str]) -> None:
        """Queue on ``pipe``: replace the couple's channels (channel id -> plain URL)."""
        key = self._channels(couple_id)
        if urls:
            pipe.set(key, self.box.encrypt(_pack(urls)))
        else:
            pipe.delete(key)

    async def update_channels(self, couple_id: str, put: dict[str, str], drop: list[str]) -> None:
        """Add or replace ``put`` (channel id -> plain URL) and remove ``drop``, leaving the
        couple's other channels as they are: a read-modify-write of the couple's one value,
        WATCHed so a concurrent writer's change is not lost (retried on a conflict)."""
        key = self._channels(couple_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    token = await pipe.get(key)
                    urls = _unpack(self.box.decrypt(str(token))) if token else {}
                    urls.update(put)
                    for channel_id in drop:
                        urls.pop(channel_id, None)
                    pipe.multi()
                    self.store_channels(pipe, couple_id, urls)
                    await pipe.execute()
                    return
                except WatchError:
                    continue

    def set_paused(self, pipe: Pipeline, couple_id: str, paused: bool) -> None:
        if paused:
            pipe.set(self._paused(couple_id), "1")
        else:
            pipe.delete(self._paused(couple_id))

    def forget(self, pipe: Pipeline, couple_id: str) -> None:
        pipe.delete(self._channels(couple_id), self._paused(couple_id))

    async def channel_url(self, couple_id: str, channel_id: str) -> str | None:
        """The plain URL of a channel, or None if the couple or channel is gone."""
        return self.open(await self.redis.get(self._channels(couple_id)), channel_id)

    def read(self, pipe: Pipeline, couple_id: str) -> None:
        """Queue on ``pipe`` (or anything with its ``get``/``exists``) what a delivery reads
        of a couple, in one round trip: its channels, still encrypted (None: the couple is
        gone), then whether it is paused (1 or 0). :meth:`open` decrypts one channel."""
        pipe.get(self._channels(couple_id))
        pipe.exists(self._paused(couple_id))

    def open(self, token: str | None, channel_id: str) -> str | None:
        """The plain URL of ``channel_id`` in a couple's encrypted channels ``token`` (as
        :meth:`read` got it), or None if the couple or the channel is gone."""
        if not token:
            return None
        found: str | None = _unpack(self.box.decrypt(token)).get(channel_id)
        return found

    async def is_paused(self, couple_id: str) -> bool:
        return bool(await self.redis.exists(self._paused(couple_id)))

    async def exists(self, couple_id: str) -> bool:
        return bool(await self.redis.exists(self._channels(couple_id)))

    async def rotate(self) -> Rotation:
        """Re-encrypt every stored channel URL under the box's current key (the old keys
        still decrypt them until then). Idempotent: a URL already under the current key is
        left alone, so a second run re-encrypts nothing."""
        done = Rotation()
        async for key in self.redis.scan_iter(match=self.keys("{*}", "v")):
            token = await self.redis.get(key)
            if not token:
                continue
            done.couples += 1
            if self.box.is_current(token):
                done.current += len(_unpack(self.box.decrypt(token)))
                continue
            try:
                fresh = self.box.rotate(token)
            except ValueError:
                done.unreadable += 1
                continue
            count = len(_unpack(self.box.decrypt(fresh)))
            swapped = await self._swap(keys=[key], args=[token, fresh])
            if swapped:
                done.rotated += count
            else:  # rewritten meanwhile, by the scheduler
                done.current += count
        return done
