"""Kafka wiring: the broker every service builds, topic creation, and the consumer policy.

Consumers are at-least-once: a record's offset is committed only after its handler returned
(``AckPolicy.NACK_ON_ERROR``). A record that can never be handled is not retried forever:
it goes to ``<topic>.dlq`` as a :class:`~shared.events.DeadLetter` with a plain reason, and
the offset moves on. That covers a record that does not decode into its topic's contract
(:meth:`ConsumerPolicy.decode`: bad JSON, not an object, wrong fields, an unknown
``schema_version``) and one a handler rejects by raising :class:`Poison` (a deck that does
not exist). Anything else (Redis down, broker hiccup) is transient: the record is
redelivered after a growing pause (:func:`shared.backoff.pause`), so an outage slows a
consumer down instead of spinning it. :class:`ConsumerPolicy` applies all of this, once,
for every subscriber of every service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import weakref
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from shared import events, topics
from shared.backoff import pause
from shared.events import SCHEMA_VERSION, DeadLetter
from shared.ops import broker_middlewares
from shared.settings import Settings
from shared.topics import ALL_TOPICS, dlq

log = logging.getLogger("tandem.kafka")

DEAD_LETTERS = Counter(
    "tandem_dead_letters_total", "Records published to a dead-letter topic", ["topic", "service"]
)

# What each topic carries: the model a record of it decodes into, and the payload its
# publishers and subscribers declare (so the AsyncAPI document names it).
CONTRACTS: dict[str, type[BaseModel]] = {
    topics.RITUAL_DUE: events.RitualDue,
    topics.RITUAL_MISSED: events.RitualMissed,
    topics.NUDGE_READY: events.NudgeReady,
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


def make_broker(
    settings: Settings, *, service: str, policy: ConsumerPolicy | None = None
) -> KafkaBroker:
    """The FastStream Kafka broker for ``service``, producing with ``acks=all``, with
    Prometheus metrics and (if configured) tracing (:func:`shared.ops.broker_middlewares`),
    and ``policy`` applied to every record its subscribers consume."""
    middlewares: tuple[Any, ...] = broker_middlewares(settings, service=service)
    if policy is not None:
        # Last, so innermost: metrics and traces see a dead-lettered record as handled.
        middlewares = (*middlewares, policy.middleware)
    return KafkaBroker(
        settings.kafka_bootstrap.split(","),
        client_id=f"{settings.kafka_client_id}-{service}",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
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


class ConsumerPolicy:
    """Tandem's consumer policy (see the module docstring) as one FastStream broker
    middleware, for every subscriber of the broker.

    Two FastStream hooks, one job each. The subscriber's custom *decoder*
    (:meth:`decode`) is where FastStream's docs put turning bytes into the handler's
    argument, so that is where a record that is not its topic's contract is told apart,
    with a plain reason. A broker *middleware* (:class:`BaseMiddleware`, whose
    ``consume_scope`` FastStream documents as the wrapper around each message's
    processing) applies the policy: it runs around every handler call of every subscriber
    of the broker, including the decoding, and inside FastStream's acknowledgement
    middleware, so what it returns is acked and what it raises is nacked and redelivered.
    FastStream's ``ExceptionMiddleware`` maps exception types to handlers and would do for
    the dead-lettering alone, but the transient path needs a per-consumer failure count
    and a pause *before* re-raising, and the letter needs the record's coordinates:
    one ``consume_scope`` says all of it in a few lines, for every service.

    ``dead_letters`` holds the declared ``<topic>.dlq`` publisher of each consumed topic
    (:meth:`declare`); the letters are published through them, so the AsyncAPI document
    lists exactly what the code sends.
    """

    def __init__(self, service: str, *, max_pause: float = 10.0) -> None:
        self.service = service
        self.max_pause = max_pause
        self.dead_letters: dict[str, Any] = {}
        self._failures: dict[Any, int] = {}

    def declare(self, broker: KafkaBroker, topic: str) -> Any:
        """The dead-letter publisher of ``topic``."""
        self.dead_letters[topic] = publisher(broker, dlq(topic), service=self.service)
        return self.dead_letters[topic]

    async def decode(self, message: KafkaMessage) -> Any:
        """FastStream's decoder for Tandem's topics: the record as its topic's model
        (:data:`CONTRACTS`), or :class:`Undecodable` saying plainly what is wrong. The
        handler then receives the model instance (pydantic does not validate it twice)."""
        model = CONTRACTS[message.raw_message.topic]  # type: ignore[union-attr]
        try:
            return model.model_validate_json(message.body)
        except ValidationError as exc:
            reason = diagnose(message.body, self.service)
            if reason is None:
                reason = f"{model.__name__} invalid: {exc.errors(include_url=False)}"
            raise Undecodable(reason) from exc

    def middleware(self, msg: Any, /, *, context: Any) -> BaseMiddleware:
        """FastStream's middleware factory: one :class:`_Policy` per record."""
        return _Policy(msg, context=context, policy=self)

    async def handle(self, call_next: Any, message: KafkaMessage, handler: Any) -> Any:
        """Run the handler on ``message`` under the policy (see the class docstring)."""
        try:
            result = await call_next(message)
        except Poison as exc:
            await self.dead_letter(message, reason=str(exc))
            self._failures.pop(handler, None)
            return None
        except Exception:
            failures = self._failures[handler] = self._failures.get(handler, 0) + 1
            delay = pause(failures, cap=self.max_pause)
            log.exception("handler failed; redelivering in %.1fs", delay)
            await asyncio.sleep(delay)
            raise
        self._failures.pop(handler, None)
        return result

    async def dead_letter(self, message: KafkaMessage, *, reason: str) -> None:
        """Publish ``message`` to its topic's dead-letter topic, with the reason."""
        raw: Any = message.raw_message
        key = raw.key.decode() if isinstance(raw.key, bytes) else raw.key
        letter = DeadLetter(
            source_topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=key,
            payload=message.body.decode(errors="replace"),
            reason=reason,
            service=self.service,
        )
        await self.dead_letters[raw.topic].publish(letter, key=raw.key)
        DEAD_LETTERS.labels(dlq(raw.topic), self.service).inc()
        log.warning(
            "dead-lettered record",
            extra={"topic": raw.topic, "offset": raw.offset, "reason": reason},
        )


class _Policy(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, policy: ConsumerPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        # The failure count is per subscriber, as redeliveries are.
        handler = self.context.get_local("handler_") or msg.raw_message.topic
        return await self.policy.handle(call_next, msg, handler)


def subscriber(broker: KafkaBroker, policy: ConsumerPolicy, *topics: str, group_id: str) -> Any:
    """A consumer of ``topics`` with Tandem's policy: records decoded into their topic's
    contract, offsets committed only after the handler returned (at-least-once), a new
    group starting from the oldest record (nothing published before its first member
    joined is skipped), and each topic's dead-letter publisher declared."""
    for topic in topics:
        policy.declare(broker, topic)
    return broker.subscriber(
        *topics,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        decoder=policy.decode,
    )
