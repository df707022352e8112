"""Retry timing, one policy for every retry in Tandem: exponential backoff with jitter. Pure.

Used by the notifier's delivery schedule (``delivery_backoff_*``), the consumer policy
(a transient handler failure, :mod:`shared.kafka`), the scheduler's firing and publishing
loops and the notifier's delay-queue drain (:func:`pause`).
"""

from __future__ import annotations

import random

# The loops' first pause after a failure is 0.2-0.4 s, doubling per consecutive failure.
LOOP_BASE_SECONDS = 0.4


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


def pause(failures: int, *, cap: float) -> float:
    """How long a loop or consumer waits after ``failures`` (>= 1) failures in a row: never
    zero (an outage must not spin a loop), at most ``cap``, jittered so replicas that failed
    together (Redis went away under all of them) do not retry in lockstep."""
    return retry_delay(failures, base=LOOP_BASE_SECONDS, cap=cap)
