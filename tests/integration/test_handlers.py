"""Each service's handlers on FastStream's ``TestKafkaBroker``: routing, dead-lettering and
idempotency decisions in milliseconds, against a real redis-server (the broker is FastStream's
in-memory stand-in; the real-broker tests beside this file cover Kafka itself)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.content.compose import compose
from services.content.decks import load_catalog
from services.content.worker import build as build_content
from services.notifier.worker import build as build_notifier
from services.scheduler.service import Scheduler
from shared import topics
from shared.events import NudgeDelivered, NudgeFailed, NudgeReady, QuietHours
from shared.kafka import is_transient, publisher
from shared.settings import Settings
from tandem.embedded import free_port, start_redis
from tandem.inbox import Inbox
from tandem.notifier_harness import Couple, Partner, make_nudge, store_couple
from tests.support.content import ritual_due

SECRET = "x0z4PZk2cOrm9dCcZzZbZxkl7S_JHQq1zcx4Nqo1nsI="


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    redis = start_redis()
    try:
        yield f"redis://127.0.0.1:{redis.port}/0"
    finally:
        redis.stop()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(
        kafka_bootstrap="unused:9092",  # TestKafkaBroker never connects
        redis_url=redis_url,
        redis_prefix=f"t{uuid.uuid4().hex[:8]}",
        admin_token="test-admin-token",
        secret_key=SECRET,
    )


def sent(pub: Any) -> list[dict[str, Any]]:
    """What a declared publisher was asked to send, decoded."""
    return [call.args[0] for call in pub.mock.call_args_list]


# -- content -------------------------------------------------------------------------------
async def test_content_turns_a_ritual_due_into_one_nudge_keyed_by_couple(settings) -> None:
    service = build_content(settings, catalog=load_catalog())
    ready = publisher(service.broker, topics.NUDGE_READY, service="content")
    keys: list[bytes] = []

    @service.broker.subscriber(topics.NUDGE_READY)  # stands in for the notifier
    async def notifier(body: Any, message: KafkaMessage) -> None:
        keys.append(message.raw_message.key)  # type: ignore[union-attr]

    due = ritual_due("weekly_questions", title="Questions")
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(due, topics.RITUAL_DUE, key=due.couple_id.encode())
        [nudge] = sent(ready)
        assert nudge["occurrence_id"] == due.occurrence_id
        assert nudge["couple_id"] == due.couple_id and nudge["prompt"]["deck"]
        assert keys == [due.couple_id.encode()]
        # A redelivered occurrence gets the same prompt.
        await broker.publish(due, topics.RITUAL_DUE, key=due.couple_id.encode())
        first, again = sent(ready)
        assert again["prompt"] == first["prompt"]
    await service.redis.aclose()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"occurrence_id": "x", oops', "malformed JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        ("v2", "unknown schema_version 2 (content knows 1)"),
        (b'{"schema_version": 1, "couple_id": "c"}', "RitualDue invalid"),
        ("no-deck", "unknown deck 'no-such-deck'"),
    ],
)
async def test_content_dead_letters_what_no_retry_can_fix(settings, body, reason) -> None:
    service = build_content(settings, catalog=load_catalog())
    ready = publisher(service.broker, topics.NUDGE_READY, service="content")
    dead = publisher(service.broker, topics.dlq(topics.RITUAL_DUE), service="content")
    if body == "v2":
        record = json.loads(ritual_due("hug", title="Hug").model_dump_json())
        body = json.dumps(record | {"schema_version": 2}).encode()
    elif body == "no-deck":
        body = ritual_due("hug", title="Hug", deck="no-such-deck").model_dump_json().encode()
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(body, topics.RITUAL_DUE, key=b"cpl_bad")
        [letter] = sent(dead)
        assert letter["reason"].startswith(reason)
        assert letter["source_topic"] == topics.RITUAL_DUE and letter["service"] == "content"
        assert letter["key"] == "cpl_bad" and letter["payload"] == body.decode()
        assert sent(ready) == []
    await service.redis.aclose()


async def test_a_transient_failure_is_retried_after_a_pause_not_dead_lettered(
    settings,
) -> None:
    # Redis is down (nothing listens there): no retry can be ruled out, so no dead letter;
    # the record is tried again in place, after a pause, and never settled (not committed).
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    service = build_content(down, catalog=load_catalog())
    service.policy.max_pause = 0.3
    dead = publisher(service.broker, topics.dlq(topics.RITUAL_DUE), service="content")
    due = ritual_due("weekly_questions", title="Questions")
    async with TestKafkaBroker(service.broker) as broker:
        publishing = asyncio.create_task(
            broker.publish(due, topics.RITUAL_DUE, key=due.couple_id.encode())
        )
        await asyncio.sleep(1.5)  # several pauses' worth of tries
        assert not publishing.done()  # still being retried: the batch does not commit
        assert sent(dead) == []
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
    await service.redis.aclose()


# -- notifier ------------------------------------------------------------------------------
async def test_notifier_delivers_once_per_partner_and_publishes_receipts(
    settings, inbox: Inbox
) -> None:
    settings = settings.model_copy(update={"channel_allow": ",".join(inbox.allow)})
    couple = Couple(
        id=f"cpl_{uuid.uuid4().hex[:6]}",
        partners=[
            Partner("sam", [("c_sam", "push", inbox.json_url("sam-h"))]),
            Partner("alex", [("c_alex", "push", inbox.ntfy_url("alex-h"))]),
        ],
    )
    await store_couple(settings, couple)
    notifier = build_notifier(settings)
    delivered = publisher(notifier.service.broker, topics.NUDGE_DELIVERED, service="notifier")
    nudge = make_nudge(couple)
    async with TestKafkaBroker(notifier.service.broker) as broker:
        await broker.publish(nudge, topics.NUDGE_READY, key=couple.id.encode())
        receipts = [NudgeDelivered.model_validate(r) for r in sent(delivered)]
        assert {r.partner_id for r in receipts} == {"sam", "alex"}
        # A redelivered record reaches nobody twice (the ledger); receipts are re-sent as
        # they were (same event ids), in case the first ones were lost.
        await broker.publish(nudge, topics.NUDGE_READY, key=couple.id.encode())
        again = [NudgeDelivered.model_validate(r) for r in sent(delivered)]
        assert {r.event_id for r in again} == {r.event_id for r in receipts}
    assert len(inbox.to("sam-h")) == 1 and len(inbox.to("alex-h")) == 1
    await notifier.service.redis.aclose()


async def test_notifier_dead_letters_a_malformed_nudge(settings) -> None:
    notifier = build_notifier(settings)
    dead = publisher(notifier.service.broker, topics.dlq(topics.NUDGE_READY), service="notifier")
    async with TestKafkaBroker(notifier.service.broker) as broker:
        await broker.publish(b"not json", topics.NUDGE_READY, key=b"cpl_x")
        [letter] = sent(dead)
    assert letter["reason"].startswith("malformed JSON")
    assert letter["source_topic"] == topics.NUDGE_READY and letter["service"] == "notifier"
    await notifier.service.redis.aclose()


# -- scheduler -----------------------------------------------------------------------------
async def test_the_history_consumer_routes_each_topic_to_its_record(settings) -> None:
    scheduler = Scheduler(settings)
    couple = Couple(id="cpl_hist", partners=[Partner("sam", []), Partner("alex", [])])
    nudge = make_nudge(couple)
    now = datetime.now(UTC)
    done = NudgeDelivered(
        occurrence_id=nudge.occurrence_id,
        couple_id=couple.id,
        ritual_id=nudge.ritual_id,
        partner_id="sam",
        channel_id="c_sam",
        channel_kind="push",
        channel="json://***",
        attempt=1,
        scheduled_for=nudge.scheduled_for,
        delivered_at=now,
        latency_ms=5.0,
    )
    failed = NudgeFailed(
        occurrence_id=nudge.occurrence_id,
        couple_id=couple.id,
        ritual_id=nudge.ritual_id,
        partner_id="alex",
        reason="provider down",
        final=False,
    )
    dead = publisher(scheduler.broker, topics.dlq(topics.NUDGE_FAILED), service="scheduler")
    async with TestKafkaBroker(scheduler.broker) as broker:
        await broker.publish(nudge, topics.NUDGE_READY, key=couple.id.encode())
        await broker.publish(done, topics.NUDGE_DELIVERED, key=couple.id.encode())
        await broker.publish(failed, topics.NUDGE_FAILED, key=couple.id.encode())
        await broker.publish(b"{}", topics.NUDGE_FAILED, key=couple.id.encode())
        [letter] = sent(dead)
    assert letter["reason"].startswith("NudgeFailed invalid")
    [entry] = await scheduler.history.recent(couple.id, 10)
    assert entry["occurrence_id"] == nudge.occurrence_id
    assert entry["partners"]["sam"]["status"] == "delivered"
    assert entry["partners"]["alex"]["status"] == "retrying"
    await scheduler.redis.aclose()


# -- bounded redelivery, for every service's consumers -------------------------------------
def _fast(policy: Any) -> None:
    policy.max_pause = 0.3  # the pause between tries is the policy's; keep these tests quick


async def test_a_bug_is_tried_max_attempts_times_then_dead_lettered(settings, monkeypatch) -> None:
    # A handler that raises something not transient (here a bug in composing the nudge)
    # gets TANDEM_HANDLER_MAX_ATTEMPTS tries, a pause apart; the last one dead-letters the
    # record, which settles it (the batch commits).
    tries: list[float] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        tries.append(time.monotonic())
        raise KeyError("prompt 'hug-9' vanished from http://user:hunter2@decks.example/x")

    monkeypatch.setattr("services.content.worker.compose", broken)
    service = build_content(
        settings.model_copy(update={"handler_max_attempts": 3}), catalog=load_catalog()
    )
    _fast(service.policy)
    ready = publisher(service.broker, topics.NUDGE_READY, service="content")
    dead = publisher(service.broker, topics.dlq(topics.RITUAL_DUE), service="content")
    due = ritual_due("weekly_questions", title="Questions")
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(due, topics.RITUAL_DUE, key=due.couple_id.encode())  # settled
        assert len(tries) == 3 and tries[1] > tries[0]
        [letter] = sent(dead)
        assert letter["reason"].startswith("handler raised 3 times: KeyError:")
        assert "vanished" in letter["reason"]
        assert "hunter2" not in letter["reason"]  # URLs are cut to their scheme
        assert letter["errors"] and letter["errors"][-1].endswith("in broken")
        assert letter["source_topic"] == topics.RITUAL_DUE and letter["service"] == "content"
        assert letter["payload"] == due.model_dump_json() and letter["key"] == due.couple_id
        assert sent(ready) == []
        # The count was forgotten with the letter: the redelivered record gets 3 tries again.
        await broker.publish(due, topics.RITUAL_DUE, key=due.couple_id.encode())
        assert len(tries) == 6 and len(sent(dead)) == 2
    await service.redis.aclose()


async def test_a_success_resets_the_count(settings, monkeypatch) -> None:
    failures = [ValueError("flaky bug")] * 2
    real = compose

    def sometimes(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr("services.content.worker.compose", sometimes)
    service = build_content(settings, catalog=load_catalog())
    _fast(service.policy)
    ready = publisher(service.broker, topics.NUDGE_READY, service="content")
    dead = publisher(service.broker, topics.dlq(topics.RITUAL_DUE), service="content")
    due = ritual_due("weekly_questions", title="Questions")
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(due, topics.RITUAL_DUE, key=due.couple_id.encode())  # 3rd try ok
        assert len(sent(ready)) == 1 and not failures
        failures.extend([ValueError("again")] * 2)
        # two more failures: tries 1 and 2 again, not 3 and 4 (which would dead-letter)
        await broker.publish(due, topics.RITUAL_DUE, key=due.couple_id.encode())
        assert len(sent(ready)) == 2 and not failures
        assert sent(dead) == []
    await service.redis.aclose()


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Error 111 connecting to redis:6379"),
        RedisTimeoutError("Timeout reading from socket"),
        KafkaConnectionError("No connection to node"),
        KafkaTimeoutError(),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_transient_failure_is_retried_past_the_limit_never_dead_lettered(
    settings, monkeypatch, error
) -> None:
    failures = [error] * 4  # twice the limit
    real = compose

    def down(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr("services.content.worker.compose", down)
    service = build_content(
        settings.model_copy(update={"handler_max_attempts": 2}), catalog=load_catalog()
    )
    service.policy.max_pause = 0.05
    ready = publisher(service.broker, topics.NUDGE_READY, service="content")
    dead = publisher(service.broker, topics.dlq(topics.RITUAL_DUE), service="content")
    due = ritual_due("weekly_questions", title="Questions")
    async with TestKafkaBroker(service.broker) as broker:
        await broker.publish(due, topics.RITUAL_DUE, key=due.couple_id.encode())
        assert not failures and len(sent(ready)) == 1  # tried until the world came back
        assert sent(dead) == []
    await service.redis.aclose()


def test_the_transient_set() -> None:
    assert all(
        is_transient(e)
        for e in (
            RedisConnectionError(),
            RedisTimeoutError(),
            KafkaConnectionError(),
            OSError(),
            ConnectionRefusedError(),
            TimeoutError(),
            TimeoutError(),
        )
    )
    assert not any(
        is_transient(e)
        for e in (TypeError(), KeyError(), ValueError(), ResponseError("WRONGTYPE"), RuntimeError())
    )


async def test_notifier_dead_letters_a_nudge_its_quiet_hours_maths_cannot_handle(settings) -> None:
    # Quiet hours written with a UTC offset by an older API: comparing them with the
    # partner's naive wall time raises TypeError on every try.
    odd = QuietHours.model_validate({"start": "23:00+05:00", "end": "07:00"})
    couple = Couple(
        id=f"cpl_{uuid.uuid4().hex[:6]}",
        partners=[Partner("sam", [("c_sam", "push", "json://127.0.0.1:9/x")], quiet_hours=odd)],
    )
    await store_couple(settings, couple)
    notifier = build_notifier(settings)
    _fast(notifier.service.policy)
    dead = publisher(notifier.service.broker, topics.dlq(topics.NUDGE_READY), service="notifier")
    nudge = make_nudge(couple)
    async with TestKafkaBroker(notifier.service.broker) as broker:
        # The keyed consumer tries it in place, a pause apart, and the last try dead-letters
        # it (settling the record: the batch commits).
        await broker.publish(nudge, topics.NUDGE_READY, key=couple.id.encode())
        [letter] = sent(dead)
    assert "can't compare offset-naive and offset-aware times" in letter["reason"]
    assert any("quiet_hours.py" in line for line in letter["errors"])
    assert NudgeReady.model_validate_json(letter["payload"]).occurrence_id == nudge.occurrence_id
    await notifier.service.redis.aclose()


async def test_the_history_consumer_dead_letters_a_record_it_keeps_failing_on(
    settings, monkeypatch
) -> None:
    scheduler = Scheduler(settings)
    _fast(scheduler.service.policy)

    tries: list[str] = []

    async def broken(event: Any) -> None:
        tries.append(event.occurrence_id)
        raise AttributeError("'NoneType' object has no attribute 'partners'")

    monkeypatch.setattr(scheduler.history, "record_ready", broken)
    couple = Couple(id="cpl_hist_bug", partners=[Partner("sam", [])])
    nudge = make_nudge(couple)
    dead = publisher(scheduler.broker, topics.dlq(topics.NUDGE_READY), service="scheduler")
    async with TestKafkaBroker(scheduler.broker) as broker:
        # tried in place, a pause apart: the record settles (dead-lettered) in one delivery
        await broker.publish(nudge, topics.NUDGE_READY, key=couple.id.encode())
        [letter] = sent(dead)
    assert len(tries) == settings.handler_max_attempts == 3
    assert letter["reason"].startswith("handler raised 3 times: AttributeError")
    assert letter["service"] == "scheduler"
    await scheduler.redis.aclose()
