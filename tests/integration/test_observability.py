"""Observability of the three services run as processes: /healthz, /readyz and /metrics on
each (content and notifier on their ops port, the scheduler on its API), and one trace per
nudge across scheduler, content and notifier, exported over OTLP/HTTP to a local receiver."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tandem.embedded import free_port, wait_for_port
from tandem.inbox import Inbox
from tests.support.processes import SERVICES, running_services
from tests.support.scheduler import ADMIN, couple_body

pytestmark = pytest.mark.e2e


class Receiver:
    """A tiny OTLP/HTTP trace receiver on 127.0.0.1: keeps (service, trace id, span name)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        spans, lock = self.spans, self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    for resource in request.resource_spans:
                        attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
                        for scope in resource.scope_spans:
                            for span in scope.spans:
                                spans.append(
                                    (attrs.get("service.name", ""), span.trace_id.hex(), span.name)
                                )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def names_by_trace(self) -> dict[str, set[tuple[str, str]]]:
        """Trace id -> the (service, span name) pairs received for it."""
        with self.lock:
            found: dict[str, set[tuple[str, str]]] = {}
            for service, trace_id, name in self.spans:
                found.setdefault(trace_id, set()).add((service, name))
            return found


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture
def inbox(module_inbox: Inbox) -> Inbox:
    """The module's inbox: ``suite``'s services allow its sinks (egress) from the start."""
    return module_inbox


@pytest.fixture(scope="module")
def suite(module_infra, receiver, module_inbox) -> Iterator[dict[str, str]]:
    """The three services as processes, traced and with ops ports; yields each one's base
    URL for /healthz, /readyz and /metrics (the scheduler's is also its API)."""
    ports = {name: free_port() for name in SERVICES}
    env = module_infra.env(
        api_port=ports["scheduler"], log_format="console", otlp_endpoint=receiver.url
    )
    env["OTEL_BSP_SCHEDULE_DELAY"] = "200"  # ms: spans reach the receiver quickly
    envs = {
        name: env if name == "scheduler" else {**env, "TANDEM_OPS_PORT": str(ports[name])}
        for name in SERVICES
    }
    with running_services(envs) as procs:
        for name in SERVICES:
            wait_for_port(ports[name], timeout=60, proc=procs[name])
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


async def _until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def _all_ready(client: httpx.AsyncClient, suite: dict[str, str]) -> bool:
    answers = [await client.get(f"{url}/readyz") for url in suite.values()]
    return all(a.status_code == 200 for a in answers)


async def test_one_trace_spans_the_three_services(suite, receiver, inbox) -> None:
    api = suite["scheduler"]
    async with httpx.AsyncClient(headers=ADMIN, timeout=10, trust_env=False) as client:
        await _until(lambda: _all_ready(client, suite), 60, "every service ready")
        couple = (await client.post(f"{api}/v1/couples", json=couple_body(inbox))).json()
        later = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
        ritual = await client.post(
            f"{api}/v1/couples/{couple['id']}/rituals",
            json={"kind": "evening_checkin", "schedule": {"at": later.isoformat()}},
        )
        assert ritual.status_code == 201, ritual.text
        triggered = await client.post(f"{api}/v1/rituals/{ritual.json()['id']}/trigger")
        assert triggered.status_code == 202, triggered.text

        await asyncio.to_thread(
            inbox.wait_for, lambda rs: {r.address for r in rs} >= {"sam", "alex"}, 60
        )
        # a test nudge travels the urgent lanes
        expected = {
            ("tandem-scheduler", "ritual.due.urgent publish"),
            ("tandem-content", "ritual.due.urgent process"),
            ("tandem-content", "nudge.ready.urgent publish"),
            ("tandem-notifier", "nudge.ready.urgent process"),
        }

        # Each service exports a span when it ends, in its own batch: a handler's "process"
        # span ends after the publishes inside it, so wait for the whole set, not the first
        # trace that names every service.
        async def spanning() -> list[str]:
            return [t for t, names in receiver.names_by_trace().items() if names >= expected]

        await _until(spanning, 20, f"one trace with the spans {sorted(expected)}")


async def test_health_readiness_and_metrics(suite) -> None:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        for url in suite.values():
            assert (await client.get(f"{url}/healthz")).status_code == 200
        await _until(lambda: _all_ready(client, suite), 60, "every service ready")
        ready = (await client.get(f"{suite['notifier']}/readyz")).json()
        assert ready["consumers"]["assigned_partitions"]["notifier"] > 0
        assert ready["redis"]["ok"] and ready["kafka"]["ok"]
        ready = (await client.get(f"{suite['scheduler']}/readyz")).json()
        assert ready["consumers"]["assigned_partitions"]["scheduler-history"] > 0

        metrics = {name: (await client.get(f"{url}/metrics")).text for name, url in suite.items()}
    for name in SERVICES:
        # FastStream's per-handler metrics and the consumer lag of the service's group
        assert "faststream_received_messages_total" in metrics[name], name
        assert "tandem_consumer_lag{" in metrics[name], name
    assert "tandem_occurrences_fired_total" in metrics["scheduler"]
    assert "tandem_fire_lateness_seconds_bucket" in metrics["scheduler"]
    assert "tandem_prompts_chosen_total" in metrics["content"]
    assert 'tandem_consumer_lag{group="content",topic="ritual.due"}' in metrics["content"]
    # nothing was dead-lettered: the depth is measured, and it is zero
    assert 'tandem_dlq_depth{topic="ritual.due.dlq"} 0.0' in metrics["content"]
    assert 'tandem_dlq_depth{topic="nudge.ready.dlq"} 0.0' in metrics["notifier"]
    for metric in (
        "tandem_delivery_attempts_total",
        "tandem_delivery_retries_total",
        "tandem_partner_skew_seconds_bucket",
        "tandem_dead_letters_total",
    ):
        assert metric in metrics["notifier"], metric
