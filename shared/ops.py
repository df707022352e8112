"""What operators look at: Prometheus metrics, health endpoints and tracing, for every service.

Promises:

* :func:`broker_middlewares` gives every broker FastStream's Kafka Prometheus middleware
  (``faststream_*`` metrics per handler and topic) and, only when ``TANDEM_OTLP_ENDPOINT``
  is set, its OpenTelemetry middleware: the trace context travels in Kafka headers, so one
  occurrence is one trace from the scheduler through content to the notifier.
* :func:`ops_routes` are ``/healthz`` (the process is alive), ``/readyz`` (200 only when
  every check is ok, 503 with the report otherwise; one JSON shape for every service, see
  :func:`run_checks`) and ``/metrics``, as FastStream ASGI routes that
  :mod:`shared.service` serves the same way for every service. A failing check is a
  503, never a crash.
* ``tandem_consumer_lag`` is refreshed on every scrape (:func:`refresh_lag`), so it is as
  fresh as Prometheus asks and costs nothing when nobody looks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from aiokafka import TopicPartition
from faststream.asgi import AsgiResponse, get
from faststream.asgi.response import JSONResponse
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

Report = dict[str, Any]
CHECK_SECONDS = 3.0  # a readiness probe answers within a few of these
Readiness = Callable[[], Awaitable[Report]]
# One readiness check: its details (``ok`` defaults to true), or an exception for not ok.
Check = Callable[[], Awaitable[dict[str, Any]]]


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


# -- readiness and the ops endpoints -----------------------------------------------------
async def run_checks(service: str, checks: Mapping[str, Check]) -> Report:
    """Tandem's one readiness contract, for every service::

        {"service": "<name>", "ready": <bool>,
         "<check>": {"ok": <bool>, ...details, "error": "<repr>" (only when it raised)}, ...}

    ``ready`` is true only when every check says ``ok``. A check that raises or takes more
    than ``CHECK_SECONDS`` is ``{"ok": false, "error": ...}``: readiness reports, it never
    raises."""
    report: Report = {"service": service}
    for name, check in checks.items():
        try:
            report[name] = {"ok": True} | await asyncio.wait_for(check(), CHECK_SECONDS)
        except Exception as exc:
            report[name] = {"ok": False, "error": repr(exc)}
    report["ready"] = all(report[name]["ok"] for name in checks)
    return report


async def consumer_report(subscribers: Iterable[Any]) -> dict[str, Any]:
    """Readiness of consumers: each must own at least one partition."""
    assigned = {s.group_id: assigned_partitions(s) for s in subscribers}
    return {"ok": all(assigned.values()), "assigned_partitions": assigned}


def ops_routes(readiness: Readiness, subscribers: Sequence[Any]) -> list[tuple[str, Any]]:
    """``/healthz``, ``/readyz`` and ``/metrics`` as FastStream ASGI routes (the
    ``asgi_routes`` of :class:`faststream.asgi.AsgiFastStream`), the same for every service.

    ``/healthz`` answers 200 ``{"status": "ok"}`` while the process serves HTTP: liveness
    only. (FastStream's ``make_ping_asgi`` pings the broker and answers 204, which is a
    readiness question; a broker outage must not get a live service restarted.)
    ``/readyz`` is :func:`run_checks`'s report, 200 when ready else 503. ``/metrics`` is
    the Prometheus exposition (:func:`render_metrics`)."""

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        return JSONResponse({"status": "ok"})

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        report = await readiness()
        return AsgiResponse(
            json.dumps(report, default=str).encode(),
            200 if report.get("ready") else 503,
            {"Content-Type": "application/json"},
        )

    @get(include_in_schema=False)
    async def metrics(scope: Any) -> AsgiResponse:
        body = await render_metrics(subscribers)
        return AsgiResponse(body, 200, {"Content-Type": CONTENT_TYPE_LATEST})

    return [("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)]
