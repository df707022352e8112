"""The notifier's Prometheus metrics, and the partner-skew calculation they record."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from shared.events import NudgeDelivered

DELIVERED = Counter(
    "tandem_nudges_delivered_total", "Nudges delivered to a partner", ["channel_kind"]
)
FAILED = Counter(
    "tandem_nudge_failures_total",
    "Partner deliveries that failed (final: dead-lettered or stopped, e.g. paused)",
    ["final"],
)
FALLBACKS = Counter(
    "tandem_channel_fallbacks_total", "Times a partner's channel failed and the next was tried"
)
HELD = Counter("tandem_nudges_held_total", "Partner deliveries held for quiet hours")
ATTEMPTS = Counter(
    "tandem_delivery_attempts_total",
    "Sends through one channel, by channel kind and outcome (delivered, failed, unknown)",
    ["channel_kind", "outcome"],
)
RETRIES = Counter(
    "tandem_delivery_retries_total", "Partner deliveries put back on the delay queue to retry"
)
LATENCY = Histogram(
    "tandem_nudge_latency_seconds",
    "From scheduled_for to the provider accepting the notification",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 6 * 3600),
)
SKEW = Histogram(
    "tandem_partner_skew_seconds",
    "Between the two partners' deliveries of one together nudge sent in the same round",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)

# Send slots (limits.py): sends waiting long for one mean a provider host's or the process's
# bound is what holds a herd back -- raise TANDEM_DELIVERY_PER_HOST / _CONCURRENCY, or add
# notifier processes.
SLOT_WAIT = Histogram(
    "tandem_send_slot_wait_seconds",
    "How long a send waited for its provider host's slot and an overall one (or gave up)",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
SENDS_IN_FLIGHT = Gauge("tandem_sends_in_flight", "Sends holding a slot right now")


def partner_skew(delivered: Iterable[NudgeDelivered]) -> float | None:
    """Seconds between the first and the last partner's delivery of one occurrence, or
    None with fewer than two deliveries. Works on events from anywhere (a test, an
    analytics consumer): it only needs ``delivered_at``."""
    times = [d.delivered_at for d in delivered]
    if len(times) < 2:
        return None
    return (max(times) - min(times)).total_seconds()
