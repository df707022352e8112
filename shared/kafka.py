"""Kafka wiring: the broker every service builds, topic creation, and the consumer policy.

Consumers (:class:`KeyedSubscriber`, the one every service uses) are at-least-once: a
record's offset is committed only once every record of its batch is settled (couples are
handled concurrently, each couple's records in order). A record that can never
be handled is not retried forever: it goes to ``<topic>.dlq`` as a
:class:`~shared.events.DeadLetter` with a plain reason, and the offset moves on. That covers
a record that does not decode into its topic's contract (:meth:`ConsumerPolicy.decode_record`: bad
JSON, not an object, wrong fields, an unknown ``schema_version``), one a handler rejects by
raising :class:`Poison` (a deck that does not exist), and one whose handler keeps raising
anything else (a bug, a stored value the code cannot handle): that is retried
``TANDEM_HANDLER_MAX_ATTEMPTS`` times, then dead-lettered with the exception, so one bad
record cannot stall every couple behind it on its partition. Only a *transient* failure
(:data:`TRANSIENT`: Redis, broker or network down, a timeout) is redelivered without limit,
after a growing pause (:func:`shared.backoff.pause`), so an outage slows a consumer down
instead of spinning it or dead-lettering healthy records. :class:`ConsumerPolicy` applies
all of this, once, for every consumer of every service.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import operator
import re
import ssl
import traceback
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any, TypeVar

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind
from prometheus_client import Counter
from pydantic import BaseModel, SkipValidation, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import events, topics
from shared.backoff import pause
from shared.events import SCHEMA_VERSION, DeadLetter
from shared.lanes import run_lanes
from shared.ops import broker_middlewares
from shared.redaction import mask
from shared.settings import Settings
from shared.topics import ALL_TOPICS, dlq

log = logging.getLogger("tandem.kafka")

DEAD_LETTERS = Counter(
    "tandem_dead_letters_total",
    "Records published to a dead-letter topic, by why: undecodable (not the topic's "
    "contract), rejected (Poison), handler_error (kept raising past "
    "TANDEM_HANDLER_MAX_ATTEMPTS), undeliverable (every channel failed every attempt)",
    ["topic", "service", "reason"],
)

TRANSIENT: tuple[type[BaseException], ...] = (
    KafkaError,
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)
"""The failures that say nothing about the record, only about the world around it, so a
later try can succeed and the record is retried without limit (after a pause, never
dead-lettered):

- ``KafkaError`` (aiokafka): the broker is unreachable, electing a leader, or too slow to
  acknowledge a publish -- the handler's output could not be sent, the input is fine.
- ``redis.exceptions.ConnectionError`` / ``TimeoutError`` (and so ``BusyLoadingError``):
  Redis is down, restarting, loading, or slow; the state the handler needs is out of reach.
- ``OSError``: a refused or reset connection, DNS, TLS, a full socket buffer -- the
  network or the host, not the data (``ConnectionError`` and friends are subclasses).
- ``TimeoutError`` (which ``asyncio.TimeoutError`` is, since Python 3.11): something we
  waited on did not answer in time; waiting longer or later may.

Anything else a handler raises (``TypeError``, ``KeyError``, ``ValueError``, a
``ResponseError`` from a command Redis rejects...) is a bug or a value the code cannot
handle, and retrying it cannot help for long: see :meth:`ConsumerPolicy.handle`. Keep this
the ONE list: the consumers and the notifier's delay-queue drain both ask
:func:`is_transient`.
"""


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` is a :data:`TRANSIENT` failure: retry it, without limit."""
    return isinstance(exc, TRANSIENT)


_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://\S+")


def describe(exc: BaseException, *, limit: int = 500) -> str:
    """``Type: message`` of ``exc`` for a dead letter or a log line, with anything that
    looks like a URL cut to its scheme (channel URLs carry tokens) and phone numbers and
    e-mail addresses masked (:func:`shared.redaction.mask`), at most ``limit`` characters."""
    text = mask(_URL.sub(lambda m: f"{m.group(1)}://***", str(exc)))
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def traceback_tail(exc: BaseException, frames: int = 4) -> list[str]:
    """Where ``exc`` was raised: the innermost ``frames`` frames as ``dir/file.py:line in
    function``. Frame locations only -- no source lines, no local values -- so nothing the
    record or the vault held can leak into a dead letter through it."""
    tail = traceback.extract_tb(exc.__traceback__)[-frames:]
    return [f"{'/'.join(PurePath(f.filename).parts[-2:])}:{f.lineno} in {f.name}" for f in tail]


# What each topic carries: the model a record of it decodes into, and the payload its
# publishers and subscribers declare (so the AsyncAPI document names it).
CONTRACTS: dict[str, type[BaseModel]] = {
    topics.RITUAL_DUE: events.RitualDue,
    topics.RITUAL_DUE_URGENT: events.RitualDue,
    topics.RITUAL_MISSED: events.RitualMissed,
    topics.NUDGE_READY: events.NudgeReady,
    topics.NUDGE_READY_URGENT: events.NudgeReady,
    topics.NUDGE_DELIVERED: events.NudgeDelivered,
    topics.NUDGE_FAILED: events.NudgeFailed,
    **{t: DeadLetter for t in ALL_TOPICS if t.endswith(".dlq")},
}


_PUBLISHERS: weakref.WeakKeyDictionary[KafkaBroker, dict[str, Any]] = weakref.WeakKeyDictionary()


def publisher(broker: KafkaBroker, topic: str, *, service: str) -> Any:
    """``broker``'s publisher of ``topic``, declared with its payload model
    (:data:`CONTRACTS`) the first time it is asked for, the same object after that:
    ``await publisher.publish(event, key=...)``. Declared publishers are what FastStream's
    AsyncAPI document lists, so the document names what the code sends."""
    declared = _PUBLISHERS.setdefault(broker, {})
    if topic not in declared:
        declared[topic] = broker.publisher(
            topic, schema=CONTRACTS[topic], title=f"{topic}:{service}"
        )
    return declared[topic]


class Poison(Exception):
    """A record that no retry can fix; it goes to the dead-letter topic."""


def _security(settings: Settings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    use_ssl = protocol.endswith("SSL")
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    sasl = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }[settings.kafka_sasl_mechanism]
    return sasl(
        username=settings.kafka_sasl_username or "",
        password=settings.kafka_sasl_password or "",
        ssl_context=context if use_ssl else None,
        use_ssl=use_ssl,
    )


PRODUCER_BATCH_BYTES = 512 * 1024
"""Most bytes a producer batches per partition (below ``max_request_size``, 1 MiB)."""


def make_broker(settings: Settings, *, service: str) -> KafkaBroker:
    """The FastStream Kafka broker for ``service``, producing with ``acks=all``, with
    Prometheus metrics and (if configured) tracing (:func:`shared.ops.broker_middlewares`)."""
    middlewares: tuple[Any, ...] = broker_middlewares(settings, service=service)
    return KafkaBroker(
        settings.kafka_bootstrap.split(","),
        client_id=f"{settings.kafka_client_id}-{service}",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        # aiokafka keeps one batch per partition in flight; 16 KiB (its default) holds about
        # ten nudges, so a herd's publishes would wait on the broker ten at a time.
        max_batch_size=PRODUCER_BATCH_BYTES,
        security=_security(settings),
        logger=logging.getLogger(f"tandem.{service}.faststream"),
        middlewares=middlewares,
    )


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection arguments (servers, TLS, SASL) for a plain aiokafka client."""
    security = _security(settings)
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap.split(",")}
    if security is not None:
        kwargs["security_protocol"] = settings.kafka_security_protocol
        if security.ssl_context is not None:
            kwargs["ssl_context"] = security.ssl_context
        if settings.kafka_security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = settings.kafka_sasl_username
            kwargs["sasl_plain_password"] = settings.kafka_sasl_password
    return kwargs


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_kwargs(settings))


async def ensure_topics(settings: Settings, topics: tuple[str, ...] = ALL_TOPICS) -> None:
    """Create Tandem's topics with ``topic_partitions`` partitions where they are missing."""
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(t, settings.topic_partitions, settings.topic_replication)
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:  # another process won the race
                pass
    finally:
        await admin.close()


def diagnose(body: bytes, service: str) -> str | None:
    """A plainer reason than a validation dump for a record that does not decode, if any."""
    try:
        raw = json.loads(body)
    except ValueError as exc:  # includes bytes that are not UTF-8
        return f"malformed JSON: {exc}"
    if not isinstance(raw, dict):
        return f"expected a JSON object, got {type(raw).__name__}"
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        return f"unknown schema_version {version!r} ({service} knows {SCHEMA_VERSION})"
    return None


class Undecodable(Poison):
    """A record that is not its topic's contract."""


# How many records' attempt counts a consumer policy remembers at most.
_TRACKED = 10_000


class ConsumerPolicy:
    """Tandem's consumer policy (see the module docstring), applied to each record of a
    :class:`KeyedSubscriber`'s batch (:meth:`attempt`): decoding it into its topic's model
    (:meth:`decode_record`, where a record that is not its topic's contract is told apart,
    with a plain reason), running the handler, and deciding what a failure means.

    Attempts of a handler that raised something not :func:`is_transient` are counted per
    record -- (topic, partition, offset) -- in this process's memory: the
    ``max_attempts``-th failure dead-letters the record and commits it; a success, or
    the dead letter, forgets the count. Memory is enough because the count only has to
    bound a loop: a record redelivered after a restart or a rebalance to another replica
    starts again at 1, which costs at most ``max_attempts`` more tries, never an endless
    stall. At most :data:`_TRACKED` records are remembered (the oldest forgotten first),
    so records left behind by a rebalance cannot grow it without bound.

    The tries happen in place, a pause apart, holding back only that record's key, and the
    batch commits once every record is handled or dead-lettered.

    ``dead_letters`` holds the declared ``<topic>.dlq`` publisher of each consumed topic
    (:meth:`declare`); the letters are published through them, so the AsyncAPI document
    lists exactly what the code sends.
    """

    def __init__(self, service: str, *, max_attempts: int = 3, max_pause: float = 10.0) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts is at least 1")
        self.service = service
        self.max_attempts = max_attempts
        self.max_pause = max_pause
        self.dead_letters: dict[str, Any] = {}
        self._attempts: OrderedDict[tuple[str, int, int], int] = OrderedDict()

    def declare(self, broker: KafkaBroker, topic: str) -> Any:
        """The dead-letter publisher of ``topic``."""
        self.dead_letters[topic] = publisher(broker, dlq(topic), service=self.service)
        return self.dead_letters[topic]

    def decode_record(self, record: ConsumerRecord[Any, Any]) -> BaseModel:
        """A raw record as its topic's model, or :class:`Undecodable` saying plainly what is
        wrong (bad JSON, not an object, wrong fields, an unknown ``schema_version``)."""
        model = CONTRACTS[record.topic]
        try:
            return model.model_validate_json(record.value or b"")
        except ValidationError as exc:
            reason = diagnose(record.value or b"", self.service)
            if reason is None:
                reason = f"{model.__name__} invalid: {exc.errors(include_url=False)}"
            raise Undecodable(reason) from exc

    async def attempt(
        self,
        record: ConsumerRecord[Any, Any],
        run: Callable[[BaseModel], Awaitable[Any]],
        failures: int,
    ) -> float | None:
        """One try of a keyed consumer (:class:`KeyedSubscriber`) at ``record``: decode it and
        ``run`` the handler on the event. ``None`` once the record is settled (handled, or
        dead-lettered), else the pause before the next try; ``failures`` is how many
        tries of this record failed in a row so far (the pause grows with it)."""
        try:
            await run(self.decode_record(record))
        except Exception as exc:
            verdict = self._judge(record, exc)
            if isinstance(verdict, _Retry):
                return self.pause_before_retry(verdict, exc, failures + 1)
            try:
                await self.dead_letter(record, verdict)
            except Exception as failed:
                return self.pause_before_retry(_UNLETTERED, failed, failures + 1)
        self._forget(record)
        return None

    def _forget(self, raw: Any) -> None:
        """The record is settled: its attempts need no counting any more."""
        self._attempts.pop((raw.topic, raw.partition, raw.offset), None)

    def _judge(self, raw: Any, exc: Exception) -> _Retry | _Letter:
        """What the policy does about ``exc`` raised for ``raw``: try again, or dead-letter.
        Counts the attempts of a record whose handler raised something not transient."""
        record = (raw.topic, raw.partition, raw.offset)
        if isinstance(exc, Poison):
            kind = "undecodable" if isinstance(exc, Undecodable) else "rejected"
            return _Letter(kind, str(exc))
        if is_transient(exc):
            return _Retry("transient failure (%s); redelivering in %.1fs")
        attempt = self._attempts[record] = self._attempts.get(record, 0) + 1
        self._attempts.move_to_end(record)
        while len(self._attempts) > _TRACKED:
            self._attempts.popitem(last=False)
        if attempt < self.max_attempts:
            return _Retry(
                f"handler failed (attempt {attempt} of {self.max_attempts}, "
                f"{raw.topic}/{raw.partition}@{raw.offset}): %s; redelivering in %.1fs"
            )
        reason = f"handler raised {attempt} times: {describe(exc)}"
        return _Letter("handler_error", reason, traceback_tail(exc))

    def pause_before_retry(self, retry: _Retry, exc: BaseException, failures: int) -> float:
        """Log ``exc`` and say how long to pause before the next try: longer the more
        tries failed in a row, so neither an outage nor a failing record spins a consumer."""
        delay = pause(failures, cap=self.max_pause)
        log.warning(retry.note, describe(exc), delay, exc_info=exc)
        return delay

    async def dead_letter(self, raw: ConsumerRecord[Any, Any], letter: _Letter) -> None:
        """Publish the raw record ``raw`` to its topic's dead-letter topic, with the
        reason (and, for a handler that kept raising, where it raised); the letter's
        ``kind`` is the metric's ``reason`` label. Raises if the broker did not take it."""
        key = raw.key.decode() if isinstance(raw.key, bytes) else raw.key
        body = raw.value if isinstance(raw.value, bytes) else b""
        dead = DeadLetter(
            source_topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=key,
            payload=body.decode(errors="replace"),
            reason=letter.reason,
            service=self.service,
            errors=list(letter.errors),
        )
        await self.dead_letters[raw.topic].publish(dead, key=raw.key)
        DEAD_LETTERS.labels(dlq(raw.topic), self.service, letter.kind).inc()
        log.log(
            logging.ERROR if letter.kind == "handler_error" else logging.WARNING,
            "dead-lettered record %s/%s@%s: %s",
            raw.topic,
            raw.partition,
            raw.offset,
            letter.reason,
            extra={"topic": raw.topic, "offset": raw.offset, "reason": letter.reason},
        )


@dataclass(frozen=True)
class _Retry:
    """Try the record again after a pause; ``note`` is the log line (exception, pause)."""

    note: str


@dataclass(frozen=True)
class _Letter:
    """Dead-letter the record: the metric's ``kind``, the plain reason, where it raised."""

    kind: str
    reason: str
    errors: tuple[str, ...] | list[str] = ()


_UNLETTERED = _Retry("dead letter not published (%s); redelivering in %.1fs")


M = TypeVar("M", bound=BaseModel)


class Record:
    """What a keyed handler is given beside its event: where the record came from, and
    :meth:`publish` for what the handler produces."""

    __slots__ = ("_sends", "key", "offset", "partition", "topic")

    def __init__(self, raw: ConsumerRecord[Any, Any], sends: list[asyncio.Future[Any]]) -> None:
        self.topic: str = raw.topic
        self.partition: int = raw.partition
        self.offset: int = raw.offset
        self.key: str | None = raw.key.decode() if isinstance(raw.key, bytes) else raw.key
        self._sends = sends

    async def publish(self, publisher: Any, event: BaseModel, *, key: str) -> None:
        """Hand ``event``, keyed ``key``, to the producer through ``publisher`` (one of
        :func:`publisher`) without waiting for the broker's acknowledgement: the batch
        awaits every acknowledgement together, and commits only once all arrived. Events
        with one key reach the broker in the order they were published."""
        ack = await publisher.publish(event, key=key.encode(), no_confirm=True)
        if ack is not None:  # FastStream's TestKafkaBroker delivers at once, returns None
            self._sends.append(ack)


KeyedHandler = Callable[[M, Record], Awaitable[None]]


async def _undecoded(message: Any) -> None:
    """A keyed consumer's decoder: none for the batch; each record is decoded on its own
    (:meth:`ConsumerPolicy.decode_record`), so one bad record cannot fail the others."""
    return None


class KeyedSubscriber:
    """Tandem's consumer: records of different keys (couples) handled concurrently, each
    key's records in order, offsets committed per batch, :class:`ConsumerPolicy` per record.

    How a service registers a handler (``Service.keyed_subscriber`` builds this with the
    service's settings)::

        ready = service.publisher(topics.NUDGE_READY)

        @service.keyed_subscriber(topics.RITUAL_DUE, group_id="content")
        async def on_ritual_due(due: RitualDue, record: Record) -> None:
            nudge = ...                      # raise Poison for a record no retry can fix
            await record.publish(ready, nudge, key=due.couple_id)

    The handler gets the record decoded into its topic's model (:data:`CONTRACTS`) and its
    :class:`Record`; it publishes through :meth:`Record.publish` (no per-record wait for
    the broker). It may run concurrently with itself for other keys, never for one key.
    A consumer of several topics (one group, so one join) gives each record as its own
    topic's model: the handler takes their union and tells them apart.

    Promises, per batch (FastStream's batch subscriber: aiokafka ``getmany``, at most
    ``max_records``, handed over as soon as any record is there -- a lone record is not
    held back to fill a batch; ``batch_timeout_ms`` is only how long an idle poll waits,
    ``fetch_max_wait_ms`` how long the broker may hold a fetch that finds nothing):

    * the records are split by Kafka key into lanes (:func:`shared.lanes.run_lanes`): a
      key's records one after another in offset order, at most ``concurrency`` handler
      calls at once;
    * each record is settled under :meth:`ConsumerPolicy.attempt`: handled, or
      dead-lettered (undecodable, :class:`Poison`, or still failing after
      ``max_attempts`` tries), or retried in place after a pause -- a transient failure
      without limit -- holding back its own key only;
    * the offsets are committed only once every record is settled and every output the
      handlers published is acknowledged; if an acknowledgement fails, the handled
      records are handled again (in order, after a pause) until their outputs are taken.
      A crash before the commit redelivers the whole batch: at-least-once, per record.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        policy: ConsumerPolicy,
        *topics: str,
        group_id: str,
        concurrency: int = 64,
        max_records: int = 500,
        batch_timeout_ms: int = 20,
        fetch_max_wait_ms: int = 20,
        tracer: Any = None,
    ) -> None:
        for topic in topics:
            policy.declare(broker, topic)
        self.policy = policy
        # one model, or the union of the topics' models (a handler tells them apart)
        self.model: Any = functools.reduce(
            operator.or_, dict.fromkeys(CONTRACTS[t] for t in topics)
        )
        self.concurrency = concurrency
        self.tracer = tracer
        self.subscriber: Any = broker.subscriber(
            *topics,
            group_id=group_id,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
            batch=True,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
            decoder=_undecoded,
        )

    def __call__(self, handler: KeyedHandler[M]) -> KeyedHandler[M]:
        """Register ``handler`` (see the class docstring); returns it unchanged."""

        async def consume(payload: Any, message: KafkaMessage) -> None:
            await self.settle(message.raw_message, handler)  # type: ignore[arg-type]

        # What the AsyncAPI document says a record of the topic is (FastStream reads the
        # body parameter's type); the batch itself is never validated as one: each record
        # is decoded on its own in settle(), where a bad one is dead-lettered alone.
        consume.__annotations__["payload"] = Annotated[self.model, SkipValidation]
        consume.__name__ = handler.__name__
        consume.__doc__ = handler.__doc__
        self.subscriber(consume)
        return handler

    async def settle(
        self, records: Sequence[ConsumerRecord[Any, Any]], handler: KeyedHandler[Any]
    ) -> None:
        """Return once every record of the batch is settled and every output acknowledged
        (the class docstring's promises); the caller then commits."""
        pending = list(records)
        failures = 0
        while pending:
            handled, unacked = await self._round(pending, handler)
            if unacked is None:
                return
            failures += 1
            await asyncio.sleep(self.policy.pause_before_retry(_UNACKED, unacked, failures))
            pending = [raw for raw in pending if id(raw) in handled]

    async def _round(
        self, records: list[ConsumerRecord[Any, Any]], handler: KeyedHandler[Any]
    ) -> tuple[set[int], BaseException | None]:
        """Settle ``records`` in lanes, then await their outputs' acknowledgements together.
        Returns the ids of the records the handler handled (not dead-lettered) and the
        first failed acknowledgement, if any."""
        sends: list[asyncio.Future[Any]] = []
        handled: set[int] = set()

        async def attempt(raw: ConsumerRecord[Any, Any], failed: int) -> float | None:
            async def run(event: BaseModel) -> None:
                await handler(event, Record(raw, sends))
                handled.add(id(raw))

            with self._span(raw):
                return await self.policy.attempt(raw, run, failed)

        await run_lanes(records, _key, attempt, concurrency=self.concurrency)
        acks = await asyncio.gather(*sends, return_exceptions=True)
        return handled, next((a for a in acks if isinstance(a, BaseException)), None)

    @contextmanager
    def _span(self, raw: ConsumerRecord[Any, Any]) -> Iterator[None]:
        """With tracing on, a ``<topic> process`` span per record, continuing the trace
        its producer sent in the headers: FastStream's span for a batch starts a trace of
        its own (only linked to the records'), and one couple's nudge should stay one
        trace from the scheduler to the notifier. What the handler publishes is a child."""
        if self.tracer is None:
            yield
            return
        carrier = {k: v.decode(errors="replace") for k, v in raw.headers or ()}
        with self.tracer.start_as_current_span(
            f"{raw.topic} process", context=extract(carrier), kind=SpanKind.CONSUMER
        ):
            yield


def _key(raw: ConsumerRecord[Any, Any]) -> Any:
    """A record's lane: its Kafka key (the couple id); keyless records share one lane."""
    return raw.key


_UNACKED = _Retry("an output was not acknowledged (%s); handling the batch again in %.1fs")
