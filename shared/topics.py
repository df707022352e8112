"""Kafka topic names: the one place they are spelled.

Every record is keyed by couple id, so one couple's events stay ordered on one partition.
"""

RITUAL_DUE = "ritual.due"
RITUAL_MISSED = "ritual.missed"
NUDGE_READY = "nudge.ready"
NUDGE_DELIVERED = "nudge.delivered"
NUDGE_FAILED = "nudge.failed"
# The urgent twins: what a person is waiting for right now (a test nudge, a snooze's
# re-fire; ``RitualDue.urgent``) travels apart from the herd, so it never waits behind a
# 21:00 backlog on the same partitions. Same contracts, same consumer groups.
RITUAL_DUE_URGENT = "ritual.due.urgent"
NUDGE_READY_URGENT = "nudge.ready.urgent"
_URGENT = {RITUAL_DUE: RITUAL_DUE_URGENT, NUDGE_READY: NUDGE_READY_URGENT}


def lane(topic: str, *, urgent: bool) -> str:
    """The topic a record of ``topic`` goes out on: its urgent twin when ``urgent``."""
    return _URGENT[topic] if urgent else topic


def dlq(topic: str) -> str:
    """The dead-letter topic of the consumers of ``topic``."""
    return f"{topic}.dlq"


ALL_TOPICS: tuple[str, ...] = (
    RITUAL_DUE,
    RITUAL_DUE_URGENT,
    RITUAL_MISSED,
    NUDGE_READY,
    NUDGE_READY_URGENT,
    NUDGE_DELIVERED,
    NUDGE_FAILED,
    dlq(RITUAL_DUE),
    dlq(RITUAL_DUE_URGENT),
    dlq(NUDGE_READY),
    dlq(NUDGE_READY_URGENT),
    dlq(NUDGE_DELIVERED),
    dlq(NUDGE_FAILED),
)
