"""A keyed consumer's batch (shared.kafka.KeyedSubscriber.settle) without a broker: the
policy per record, and a batch whose outputs were not acknowledged handled again."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaTimeoutError
from faststream.kafka import KafkaBroker

from shared import topics
from shared.events import RitualDue
from shared.kafka import ConsumerPolicy, KeyedSubscriber, Poison, Record
from tests.support.content import ritual_due


def record(couple: str, offset: int, value: bytes | None = None) -> ConsumerRecord[Any, Any]:
    body = value or ritual_due("hug", title="Hug", couple_id=couple, ordinal=offset)
    return ConsumerRecord(
        topic=topics.RITUAL_DUE,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=couple.encode(),
        value=body if isinstance(body, bytes) else body.model_dump_json().encode(),
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=[],
    )


class Outputs:
    """Stands in for a declared publisher: the first ``failing`` sends are not acknowledged."""

    def __init__(self, failing: int = 0) -> None:
        self.failing = failing
        self.sent: list[Any] = []

    async def publish(self, event: Any, *, key: bytes, no_confirm: bool = False) -> Any:
        self.sent.append(event)
        if not no_confirm:
            return None
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failing:
            self.failing -= 1
            ack.set_exception(KafkaTimeoutError())
        else:
            ack.set_result(None)
        return ack


def keyed(outputs: Outputs, letters: Outputs) -> tuple[KeyedSubscriber, ConsumerPolicy]:
    policy = ConsumerPolicy("test", max_attempts=2, max_pause=0.01)
    consumer = KeyedSubscriber(KafkaBroker("unused:9092"), policy, topics.RITUAL_DUE, group_id="t")
    policy.dead_letters[topics.RITUAL_DUE] = letters
    return consumer, policy


async def test_unacknowledged_outputs_get_the_handled_records_handled_again_in_order() -> None:
    outputs, letters = Outputs(failing=1), Outputs()
    consumer, _ = keyed(outputs, letters)
    handled: list[tuple[str, int]] = []

    async def handler(due: RitualDue, rec: Record) -> None:
        if due.ordinal == 2:
            raise Poison("never")
        handled.append((due.couple_id, due.ordinal))
        await rec.publish(outputs, due, key=due.couple_id)

    batch = [record("a", 0), record("b", 1), record("a", 2), record("a", 3)]
    await consumer.settle(batch, handler)
    # Round one: three handled, one dead-lettered, one output not acknowledged; round two:
    # the three handled again (the dead-lettered one is settled and stays so).
    assert sorted(handled[:3]) == [("a", 0), ("a", 3), ("b", 1)]
    assert sorted(handled[3:]) == [("a", 0), ("a", 3), ("b", 1)]
    assert [h for h in handled if h[0] == "a"] == [("a", 0), ("a", 3)] * 2  # each time in order
    assert len(letters.sent) == 1 and letters.sent[0].offset == 2


async def test_a_bug_is_tried_max_attempts_times_in_place_then_dead_lettered() -> None:
    outputs, letters = Outputs(), Outputs()
    consumer, policy = keyed(outputs, letters)
    tries = 0

    async def handler(due: RitualDue, rec: Record) -> None:
        nonlocal tries
        tries += 1
        raise ValueError("a bug")

    await consumer.settle([record("a", 0), record("a", 1, b"not json")], handler)
    assert tries == 2  # max_attempts; the undecodable one never reached the handler
    reasons = sorted(letter.reason for letter in letters.sent)
    assert reasons[0].startswith("handler raised 2 times: ValueError: a bug")
    assert reasons[1].startswith("malformed JSON")
    assert not policy._attempts  # settled records are forgotten
