"""The whole suite as real processes: API -> scheduler -> ritual.due -> content ->
nudge.ready -> notifier -> Apprise -> both partners' inboxes -> nudge.delivered -> history."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.topics import NUDGE_DELIVERED
from tandem.embedded import free_port, wait_for_port
from tests.support.kafka import TopicReader
from tests.support.processes import SERVICES, running_services
from tests.support.scheduler import ADMIN, couple_body

pytestmark = pytest.mark.e2e


@pytest.fixture
def suite(infra) -> Iterator[str]:
    """The three services as separate processes; yields the API base URL."""
    port = free_port()
    env = infra.env(api_port=port, log_format="console")
    with running_services(dict.fromkeys(SERVICES, env)) as procs:
        wait_for_port(port, timeout=60, proc=procs["scheduler"])
        yield f"http://127.0.0.1:{port}"


async def test_a_ritual_nudges_both_partners_with_the_same_prompt(infra, inbox, suite) -> None:
    settings = infra.settings()
    async with (
        httpx.AsyncClient(base_url=suite, headers=ADMIN, timeout=30) as api,
        TopicReader(settings, NUDGE_DELIVERED) as delivered,
    ):
        couple = (await api.post("/v1/couples", json=couple_body(inbox))).json()
        sam, alex = couple["partners"]
        at = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
        ritual = await api.post(
            f"/v1/couples/{couple['id']}/rituals",
            json={
                "kind": "evening_checkin",
                "title": "Evening check-in",
                "schedule": {"at": at.isoformat()},
            },
        )
        assert ritual.status_code == 201, ritual.text

        got = await asyncio.to_thread(
            inbox.wait_for, lambda rs: {r.address for r in rs} >= {"sam", "alex"}, 90
        )
        to_sam = next(r for r in got if r.address == "sam")
        to_alex = next(r for r in got if r.address == "alex")
        assert time.time() >= at.timestamp()  # not early
        # the same prompt, personalised for each partner
        records = await delivered.until(
            lambda rs: len({r["partner_id"] for r in rs}) == 2, timeout=60
        )
        assert {r["channel_kind"] for r in records} == {"push"}
        assert all(r["occurrence_id"] == records[0]["occurrence_id"] for r in records)

        history = await api.get(f"/v1/couples/{couple['id']}/nudges")
        deadline = time.monotonic() + 30
        while (
            not _both_delivered(history.json(), sam["id"], alex["id"])
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.5)
            history = await api.get(f"/v1/couples/{couple['id']}/nudges")
        nudge = history.json()["nudges"][0]
        assert _both_delivered(history.json(), sam["id"], alex["id"]), history.text
        prompt = nudge["prompt"]["text"]
        assert (
            prompt
            and prompt in to_sam.body + to_sam.title
            and prompt in to_alex.body + to_alex.title
        )
        assert nudge["partners"][sam["id"]]["channel_kind"] == "push"
        assert "Sam" in to_sam.title + to_sam.body and "Alex" in to_alex.title + to_alex.body
        # nothing more than one nudge each
        await asyncio.sleep(2)
        assert len(inbox.to("sam")) == 1 and len(inbox.to("alex")) == 1


def _both_delivered(history: dict, *partners: str) -> bool:
    nudges = history.get("nudges") or []
    return bool(nudges) and all(
        nudges[0]["partners"].get(p, {}).get("status") == "delivered" for p in partners
    )


LINK = re.compile(r"https?://[^\s,;]+/a/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


def _done_link(received) -> str:
    """The "done" link of a nudge as the phone got it: ntfy's first button, or the first
    link listed after a push body."""
    found = LINK.findall(received.actions or received.body)
    assert found, received
    return found[0]


async def test_both_partners_press_done_and_get_you_both_did_it(infra, inbox, suite) -> None:
    async with httpx.AsyncClient(base_url=suite, headers=ADMIN, timeout=30) as api:
        couple = (await api.post("/v1/couples", json=couple_body(inbox))).json()
        start = datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(seconds=6)
        ritual = await api.post(
            f"/v1/couples/{couple['id']}/rituals",
            json={
                "kind": "hug",
                "celebrate": True,
                "schedule": {
                    "rrule": "FREQ=HOURLY",
                    "timezone": "Europe/Berlin",
                    "start": start.replace(tzinfo=None, microsecond=0).isoformat(),
                },
            },
        )
        assert ritual.status_code == 201, ritual.text
        got = await asyncio.to_thread(
            inbox.wait_for, lambda rs: {r.address for r in rs} >= {"sam", "alex"}, 90
        )
        sam_link = _done_link(next(r for r in got if r.address == "sam"))  # json push: in the body
        alex_link = _done_link(next(r for r in got if r.address == "alex"))  # ntfy: a button
        async with httpx.AsyncClient(timeout=30) as phone:
            opened = await phone.get(sam_link)  # a browser opens it: a button, nothing done yet
            assert opened.status_code == 200 and "Mark it done" in opened.text
            assert (await phone.post(sam_link, headers={"accept": "text/html"})).status_code == 200
            pressed = await phone.post(alex_link)  # ntfy's http action: a bare POST
            assert pressed.status_code == 200, pressed.text
            assert pressed.json()["completion"] == "both"
        view = (await api.get(f"/v1/rituals/{ritual.json()['id']}")).json()
        assert view["streak"] == 1
        notes = await asyncio.to_thread(
            inbox.wait_for,
            lambda rs: sum(r.title == "You both did it" for r in rs) >= 2,
            60,
        )
        assert {r.address for r in notes if r.title == "You both did it"} == {"sam", "alex"}
        # The history is the scheduler's own consumer's (it looks every 500 ms): wait for it.
        deadline = time.monotonic() + 30
        while True:
            history = (await api.get(f"/v1/couples/{couple['id']}/nudges")).json()["nudges"]
            ritual_nudge = next((n for n in history if n["prompt"]["deck"] != "tandem"), None)
            if (ritual_nudge and ritual_nudge["completion"] == "both") or (
                time.monotonic() > deadline
            ):
                break
            await asyncio.sleep(0.5)
        assert ritual_nudge is not None and ritual_nudge["completion"] == "both", history
