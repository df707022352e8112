"""What operators look at: Prometheus metrics, health endpoints and tracing, for every service.

Promises:

* :func:`broker_middlewares` gives every broker FastStream's Kafka Prometheus middleware
  (``faststream_*`` metrics per handler and topic) and, only when ``TANDEM_OTLP_ENDPOINT``
  is set, its OpenTelemetry middleware: the trace context travels in Kafka headers, so one
  occurrence is one trace from the scheduler through content to the notifier.
* :class:`OpsServer` serves ``/healthz`` (the process is alive), ``/readyz`` (200 only when
  the given check says ready, 503 with the report otherwise) and ``/metrics`` on
  ``TANDEM_OPS_HOST:TANDEM_OPS_PORT``, in the service's own event loop. It never raises
  into the service: a failing check is a 503, not a crash.
* ``tandem_consumer_lag`` is refreshed on every scrape (:func:`refresh_lag`), so it is as
  fresh as Prometheus asks and costs nothing when nobody looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from functools import lru_cache
from typing import Any

import uvicorn
from aiokafka import TopicPartition
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from shared.settings import Settings
from shared.topics import dlq

log = logging.getLogger("tandem.ops")

CONSUMER_LAG = Gauge(
    "tandem_consumer_lag",
    "Records on this replica's assigned partitions not yet committed by its consumer group "
    "(sum over replicas for the group's lag)",
    ["group", "topic"],
)

Readiness = Callable[[], Awaitable[dict[str, Any]]]


DLQ_DEPTH = Gauge(
    "tandem_dlq_depth",
    "Dead letters held in a dead-letter topic (within Kafka's retention)",
    ["topic"],
)


# -- tracing ------------------------------------------------------------------------------
@lru_cache
def tracer_provider(endpoint: str, service: str) -> Any:
    """One OTLP/HTTP-exporting tracer provider per process and service (cached: a broker
    built twice must not export twice). Spans are batched; ``OTEL_BSP_SCHEDULE_DELAY``
    (ms) sets how often a batch leaves, and the provider flushes at process exit."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": f"tandem-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    return provider


def broker_middlewares(settings: Settings, *, service: str) -> tuple[Any, ...]:
    """The middlewares :func:`shared.kafka.make_broker` installs (see the module docstring)."""
    middlewares: list[Any] = [
        # The default registry: one /metrics shows FastStream's and Tandem's metrics.
        KafkaPrometheusMiddleware(registry=REGISTRY, app_name=f"tandem-{service}")
    ]
    if settings.otlp_endpoint:
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

        provider = tracer_provider(settings.otlp_endpoint, service)
        middlewares.append(KafkaTelemetryMiddleware(tracer_provider=provider))
    return tuple(middlewares)


# -- consumers ----------------------------------------------------------------------------
def assigned_partitions(subscriber: Any) -> int:
    """How many partitions the subscriber's consumer owns now (0 before it started)."""
    consumer = getattr(subscriber, "consumer", None)
    return len(consumer.assignment()) if consumer is not None else 0


async def refresh_lag(subscribers: Iterable[Any]) -> None:
    """Set ``tandem_consumer_lag`` for each subscriber's group and topics: end offset minus
    committed offset (minus the earliest offset where the group committed nothing yet)."""
    for subscriber in subscribers:
        consumer = getattr(subscriber, "consumer", None)
        if consumer is None:
            continue
        lag = dict.fromkeys(consumer.subscription(), 0)
        partitions = list(consumer.assignment())
        if partitions:
            ends = await consumer.end_offsets(partitions)
            committed = {tp: await consumer.committed(tp) for tp in partitions}
            fresh = [tp for tp, offset in committed.items() if offset is None]
            starts = await consumer.beginning_offsets(fresh) if fresh else {}
            for tp in partitions:
                done = committed[tp] if committed[tp] is not None else starts[tp]
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends[tp] - done)
        for topic, value in lag.items():
            CONSUMER_LAG.labels(subscriber.group_id, topic).set(value)


async def refresh_dlq_depth(subscribers: Iterable[Any]) -> None:
    """Set ``tandem_dlq_depth`` for the dead-letter topic of each topic a subscriber reads:
    the letters Kafka holds there (within its retention). Replaying does not remove them,
    so alert on growth (or on ``tandem_dead_letters_total``), not on the level."""
    for subscriber in subscribers:
        consumer = getattr(subscriber, "consumer", None)
        if consumer is None:
            continue
        # The consumer's own metadata covers only what it subscribes to; ask for all of it.
        cluster = await consumer._client.fetch_all_metadata()
        for topic in consumer.subscription():
            name = dlq(topic)
            partitions = [TopicPartition(name, p) for p in cluster.partitions_for_topic(name) or ()]
            if not partitions:
                continue
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            DLQ_DEPTH.labels(name).set(sum(ends[tp] - starts[tp] for tp in partitions))


async def render_metrics(subscribers: Iterable[Any] = ()) -> bytes:
    """The Prometheus exposition of the default registry, consumer lag refreshed first
    (bounded: a slow broker makes the lag stale, never the scrape fail)."""
    subscribers = list(subscribers)
    try:
        await asyncio.wait_for(refresh_lag(subscribers), timeout=3)
        await asyncio.wait_for(refresh_dlq_depth(subscribers), timeout=3)
    except Exception as exc:
        log.debug("consumer lag / dead-letter depth not refreshed: %r", exc)
    return generate_latest(REGISTRY)


async def consumer_report(subscribers: Iterable[Any]) -> dict[str, Any]:
    """Readiness of consumers: each must own at least one partition."""
    assigned = {s.group_id: assigned_partitions(s) for s in subscribers}
    return {"assigned_partitions": assigned, "ok": all(assigned.values())}


# -- the ops server -----------------------------------------------------------------------
class OpsServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` over a tiny ASGI app (no framework),
    served by uvicorn as a task of the running loop. ``start``/``stop`` are idempotent."""

    def __init__(
        self, settings: Settings, *, readiness: Readiness, subscribers: Iterable[Any] = ()
    ) -> None:
        self.host = settings.ops_host
        self.port = settings.ops_port or 0
        self.readiness = readiness
        self.subscribers = list(subscribers)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status, content_type, body = await self._answer(scope["path"])
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "application/json", b'{"status": "ok"}'
        if path == "/readyz":
            try:
                report = await self.readiness()
            except Exception as exc:  # readiness reports, it does not raise
                report = {"ready": False, "error": repr(exc)}
            code = 200 if report.get("ready") else 503
            return code, "application/json", json.dumps(report, default=str).encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await render_metrics(self.subscribers)
        return 404, "text/plain", b"not found"

    async def start(self) -> None:
        if self._task is not None:
            return
        config = uvicorn.Config(
            self,
            host=self.host,
            port=self.port,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self._server = server = _Server(config)
        self._task = asyncio.create_task(self._serve(server), name="ops-server")
        # uvicorn says it listens only through this flag.
        while not server.started and not self._task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task = None
            return
        log.info("ops endpoints on http://%s:%s (/healthz /readyz /metrics)", self.host, self.port)

    async def _serve(self, server: _Server) -> None:
        try:
            await server.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot bind (the port is taken); the
            # service is more use running without its ops endpoints than not at all.
            log.error("ops server could not listen on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
        self._task = None


class _Server(uvicorn.Server):
    """The service handles SIGINT/SIGTERM itself (FastStream or the scheduler); uvicorn
    must not install its own handlers or re-raise the signal after shutting down."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def attach(
    app: Any, settings: Settings, *, readiness: Readiness, subscribers: Iterable[Any]
) -> OpsServer | None:
    """Serve the ops endpoints for a FastStream ``app`` while it runs, if ``ops_port`` is
    set; started after the broker (so readiness can be true) and stopped before it."""
    if not settings.ops_port:
        return None
    server = OpsServer(settings, readiness=readiness, subscribers=subscribers)
    app.after_startup(server.start)
    app.on_shutdown(server.stop)
    return server


async def kafka_redis_readiness(
    broker: Any, redis: Any, subscribers: Iterable[Any], *, service: str
) -> dict[str, Any]:
    """The readiness report of a consumer service: broker reachable, Redis answering,
    every consumer owning partitions."""
    report: dict[str, Any] = {"service": service}
    try:
        await asyncio.wait_for(redis.ping(), timeout=2)
        report["redis"] = {"ok": True}
    except Exception as exc:
        report["redis"] = {"ok": False, "error": repr(exc)}
    report["kafka"] = {"ok": bool(await broker.ping(timeout=2))}
    report["consumers"] = await consumer_report(subscribers)
    report["ready"] = all(report[k]["ok"] for k in ("redis", "kafka", "consumers"))
    return report
