"""The recurrence budget over the real stack: while rules too costly to evaluate are POSTed,
several at once, the same scheduler process keeps answering /healthz and firing the other
rituals; a stored rule that went over budget is logged and left leased, not fired."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.scheduler import planning
from services.scheduler.rituals import ScheduleSpec
from shared.topics import RITUAL_DUE
from tests.support.kafka import TopicReader
from tests.support.scheduler import ADMIN, couple_body, running_scheduler

LONG_AGO = "2000-01-01T09:00:00"  # the oldest start the API takes
# Before the budget, each of these held the process for seconds to minutes (see the README).
WORST = [
    "FREQ=MINUTELY;BYMONTH=1",  # walked minute by minute from 2000
    "FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYSETPOS=2",  # never: searched to 9999
    "FREQ=DAILY;INTERVAL=2;BYMONTH=1;BYSETPOS=2",  # never
    "FREQ=DAILY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12;BYHOUR=8,20",  # walked day by day
]
# Each /healthz must answer within this: generous, a slow CI machine is no failure; a
# process held by a rule for seconds is.
HEALTHZ_DEADLINE = 2.0


async def poll_healthz(api: httpx.AsyncClient, done: asyncio.Event) -> list[float]:
    """Ask /healthz every 50 ms until ``done`` (at least ten times); each one's latency."""
    latencies: list[float] = []
    while not done.is_set() or len(latencies) < 10:
        began = time.monotonic()
        answer = await api.get("/healthz")
        latencies.append(time.monotonic() - began)
        assert answer.status_code == 200
        await asyncio.sleep(0.05)
    return latencies


async def test_costly_rules_are_refused_while_healthz_answers_and_other_rituals_fire(
    infra, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="tandem.scheduler.firing")
    settings = infra.settings()
    async with (
        running_scheduler(settings) as (scheduler, api),
        TopicReader(settings, RITUAL_DUE) as reader,
    ):
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        rituals_url = f"/v1/couples/{couple['id']}/rituals"

        # A rule accepted long ago that is now too costly at firing time (stored directly:
        # the API would refuse it), due now.
        stale = (await api.post(rituals_url, json={"kind": "hug"}, headers=ADMIN)).json()
        stored = (await scheduler.store.get_rituals([stale["id"]]))[stale["id"]]
        stored = stored.model_copy(
            update={
                "schedule": ScheduleSpec(
                    rrule=WORST[0], timezone="UTC", start=datetime.fromisoformat(LONG_AGO)
                )
            }
        )
        stored_couple = (await scheduler.store.get_couples([couple["id"]]))[couple["id"]]
        (costly_track,) = planning.track_ids(stored_couple, stored)
        await scheduler.store.save_ritual(stored, {costly_track: time.time()})

        # A normal ritual due while the costly rules are being POSTed.
        at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
        normal = (
            await api.post(
                rituals_url, json={"kind": "hug", "schedule": {"at": at.isoformat()}}, headers=ADMIN
            )
        ).json()

        async def post(rrule: str) -> httpx.Response:
            schedule = {"rrule": rrule, "timezone": "Europe/Berlin", "start": LONG_AGO}
            return await api.post(
                rituals_url, json={"kind": "hug", "schedule": schedule}, headers=ADMIN
            )

        done = asyncio.Event()

        async def post_all() -> list[httpx.Response]:
            try:
                # Several at once, twice over, the second round while the normal one is due.
                first = await asyncio.gather(*(post(rule) for rule in WORST))
                await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
                return first + list(await asyncio.gather(*(post(rule) for rule in WORST)))
            finally:
                done.set()

        latencies, answers = await asyncio.gather(poll_healthz(api, done), post_all())

        for answer in answers:
            assert answer.status_code == 422, answer.text
            (problem,) = answer.json()["detail"]
            assert problem["loc"] == ["body", "schedule", "rrule"]
            assert problem["msg"].startswith("rule too costly to evaluate"), problem
        assert len(latencies) >= 10
        assert max(latencies) < HEALTHZ_DEADLINE, sorted(latencies)[-5:]

        records: list[dict[str, Any]] = await reader.until(
            lambda records: any(r["ritual_id"] == normal["id"] for r in records)
        )
        (fired,) = [r for r in records if r["ritual_id"] == normal["id"]]
        assert datetime.fromisoformat(fired["scheduled_for"]) == at
        await reader.quiet(1.0)
        assert not [r for r in reader.records if r["ritual_id"] == stale["id"]]
        assert f"cannot fire track {costly_track}" in caplog.text
        assert "rule too costly to evaluate" in caplog.text
        # Left leased, as any track that cannot be decided: retried when the lease runs out.
        assert (await scheduler.store.due_of([costly_track]))[0] is not None
        # Asked for, the stored rule is a conflict to fix with PATCH, never a 500.
        shown = await api.get(f"/v1/rituals/{stale['id']}", headers=ADMIN)
        assert shown.status_code == 409, shown.text
        (problem,) = shown.json()["detail"]
        assert problem["loc"] == ["schedule", "rrule"]
        assert "rule too costly to evaluate" in problem["msg"]
