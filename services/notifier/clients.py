"""Loaded Apprise services, reused between sends to the same channel.

Parsing a channel URL into an Apprise service (``Apprise.instantiate``) costs about as much
as the local HTTP request it then makes, so the notifier keeps the loaded service of each
recently used channel. What is kept, and for how long:

- keyed by ``(couple id, channel id)``; each entry holds the service and a keyed digest
  (BLAKE2b under a random per-process key) of the plain URL it was loaded from. The plain
  URL itself is never stored: the caller decrypts it from the vault at each send (so a
  changed channel is seen at once), it is compared by digest, and it is dropped when the
  send returns.
- **a changed channel** (the partner edited it, or rotated a provider token: a different
  URL) does not match the digest: the old service is replaced at once, so its secrets are
  not kept beside the new ones. **A re-encrypted vault** (``tandem rotate-key``) changes
  nothing the digest sees -- same URL, same destination -- so the service is reused.
- bounded (:data:`MAX_ENTRIES`, least recently used dropped first) and short-lived
  (:data:`TTL_SECONDS` after loading, whatever its use): a loaded service necessarily
  holds its URL's secrets in its attributes, and this bounds how long they stay in memory
  after a couple stops receiving nudges (or is deleted). The cache only drops what expired
  when it is written to, so after a herd -- thousands of channels loaded, then a quiet
  hour -- :meth:`ClientCache.sweep` is what keeps the bound: it drops expired entries
  every :data:`SWEEP_SECONDS` while the notifier runs.
- a send carrying per-nudge ntfy buttons is not cached: the buttons are part of the
  loaded service (Apprise's ntfy plugin takes them at load time), so such a service is
  made for that send and dropped after it.

A cached service is shared by concurrent sends to the same channel; its send path only
reads it (the notifier turns Apprise's per-instance throttle off, see ``channels.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import TTLCache

MAX_ENTRIES = 4096
TTL_SECONDS = 60.0
SWEEP_SECONDS = 15.0

ChannelKey = tuple[str, str]  # (couple id, channel id)

Loaded = TypeVar("Loaded")  # what a channel's URL is loaded into (channels.py: a service)


@dataclass(frozen=True)
class _Entry(Generic[Loaded]):
    digest: bytes
    service: Loaded


class ClientCache(Generic[Loaded]):
    """Loaded services by channel, checked against the URL of each send."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, ttl: float = TTL_SECONDS) -> None:
        self._entries: TTLCache[ChannelKey, _Entry[Loaded]] = TTLCache(max_entries, ttl)
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self.loads = 0  # services loaded (cache misses), for tests and the bench

    def _digest(self, url: str) -> bytes:
        return hashlib.blake2b(url.encode(), key=self._key, digest_size=16).digest()

    def get(
        self, channel: ChannelKey | None, url: str, load: Callable[[], Loaded | None]
    ) -> Loaded | None:
        """The service for ``url`` (the plain URL of ``channel`` now): the cached one if it
        was loaded from this same URL within the TTL, else ``load()``'s (cached unless
        ``channel`` is None or it failed to load)."""
        if channel is None:
            self.loads += 1
            return load()
        digest = self._digest(url)
        with self._lock:
            entry = self._entries.get(channel)
        if entry is not None and entry.digest == digest:
            return entry.service
        self.loads += 1
        service = load()
        with self._lock:
            if service is None:
                self._entries.pop(channel, None)
            else:
                self._entries[channel] = _Entry(digest, service)
        return service

    def expire(self) -> int:
        """Drop every entry past its TTL now; returns how many were dropped."""
        with self._lock:
            return len(self._entries.expire())

    async def sweep(self, stop: asyncio.Event, every: float = SWEEP_SECONDS) -> None:
        """:meth:`expire` every ``every`` seconds until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            self.expire()

    def clear(self) -> None:
        """Drop every loaded service (and the secrets it holds)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
