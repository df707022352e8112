"""How many sends run at once: per provider host, and overall.

Each send holds one slot of its provider host's limit and then one of the overall limit
(the size of the notifier's send thread pool). A provider that stops answering can fill
its own :data:`PER_HOST` slots -- each held until the send's hard timeout -- but never
the whole pool, so sends to every other provider keep flowing. A send waiting for a slot
of a busy host does not hold an overall slot meanwhile.

Urgent sends (a test nudge, a snooze) have :data:`URGENT` slots of their own, per host and
overall, so they never queue behind a herd's sends to the same provider; a provider sees
at most ``PER_HOST + URGENT`` of one notifier's sends at once. A deployment sets both bounds
(``TANDEM_DELIVERY_PER_HOST``, ``TANDEM_DELIVERY_CONCURRENCY``); the constants below are
their defaults.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from services.notifier import metrics
from shared.settings import Settings

# The deployment's defaults (TANDEM_DELIVERY_PER_HOST, TANDEM_DELIVERY_CONCURRENCY).
PER_HOST: int = Settings.model_fields["delivery_per_host"].default
OVERALL: int = Settings.model_fields["delivery_concurrency"].default
URGENT = 2


class SendLimits:
    """Per-host and overall concurrency bounds for sends (one event loop)."""

    def __init__(self, *, per_host: int = PER_HOST, overall: int = OVERALL) -> None:
        if not 0 < per_host <= overall:
            raise ValueError("need 0 < per_host <= overall")
        self.per_host = per_host
        self.overall = overall
        self._overall = asyncio.Semaphore(overall)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}

    async def acquire(self, host: str) -> Callable[[], None]:
        """Wait for a send slot for ``host`` (its own limit, then the overall one); returns
        the function that gives it back -- call it once, when the send's thread is done
        (which can be after the caller stopped waiting for it)."""
        semaphore = self._hosts.setdefault(host, asyncio.Semaphore(self.per_host))
        self._users[host] = self._users.get(host, 0) + 1
        acquired: list[asyncio.Semaphore] = []
        began = time.monotonic()
        try:
            for needed in (semaphore, self._overall):
                await needed.acquire()
                acquired.append(needed)
        except BaseException:
            self._give_back(host, acquired)
            raise
        finally:  # waits that ended in a timeout count too: they are the longest
            metrics.SLOT_WAIT.observe(time.monotonic() - began)
        metrics.SENDS_IN_FLIGHT.inc()
        return lambda: self._release(host, acquired)

    def _release(self, host: str, acquired: list[asyncio.Semaphore]) -> None:
        metrics.SENDS_IN_FLIGHT.dec()
        self._give_back(host, acquired)

    def _give_back(self, host: str, acquired: list[asyncio.Semaphore]) -> None:
        for held in reversed(acquired):
            held.release()
        # Forget a host nobody is using, so the table stays as small as the set of hosts
        # being sent to right now.
        self._users[host] -= 1
        if not self._users[host]:
            del self._users[host], self._hosts[host]

    def in_use(self, host: str) -> int:
        """Sends to ``host`` holding or waiting for a slot (for tests and metrics)."""
        return self._users.get(host, 0)
