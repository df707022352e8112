"""Retry timing: exponential backoff with jitter. Pure."""

from __future__ import annotations

import random


def retry_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next.

    The ceiling grows as ``base * 2**(attempt-1)``, capped at ``cap``; the delay is drawn
    uniformly from ``[ceiling/2, ceiling]`` ("equal jitter"). Half the ceiling is a floor
    so a provider that just failed always gets a real pause; the random half spreads the
    retries of a burst (many nudges failing together when a provider blips) so they do not
    all come back in the same instant.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))  # bounded: no float overflow
    r = (rng or random).random()
    return ceiling / 2 + r * ceiling / 2
