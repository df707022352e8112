"""Nothing private in logs, events or responses: a real run of the three services as
processes (API -> scheduler -> ritual.due -> content -> nudge.ready -> notifier -> the local
inbox), with channel URLs carrying tokens and topics in their paths, phone numbers and
e-mail addresses; then every log line of every process (DEBUG, JSON), every record of
every topic (dead letters included) and every API response is searched for them."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from shared.settings import Settings
from shared.topics import ALL_TOPICS, NUDGE_DELIVERED
from tandem.embedded import free_port, wait_for_port
from tandem.inbox import Fault, Inbox
from tests.support.kafka import TopicReader
from tests.support.processes import SERVICES, running_services
from tests.support.scheduler import ADMIN

pytestmark = pytest.mark.e2e

PATH_TOKEN = "T0K3N-7f3a91"
PATH_SECRET = "secret-path-9c1e57"
TOPIC = "alex-private-topic-42x"
WEBHOOK_TOKEN = "ABCsecretWebhookTok3n"
SAM_MAIL = "sam.private.person"  # @example.com
GATEWAY = "+15550000777"
ALEX_PHONE = "+15557770002"
# Whatever is found of these, in any spelling, is a leak.
PRIVATE = (
    PATH_TOKEN,
    PATH_SECRET,
    TOPIC,
    WEBHOOK_TOKEN,
    SAM_MAIL,
    "5550000777",
    "5557770002",
    "555 777 0002",
)


def couple(inbox: Inbox) -> dict[str, Any]:
    """Sam: a JSON webhook with secrets in its path (which refuses), then e-mail, then a
    Discord-style webhook never reached; Alex: an ntfy private topic (which refuses), then
    SMS through a gateway."""
    port = inbox.http_port
    return {
        "name": "Sam & Alex",
        "partners": [
            {
                "name": "Sam",
                "timezone": "Europe/Berlin",
                "channels": [
                    {"url": f"json://127.0.0.1:{port}/{PATH_TOKEN}/{PATH_SECRET}", "kind": "push"},
                    {"url": inbox.mailto_url(f"{SAM_MAIL}@example.com"), "kind": "email"},
                    {
                        "url": f"https://discord.com/api/webhooks/1234567890/{WEBHOOK_TOKEN}",
                        "kind": "push",
                    },
                ],
            },
            {
                "name": "Alex",
                "timezone": "America/New_York",
                "channels": [
                    {"url": f"ntfy://127.0.0.1:{port}/{TOPIC}", "kind": "push"},
                    {
                        "url": f"signal://127.0.0.1:{port}/{GATEWAY}/{ALEX_PHONE}",
                        "kind": "sms",
                    },
                ],
            },
        ],
    }


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


async def every_record(settings: Settings) -> list[str]:
    """Every record of every topic, key, value and headers, as text."""
    consumer = AIOKafkaConsumer(
        *ALL_TOPICS,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    texts: list[str] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 3:
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                quiet_since = time.monotonic()
                for r in batch:
                    headers = " ".join(f"{k}={v!r}" for k, v in r.headers or ())
                    key = (r.key or b"").decode(errors="replace")
                    value = (r.value or b"").decode(errors="replace")
                    texts.append(f"{r.topic} {key} {value} {headers}")
    finally:
        await consumer.stop()
    return texts


def leaks(texts: list[str]) -> list[tuple[str, str]]:
    return [(p, t[:300]) for t in texts for p in PRIVATE if p in t]


async def test_no_secret_number_or_address_in_logs_events_or_responses(
    infra, inbox: Inbox, logs: Path
) -> None:
    inbox.fault(f"{PATH_TOKEN}/{PATH_SECRET}", Fault(forever=True, status=500))
    inbox.fault(TOPIC, Fault(forever=True, status=500))
    settings = infra.settings()
    responses: list[str] = []
    port = free_port()
    env = infra.env(api_port=port, log_format="json", log_level="DEBUG")
    with running_services(dict.fromkeys(SERVICES, env), log_dir=logs) as procs:
        wait_for_port(port, timeout=60, proc=procs["scheduler"])
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=30
            ) as api,
            TopicReader(settings, NUDGE_DELIVERED) as delivered,
        ):
            created = await api.post("/v1/couples", json=couple(inbox))
            responses.append(created.text)
            assert created.status_code == 201, created.text
            body = created.json()
            mine = {"Authorization": f"Bearer {body['token']}"}
            at = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
            ritual = await api.post(
                f"/v1/couples/{body['id']}/rituals",
                json={
                    "kind": "evening_checkin",
                    "title": "Check-in",
                    "schedule": {"at": at.isoformat()},
                },
            )
            responses.append(ritual.text)
            assert ritual.status_code == 201, ritual.text

            got = await asyncio.to_thread(
                inbox.wait_for,
                lambda rs: {r.address for r in rs} >= {f"{SAM_MAIL}@example.com", ALEX_PHONE},
                90,
            )
            assert got
            records = await delivered.until(
                lambda rs: len({r["partner_id"] for r in rs if r["couple_id"] == body["id"]}) == 2,
                timeout=60,
            )
            kinds = {r["channel_kind"] for r in records if r["couple_id"] == body["id"]}
            assert kinds == {"email", "sms"}  # both went through the fallback
            for path in (
                f"/v1/couples/{body['id']}",
                f"/v1/couples/{body['id']}/nudges",
                f"/v1/rituals/{ritual.json()['id']}",
            ):
                for headers in (ADMIN, mine):
                    answer = await api.get(path, headers=headers)
                    responses.append(answer.text)
            records_text = await every_record(settings)
    # the processes have stopped: their logs are complete
    lines = [line for name in SERVICES for line in (logs / f"{name}.log").read_text().splitlines()]

    assert len(responses) >= 8 and len(records_text) >= 4 and len(lines) > 50
    assert leaks(responses) == []
    assert leaks(records_text) == []
    assert leaks(lines) == []
    # the run really handled the private values: the masked forms are there
    everything = "\n".join([*responses, *records_text, *lines])
    assert "***02" in everything and "s***@example.com" in everything
    # Apprise's INFO line, which names the number
    assert any("Signal API notification to ***02" in line for line in lines)
