"""The ops endpoints every service serves, without a broker: alive always, ready only when
every check says so (a check that raises is not ok, and never a crash), one JSON shape for
every check, Prometheus text on /metrics."""

from __future__ import annotations

from typing import Any

import httpx

from shared.ops import ops_routes, run_checks
from shared.service import ServiceApp


def _app(checks: dict[str, Any], fallback: Any = None) -> ServiceApp:
    async def readiness() -> dict[str, Any]:
        return await run_checks("test", checks)

    app = ServiceApp(asgi_routes=ops_routes(readiness, []))
    app.fallback = fallback
    return app


async def _get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
        return await client.get(path)


async def ok() -> dict[str, Any]:
    return {}


async def test_health_readiness_and_metrics() -> None:
    async def details() -> dict[str, Any]:
        return {"problems": ["a warning"]}

    app = _app({"redis": ok, "kafka": details})
    health = await _get(app, "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await _get(app, "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "service": "test",
        "redis": {"ok": True},
        "kafka": {"ok": True, "problems": ["a warning"]},
        "ready": True,
    }
    metrics = await _get(app, "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "tandem_consumer_lag" in metrics.text
    assert (await _get(app, "/nope")).status_code == 404


async def test_a_failing_check_is_not_ready() -> None:
    async def broken() -> dict[str, Any]:
        raise ConnectionError("redis is down")

    async def not_yet() -> dict[str, Any]:
        return {"ok": False, "assigned_partitions": {"g": 0}}

    answer = await _get(_app({"redis": broken, "kafka": ok}), "/readyz")
    assert answer.status_code == 503 and "redis is down" in answer.json()["redis"]["error"]
    assert answer.json()["redis"]["ok"] is False and answer.json()["ready"] is False
    assert (await _get(_app({"consumers": not_yet}), "/readyz")).status_code == 503


async def test_unrouted_paths_go_to_the_mounted_app() -> None:
    async def api(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    app = _app({"redis": ok}, fallback=api)
    answer = await _get(app, "/v1/couples/c1")
    assert answer.status_code == 201 and answer.text == "/v1/couples/c1"
    assert (await _get(app, "/healthz")).json() == {"status": "ok"}  # ops routes come first
