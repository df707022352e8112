"""Kafka topic names: the one place they are spelled.

Every record is keyed by couple id, so one couple's events stay ordered on one partition.
"""

RITUAL_DUE = "ritual.due"
RITUAL_MISSED = "ritual.missed"
NUDGE_READY = "nudge.ready"
NUDGE_DELIVERED = "nudge.delivered"
NUDGE_FAILED = "nudge.failed"


def dlq(topic: str) -> str:
    """The dead-letter topic of the consumers of ``topic``."""
    return f"{topic}.dlq"


ALL_TOPICS: tuple[str, ...] = (
    RITUAL_DUE,
    RITUAL_MISSED,
    NUDGE_READY,
    NUDGE_DELIVERED,
    NUDGE_FAILED,
    dlq(RITUAL_DUE),
    dlq(NUDGE_READY),
    dlq(NUDGE_DELIVERED),
    dlq(NUDGE_FAILED),
)
