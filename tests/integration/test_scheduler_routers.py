"""Each of the scheduler's routers alone, on a bare FastAPI app over a real Redis: what it
depends on is provided through ``app.state`` and ``app.dependency_overrides``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from services.scheduler.api import answers, deps, goals, ops, rituals
from services.scheduler.history import NudgeHistory
from services.scheduler.keeping import Keeping
from services.scheduler.rituals import Channel, Couple, Partner, Ritual, ScheduleSpec
from services.scheduler.store import SchedulerStore
from shared import links
from shared.ids import new_id
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.vault import Vault


@pytest.fixture
async def store(infra) -> AsyncIterator[SchedulerStore]:
    settings = infra.settings()
    redis = make_redis(settings)
    keys = Keys(settings.redis_prefix)
    yield SchedulerStore(redis, keys, Vault(redis, keys, SecretBox(settings.secret_key)))
    await redis.aclose()


def bare_app(router: APIRouter, settings: Settings, store: SchedulerStore, **state: Any) -> FastAPI:
    """``router`` alone, the caller an admin, with the collaborators it reads from the state."""
    app = FastAPI()
    app.include_router(router)
    app.state.settings = settings
    app.state.store = store
    app.state.keeping = Keeping(store, NudgeHistory(store.redis, store.k))
    for name, value in state.items():
        setattr(app.state, name, value)
    app.dependency_overrides[deps.principal] = lambda: None
    return app


def at(instant: datetime) -> Any:
    return lambda: instant


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def a_couple(store: SchedulerStore) -> Couple:
    """Sam in Berlin (whose zone the couple's defaults follow) and Alex in New York."""
    partners = [
        Partner(
            id=f"prt_{name.lower()}",
            name=name,
            timezone=zone,
            channels=[Channel(id=f"chn_{name.lower()}", kind="push", redacted="json://x")],
        )
        for name, zone in (("Sam", "Europe/Berlin"), ("Alex", "America/New_York"))
    ]
    couple = Couple(
        id=new_id("cpl"),  # the API answers 404 to ids of any other shape
        name="Sam & Alex",
        partners=partners,
        created_at=datetime.now(UTC),
    )
    await store.create_couple(couple, f"ct_{couple.id}", {})
    return couple


async def test_goals_take_the_quarter_of_the_first_partners_day(infra, store) -> None:
    couple = await a_couple(store)
    app = bare_app(goals.router, infra.settings(), store)
    # New Year in Berlin, still 2025 in New York: the first partner's day decides.
    app.dependency_overrides[deps.now] = at(datetime(2026, 1, 1, 0, 30, tzinfo=UTC))
    async with client(app) as api:
        url = f"/v1/couples/{couple.id}/goals"
        added = await api.post(url, json={"text": "Plan the spring trip"})
        assert added.status_code == 201, added.text
        goal = added.json()
        assert goal["quarter"] == "2026-Q1"
        assert goal["created_at"] == "2026-01-01T00:30:00+00:00"
        assert goal["id"].startswith("gol_")
        earlier = await api.post(url, json={"text": "Cook on Sundays", "quarter": "2025-Q4"})
        assert earlier.status_code == 201
        listed = (await api.get(url)).json()["goals"]
        assert [g["text"] for g in listed] == ["Plan the spring trip", "Cook on Sundays"]
        # next quarter's check-in reads this quarter's goals back
        extras = await app.state.keeping.extras(
            couple, _checkin(couple), date(2026, 4, 5), datetime(2026, 4, 5, tzinfo=UTC)
        )
        assert extras == {"goals": ["Plan the spring trip"]}
        assert (await api.delete(f"{url}/{goal['id']}")).status_code == 204
        assert (await api.delete(f"{url}/{goal['id']}")).status_code == 404
        assert [g["text"] for g in (await api.get(url)).json()["goals"]] == ["Cook on Sundays"]


def _checkin(couple: Couple) -> Ritual:
    return Ritual(
        id="rit_checkin",
        couple_id=couple.id,
        kind="relationship_checkin",
        title="Check-in",
        schedule=ScheduleSpec(rrule="FREQ=DAILY", start=datetime(2026, 1, 1)),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_rituals_plan_from_the_clock_and_trigger_wakes_the_publisher(infra, store) -> None:
    couple = await a_couple(store)
    woken: list[bool] = []
    app = bare_app(rituals.router, infra.settings(), store, on_enqueue=lambda: woken.append(True))
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # Berlin is UTC+1 until March 29
    app.dependency_overrides[deps.now] = at(now)
    async with client(app) as api:
        created = await api.post(f"/v1/couples/{couple.id}/rituals", json={"kind": "hug"})
        assert created.status_code == 201, created.text
        ritual = created.json()
        assert ritual["schedule"]["start"] == "2026-03-10T00:00:00"  # today, in Berlin
        assert ritual["next"]["scheduled_for"] == {
            "prt_sam": "2026-03-10T17:30:00Z",
            "prt_alex": "2026-03-10T17:30:00Z",
        }
        upcoming = (await api.get(f"/v1/rituals/{ritual['id']}/upcoming?count=3")).json()
        assert [o["wall_time"] for o in upcoming["occurrences"]] == [
            "2026-03-10T18:30:00",
            "2026-03-11T18:30:00",
            "2026-03-12T18:30:00",
        ]
        triggered = await api.post(f"/v1/rituals/{ritual['id']}/trigger")
        assert triggered.status_code == 202
        occurrence = triggered.json()["occurrence_id"]  # this second, and a nonce of its own
        assert re.fullmatch(rf"{ritual['id']}@20260310T120000Z~manual\.[0-9a-f]{{8}}", occurrence)
        assert woken == [True]
        sent = await store.lease_outbox(now.timestamp(), now.timestamp() + 30, 10)
        assert [o.id for o in sent] == [occurrence]


async def test_action_link_page_changes_nothing_and_escapes(infra, store) -> None:
    settings = infra.settings()
    app = bare_app(answers.router, settings, store)
    grant = links.Grant("cpl_x", "rit_x@20260310T120000Z", "prt_sam", "snooze", 2**40, 30)
    async with client(app) as api:
        page = await api.get(f"/a/{links.sign(settings.secret_key, grant)}")
        assert page.status_code == 200
        assert "<button" in page.text and "Snooze 30 minutes" in page.text
        assert "<form method=post>" in page.text
        refused = await api.get("/a/garbage")
        assert refused.status_code in (400, 403)
        assert "That link did not work" in refused.text and "<button" not in refused.text
    # the partners' and the links' words are text, never markup
    rendered = answers.templates.get_template("page.html").render(title="<i>", text="<script>")
    assert "&lt;script&gt;" in rendered and "<script>" not in rendered


async def test_readyz_reports_the_readiness_it_is_given(infra, store) -> None:
    async def not_ready() -> dict[str, Any]:
        return {"ready": False, "redis": {"error": "down"}}

    app = bare_app(ops.router, infra.settings(), store, readiness=not_ready)
    async with client(app) as api:
        answer = await api.get("/readyz")
        assert answer.status_code == 503 and answer.json()["redis"] == {"error": "down"}
        assert (await api.get("/healthz")).json() == {"status": "ok"}
