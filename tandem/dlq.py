"""Operator tools for any dead-letter topic: look at what is there, and re-drive it.

Reading never joins a consumer group and never commits, so listing is side-effect free
and can run next to the live consumers. Replaying re-publishes each dead letter's original
payload, with its original key, to the topic it came from: consumers are idempotent per
occurrence (the notifier's ledger skips partners already reached), so replaying a letter
twice, or replaying one whose partner has since been reached, is harmless.

``topic`` may name the dead-letter topic (``nudge.ready.dlq``) or its source
(``nudge.ready``); a name without the ``.dlq`` suffix is taken to mean the latter.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from shared.events import DeadLetter
from shared.kafka import client_kwargs
from shared.settings import Settings
from shared.topics import dlq

_SUFFIX = ".dlq"


@dataclass(frozen=True)
class DeadLetterRecord:
    """A dead letter with where it sits in the dead-letter topic."""

    partition: int
    offset: int
    letter: DeadLetter


def dead_letter_topic(topic: str) -> str:
    return topic if topic.endswith(_SUFFIX) else dlq(topic)


async def read_dead_letters(
    settings: Settings, topic: str, limit: int | None = None
) -> list[DeadLetterRecord]:
    """Every dead letter currently in ``topic``'s dead-letter topic (at most ``limit``),
    oldest first within each partition, ordered by (partition, offset). Records that are
    not DeadLetters are skipped."""
    name = dead_letter_topic(topic)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_kwargs(settings))
    try:
        await consumer.start()
        partitions = consumer.partitions_for_topic(name)
        if partitions is None:
            await consumer.topics()  # refresh metadata once
            partitions = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        out: list[DeadLetterRecord] = []
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    try:
                        letter = DeadLetter.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue
                    out.append(DeadLetterRecord(tp.partition, record.offset, letter))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        out.sort(key=lambda r: (r.partition, r.offset))
        return out[:limit] if limit is not None else out
    finally:
        await consumer.stop()


async def list_dead_letters(settings: Settings, topic: str, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` dead letters of ``topic``, read from the beginning without joining a
    group or committing anything. Use :func:`read_dead_letters` to also get each letter's
    (partition, offset) in the dead-letter topic."""
    return [r.letter for r in await read_dead_letters(settings, topic, limit)]


async def replay(
    settings: Settings,
    topic: str,
    offsets: list[int] | None,
    *,
    partition: int | None = None,
) -> int:
    """Re-publish the original payload of dead letters to their ``source_topic`` with their
    original key; returns how many were re-published.

    ``offsets`` selects letters by their offset in the dead-letter topic (None: all of
    them). With several partitions an offset exists once per partition: pass ``partition``
    to pick one, otherwise every partition's letter at that offset is replayed. Letters are
    not removed (Kafka topics are append-only); replay is safe to repeat.
    """
    records = await read_dead_letters(settings, topic)
    wanted = set(offsets) if offsets is not None else None
    chosen = [
        r
        for r in records
        if (wanted is None or r.offset in wanted)
        and (partition is None or r.partition == partition)
    ]
    if not chosen:
        return 0
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=settings.kafka_idempotence, **client_kwargs(settings)
    )
    await producer.start()
    try:
        for r in chosen:
            letter = r.letter
            await producer.send_and_wait(
                letter.source_topic,
                letter.payload.encode(),
                key=letter.key.encode() if letter.key else None,
                headers=[("content-type", b"application/json")],
            )
    finally:
        await producer.stop()
    return len(chosen)
