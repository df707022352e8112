"""The scheduler's Prometheus metrics."""

from prometheus_client import Counter, Histogram

FIRED = Counter(
    "tandem_occurrences_fired_total", "Occurrences published to ritual.due", ["trigger"]
)
MISSED = Counter(
    "tandem_occurrences_missed_total", "Occurrences too old to send, reported as ritual.missed"
)
TAKEN_OVER = Counter(
    "tandem_scheduler_commits_fenced_total",
    "Claimed tracks whose commit was refused because another replica had advanced them",
)
LATENESS = Histogram(
    "tandem_fire_lateness_seconds",
    "From an occurrence's scheduled instant to Kafka acknowledging its ritual.due",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
