"""Scheduler tests' set-up: an in-process replica with an HTTP client, couple payloads for
its API and the admin header that API wants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from services.scheduler.service import Scheduler
from shared.settings import Settings
from tests.support.infra import TEST_ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def couple_body(
    inbox: Any = None, *, secret: str = "s3cr3t-token", quiet_hours: dict[str, str] | None = None
) -> dict[str, Any]:
    """Sam in Berlin and Alex in New York (with ``quiet_hours`` if given), with channels at
    the local inbox when one is given."""
    if inbox is not None:
        sam = [
            {"url": inbox.json_url("sam"), "kind": "push"},
            {"url": inbox.mailto_url("sam@example.com"), "kind": "email"},
        ]
        alex = [
            {"url": inbox.ntfy_url("alex"), "kind": "push"},
            {"url": inbox.mailto_url("alex@example.com"), "kind": "email"},
        ]
    else:
        sam = [{"url": f"json://127.0.0.1:9/hook?token={secret}", "kind": "push"}]
        alex = [
            {
                "url": "mailto://127.0.0.1:9?to=alex@example.com&from=t@example.com&mode=insecure",
                "kind": "email",
            }
        ]
    return {
        "name": "Sam & Alex",
        "partners": [
            {"name": "Sam", "timezone": "Europe/Berlin", "channels": sam},
            {
                "name": "Alex",
                "timezone": "America/New_York",
                "channels": alex,
                "quiet_hours": quiet_hours,
            },
        ],
    }


@asynccontextmanager
async def running_scheduler(
    settings: Settings,
) -> AsyncIterator[tuple[Scheduler, httpx.AsyncClient]]:
    scheduler = Scheduler(settings)
    await scheduler.start()
    transport = httpx.ASGITransport(app=scheduler.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://scheduler") as client:
            yield scheduler, client
    finally:
        await scheduler.stop()
