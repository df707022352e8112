"""Kafka wiring: the broker every service builds, topic creation, and the consumer policy.

Consumers are at-least-once: a record's offset is committed only after its handler returned
(``AckPolicy.NACK_ON_ERROR``). A record that can never be handled (bad JSON, an unknown
schema version, a reference to nothing) is not retried forever: the handler raises
:class:`Poison`, the record goes to ``<topic>.dlq`` with the reason, and the offset moves on.
Anything else (Redis down, broker hiccup) is transient: the record is redelivered after a
growing pause, so an outage slows a consumer down instead of spinning it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from shared.events import DeadLetter
from shared.ops import broker_middlewares
from shared.settings import Settings
from shared.topics import ALL_TOPICS, dlq

log = logging.getLogger("tandem.kafka")

M = TypeVar("M", bound=BaseModel)

DEAD_LETTERS = Counter(
    "tandem_dead_letters_total", "Records published to a dead-letter topic", ["topic", "service"]
)


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


def make_broker(settings: Settings, *, service: str) -> KafkaBroker:
    """The FastStream Kafka broker for ``service``, producing with ``acks=all``, with
    Prometheus metrics and (if configured) tracing (:func:`shared.ops.broker_middlewares`)."""
    return KafkaBroker(
        settings.kafka_bootstrap.split(","),
        client_id=f"{settings.kafka_client_id}-{service}",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        security=_security(settings),
        logger=logging.getLogger(f"tandem.{service}.faststream"),
        middlewares=broker_middlewares(settings, service=service),
    )


def declare_publishers(
    broker: KafkaBroker, service: str, topics: dict[str, type[BaseModel]]
) -> None:
    """Name in the AsyncAPI docs (``make docs``) each topic ``service`` publishes to, with its
    payload model. Docs only: the services publish with ``broker.publish``."""
    for topic, model in topics.items():
        broker.publisher(topic, schema=model, title=f"{topic}:{service}")


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


def subscriber(broker: KafkaBroker, *topics: str, group_id: str) -> Any:
    """A consumer of ``topics`` with Tandem's policy: offsets committed only after the
    handler returned (at-least-once), and a new group starting from the oldest record, so
    nothing published before its first member joined is skipped."""
    return broker.subscriber(
        *topics,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )


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


def decode(model: type[M], message: KafkaMessage) -> M:
    """Parse a record into ``model``; a record that does not fit is :class:`Poison`."""
    try:
        return model.model_validate_json(message.body)
    except ValidationError as exc:
        raise Poison(f"{model.__name__} invalid: {exc.errors(include_url=False)}") from exc


def message_key(message: KafkaMessage) -> str | None:
    key = message.raw_message.key  # type: ignore[union-attr]
    return key.decode() if isinstance(key, bytes) else key


async def dead_letter(
    broker: KafkaBroker,
    message: KafkaMessage,
    *,
    reason: str,
    service: str,
    errors: list[str] | None = None,
) -> None:
    """Publish ``message`` to its topic's dead-letter topic, with the reason."""
    raw = message.raw_message
    topic = raw.topic  # type: ignore[union-attr]
    letter = DeadLetter(
        source_topic=topic,
        partition=raw.partition,  # type: ignore[union-attr]
        offset=raw.offset,  # type: ignore[union-attr]
        key=message_key(message),
        payload=message.body.decode(errors="replace"),
        reason=reason,
        service=service,
        errors=errors or [],
    )
    await broker.publish(letter, dlq(topic), key=letter.key.encode() if letter.key else None)
    DEAD_LETTERS.labels(dlq(topic), service).inc()
    log.warning(
        "dead-lettered record",
        extra={"topic": topic, "offset": letter.offset, "reason": reason, "service": service},
    )


def guarded(
    broker: KafkaBroker, *, service: str, max_pause: float = 10.0
) -> Callable[
    [Callable[[KafkaMessage], Awaitable[None]]], Callable[[KafkaMessage], Awaitable[None]]
]:
    """Wrap a handler with Tandem's consumer policy (see the module docstring)."""

    def wrap(
        handler: Callable[[KafkaMessage], Awaitable[None]],
    ) -> Callable[[KafkaMessage], Awaitable[None]]:
        failures = 0

        @functools.wraps(handler)
        async def run(message: KafkaMessage) -> None:
            nonlocal failures
            try:
                await handler(message)
            except Poison as exc:
                await dead_letter(broker, message, reason=str(exc), service=service)
            except Exception:
                failures += 1
                pause = min(max_pause, 0.2 * 2**failures)
                log.exception("handler failed; redelivering in %.1fs", pause)
                await asyncio.sleep(pause)
                raise
            else:
                failures = 0

        return run

    return wrap
