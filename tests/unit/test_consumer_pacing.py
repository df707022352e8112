"""How often each service's consumers look for records while idle: the nudges' path at the
settings' short waits (a quiet evening's latency), the urgent lanes and the scheduler's
history less often (every idle look costs the broker and the service CPU). Built, not
started: no broker or Redis is needed to read a consumer's configuration."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from services.content.worker import build as build_content
from services.notifier.worker import build as build_notifier
from services.scheduler.service import build as build_scheduler
from shared.service import BACKGROUND_POLL_MS, URGENT_POLL_MS, Service
from shared.settings import Settings


def _service(name: str, settings: Settings) -> Service:
    if name == "content":
        return build_content(settings)
    if name == "notifier":
        return build_notifier(settings).service
    return build_scheduler(settings)


def _pacing(service: Service) -> dict[str, tuple[int, Any]]:
    """group id -> (FastStream's sleep after an empty poll, the broker's fetch wait)."""
    return {
        sub.group_id: (sub.batch_timeout_ms, sub._connection_args["fetch_max_wait_ms"])
        for sub in service.subscribers
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("content", {"content": (20, 20), "content.urgent": (URGENT_POLL_MS,) * 2}),
        ("notifier", {"notifier": (20, 20), "notifier.urgent": (URGENT_POLL_MS,) * 2}),
        ("scheduler", {"scheduler-history": (BACKGROUND_POLL_MS,) * 2}),
    ],
)
def test_only_the_nudges_path_polls_at_the_settings_short_waits(
    name: str, expected: dict[str, tuple[int, int]]
) -> None:
    settings = Settings(secret_key=Fernet.generate_key().decode(), admin_token="t")
    assert _pacing(_service(name, settings)) == expected


def test_longer_settings_still_win_over_a_consumers_own_pace() -> None:
    settings = Settings(
        secret_key=Fernet.generate_key().decode(),
        consumer_batch_timeout_ms=1000,
        consumer_fetch_max_wait_ms=800,
    )
    assert _pacing(_service("content", settings)) == {
        "content": (1000, 800),
        "content.urgent": (1000, 800),
    }
