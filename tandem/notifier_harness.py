"""Drive a notifier by hand, without a scheduler or a content service: build couples and
``nudge.ready`` events, write the couple's channels to the vault, publish, run a notifier in
this event loop and collect what it publishes.

The notifier's tests and ``bench/notifier_bench.py`` both use this, and a benchmark must not
import test code, so it lives here, beside the other developer tooling of the ``tandem``
package (the embedded broker and Redis, the inbox sinks, the dev runner), rather than under
``tests/``. The services never import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from services.notifier.worker import Notifier, build
from shared.events import (
    ChannelRef,
    DeadLetter,
    Message,
    NudgeDelivered,
    NudgeFailed,
    NudgeReady,
    PartnerInfo,
    Prompt,
    QuietHours,
    Recipient,
)
from shared.ids import new_id
from shared.kafka import ensure_topics, make_broker
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.topics import NUDGE_DELIVERED, NUDGE_FAILED, NUDGE_READY, dlq, lane
from shared.vault import Vault


@dataclass
class Partner:
    id: str
    # (channel id, kind, plain URL), in the partner's order of preference
    channels: list[tuple[str, Literal["push", "sms", "email"], str]]
    timezone: str = "UTC"
    quiet_hours: QuietHours | None = None
    name: str = "Sam"

    def recipient(self) -> Recipient:
        return Recipient(
            id=self.id,
            name=self.name,
            timezone=self.timezone,
            quiet_hours=self.quiet_hours,
            channels=[
                ChannelRef(id=cid, kind=kind, redacted=f"{kind}://***/{cid}")
                for cid, kind, _ in self.channels
            ],
        )


@dataclass
class Couple:
    id: str
    partners: list[Partner]


async def store_couple(settings: Settings, couple: Couple) -> None:
    """Write the couple's channel URLs to the vault, as the scheduler would."""
    redis = make_redis(settings)
    try:
        vault = Vault(redis, Keys(settings.redis_prefix), SecretBox(settings.secret_key or ""))
        async with redis.pipeline(transaction=True) as pipe:
            vault.store_channels(
                pipe, couple.id, {cid: url for p in couple.partners for cid, _, url in p.channels}
            )
            await pipe.execute()
    finally:
        await redis.aclose()


async def set_paused(settings: Settings, couple_id: str, paused: bool) -> None:
    redis = make_redis(settings)
    try:
        vault = Vault(redis, Keys(settings.redis_prefix), SecretBox(settings.secret_key or ""))
        async with redis.pipeline(transaction=True) as pipe:
            vault.set_paused(pipe, couple_id, paused)
            await pipe.execute()
    finally:
        await redis.aclose()


def make_nudge(
    couple: Couple,
    *,
    delivery: Literal["together", "local"] = "together",
    policy: Literal["hold_both", "per_partner"] = "hold_both",
    scheduled_for: datetime | None = None,
    occurrence_id: str | None = None,
    text: str | None = None,
) -> NudgeReady:
    when = scheduled_for or datetime.now(UTC)
    occurrence = occurrence_id or f"{new_id('rit')}@{when:%Y%m%dT%H%M%S%fZ}"
    body = text or f"Hug time ({occurrence})"
    return NudgeReady(
        occurrence_id=occurrence,
        couple_id=couple.id,
        couple_name="Sam & Alex",
        ritual_id="rit_test",
        kind="hug",
        title="Hug",
        delivery=delivery,
        scheduled_for=when,
        wall_time=when.replace(tzinfo=None),
        ordinal=0,
        partners=[PartnerInfo(id=p.id, name=p.name, timezone=p.timezone) for p in couple.partners],
        recipients=[p.recipient() for p in couple.partners],
        quiet_hours_policy=policy,
        prompt=Prompt(deck="hugs", prompt_id="hug-1", text="Hug for 20 seconds"),
        messages=[
            Message(partner_id=p.id, title="Hug", body=body, long_body=body + " (long)")
            for p in couple.partners
        ],
    )


async def publish_nudges(settings: Settings, *nudges: NudgeReady) -> None:
    broker = make_broker(settings, service="test")
    await broker.connect()
    try:
        for nudge in nudges:
            topic = lane(NUDGE_READY, urgent=nudge.urgent)  # as content publishes it
            await broker.publish(nudge, topic, key=nudge.couple_id.encode())
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def running_notifier(settings: Settings) -> AsyncIterator[Notifier]:
    """A notifier (consumer + drain task) running in this event loop."""
    await ensure_topics(settings)
    notifier = build(settings)
    async with notifier.service:
        await notifier.wait_assigned()
        yield notifier


@dataclass
class Outcomes:
    """Everything the notifier publishes, collected as it arrives."""

    delivered: list[NudgeDelivered] = field(default_factory=list)
    failed: list[NudgeFailed] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    async def wait_for(self, predicate: Callable[[Outcomes], bool], within: float = 45) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not predicate(self):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"outcome condition not met: {self!r}")
            await asyncio.sleep(0.05)

    def delivered_to(self, partner_id: str) -> list[NudgeDelivered]:
        return [d for d in self.delivered if d.partner_id == partner_id]


_MODELS: dict[str, type[BaseModel]] = {
    NUDGE_DELIVERED: NudgeDelivered,
    NUDGE_FAILED: NudgeFailed,
    dlq(NUDGE_READY): DeadLetter,
}


@contextlib.asynccontextmanager
async def watching(settings: Settings) -> AsyncIterator[Outcomes]:
    """Collect nudge.delivered / nudge.failed / nudge.ready.dlq from the beginning."""
    await ensure_topics(settings)
    outcomes = Outcomes()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    tps = [
        TopicPartition(t, p)
        for t in _MODELS
        for p in sorted(consumer.partitions_for_topic(t) or await _partitions(consumer, t))
    ]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)

    async def pump() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                model = _MODELS[tp.topic]
                for r in records:
                    event = model.model_validate_json(r.value or b"")
                    if isinstance(event, NudgeDelivered):
                        outcomes.delivered.append(event)
                    elif isinstance(event, NudgeFailed):
                        outcomes.failed.append(event)
                    elif isinstance(event, DeadLetter):
                        outcomes.dead.append(event)

    task = asyncio.create_task(pump())
    try:
        yield outcomes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()
    return consumer.partitions_for_topic(topic) or set()


class HttpSink:
    """A fast HTTP/1.1 provider stand-in on 127.0.0.1 (its own thread and event loop):
    answers every request 200 after ``delay`` seconds (``None``: never -- a provider that
    hangs), keeps connections alive, and counts what it saw -- requests, the TCP
    connections they came on (so keep-alive reuse is observable), and the most requests
    it had in flight at once."""

    def __init__(self, *, delay: float | None = 0.0) -> None:
        self.delay = delay
        self.port = 0
        self.connections = 0
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.paths: list[str] = []
        self.titles: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-sink", daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def start(self) -> HttpSink:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the server and every connection (a hanging answer included), then the loop."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def json_url(self, address: str) -> str:
        return f"json://127.0.0.1:{self.port}/{address}"

    def ntfy_url(self, topic: str) -> str:
        return f"ntfy://127.0.0.1:{self.port}/{topic}"

    @property
    def allow(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "connections": self.connections,
            "max_in_flight": self.max_in_flight,
        }

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = dict(
                    (name.strip().lower(), value.strip())
                    for name, _, value in (line.partition(":") for line in head[1:])
                )
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                self.requests += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    await self._answer(head[0], body, writer)
                finally:
                    self.in_flight -= 1
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _answer(self, request_line: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        if self.delay is None:
            await asyncio.Event().wait()  # hang until the client gives up
        elif self.delay:
            await asyncio.sleep(self.delay)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        path = request_line.split(" ")[1] if " " in request_line else ""
        topic = payload.get("topic") if isinstance(payload, dict) else None
        self.paths.append(str(topic) if topic else path.lstrip("/"))
        self.titles.append(str(payload.get("title", "")) if isinstance(payload, dict) else "")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    def wait_for(self, count: int, within: float = 30.0) -> None:
        """Block until ``count`` requests were answered (TimeoutError after ``within``)."""
        deadline = time.monotonic() + within
        while len(self.paths) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink saw {len(self.paths)} of {count} requests")
            time.sleep(0.02)
