"""The ops server's answers, without a broker: alive always, ready only when the check says
so (a check that raises is a 503, not a crash), Prometheus text on /metrics."""

from __future__ import annotations

from typing import Any

import httpx

from shared.ops import OpsServer
from shared.settings import Settings


async def _get(server: OpsServer, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
        return await client.get(path)


async def test_health_readiness_and_metrics() -> None:
    async def ready() -> dict[str, Any]:
        return {"ready": True}

    server = OpsServer(Settings(ops_port=9), readiness=ready)
    assert (await _get(server, "/healthz")).status_code == 200
    assert (await _get(server, "/readyz")).json() == {"ready": True}
    metrics = await _get(server, "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "tandem_consumer_lag" in metrics.text
    assert (await _get(server, "/nope")).status_code == 404


async def test_a_failing_check_is_not_ready() -> None:
    async def broken() -> dict[str, Any]:
        raise ConnectionError("redis is down")

    async def not_yet() -> dict[str, Any]:
        return {"ready": False, "consumers": {"ok": False}}

    answer = await _get(OpsServer(Settings(), readiness=broken), "/readyz")
    assert answer.status_code == 503 and "redis is down" in answer.json()["error"]
    assert (await _get(OpsServer(Settings(), readiness=not_yet), "/readyz")).status_code == 503
