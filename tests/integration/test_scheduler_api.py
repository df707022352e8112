"""The scheduler's HTTP contract, over a real Redis and a real broker."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.topics import RITUAL_DUE, RITUAL_DUE_URGENT
from tests.support.kafka import TopicReader
from tests.support.scheduler import ADMIN, couple_body


@pytest.fixture
def infra(module_infra):
    return module_infra


async def test_couple_lifecycle_and_secrets_at_rest(infra, running) -> None:
    scheduler, api = running
    created = await api.post("/v1/couples", json=couple_body(secret="s3cr3t-token"), headers=ADMIN)
    assert created.status_code == 201, created.text
    couple = created.json()
    assert couple["token"].startswith("ct_")
    assert [p["name"] for p in couple["partners"]] == ["Sam", "Alex"]
    assert all(p["id"].startswith("prt_") for p in couple["partners"])
    # channel URLs are redacted in responses...
    assert "s3cr3t-token" not in created.text
    # ...and encrypted at rest: no Redis value holds the secret in clear
    for key in await scheduler.redis.keys("*"):
        kind = await scheduler.redis.type(key)
        dump = str(
            await scheduler.redis.hgetall(key)
            if kind == "hash"
            else await scheduler.redis.get(key)
            if kind == "string"
            else ""
        )
        assert "s3cr3t-token" not in dump, key

    own = {"Authorization": f"Bearer {couple['token']}"}
    got = await api.get(f"/v1/couples/{couple['id']}", headers=own)
    assert got.status_code == 200 and got.json()["name"] == "Sam & Alex"
    assert "token" not in got.json()

    patched = await api.patch(
        f"/v1/couples/{couple['id']}",
        json={"transition_mode": True, "name": "S&A"},
        headers=own,
    )
    assert patched.json()["transition_mode"] is True and patched.json()["name"] == "S&A"

    assert (await api.delete(f"/v1/couples/{couple['id']}", headers=own)).status_code == 204
    assert (await api.get(f"/v1/couples/{couple['id']}", headers=ADMIN)).status_code == 404
    # the deleted couple's token no longer works
    assert (await api.get(f"/v1/couples/{couple['id']}", headers=own)).status_code == 401


async def test_auth_scopes(infra, running) -> None:
    _, api = running
    first = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    second = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    assert (await api.get(f"/v1/couples/{first['id']}")).status_code == 401
    assert (
        await api.get(f"/v1/couples/{first['id']}", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    token = {"Authorization": f"Bearer {first['token']}"}
    assert (await api.get(f"/v1/couples/{second['id']}", headers=token)).status_code == 404
    ritual = await api.post(
        f"/v1/couples/{second['id']}/rituals", json={"kind": "hug"}, headers=ADMIN
    )
    assert ritual.status_code == 201
    rid = ritual.json()["id"]
    assert (await api.get(f"/v1/rituals/{rid}", headers=token)).status_code == 404
    assert (await api.delete(f"/v1/rituals/{rid}", headers=token)).status_code == 404
    assert (await api.post("/v1/couples", json=couple_body(), headers=token)).status_code == 403
    assert (await api.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"partners": "third"}, "partners", "exactly two"),
        ({"tz": "Europe/Berlni"}, "timezone", "unknown IANA time zone"),
        ({"url": "nosuchscheme://x"}, "url", "Apprise"),
    ],
)
async def test_bad_couples_are_422_and_store_nothing(infra, running, body, field, reason) -> None:
    payload = couple_body()
    if "partners" in body:
        payload["partners"].append(payload["partners"][0])
    if "tz" in body:
        payload["partners"][1]["timezone"] = body["tz"]
    if "url" in body:
        payload["partners"][0]["channels"][0]["url"] = body["url"]
    scheduler, api = running
    before = await scheduler.redis.keys(f"{infra.prefix}:{{cpl_*}}:c")
    answer = await api.post("/v1/couples", json=payload, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert any(field in [str(x) for x in d["loc"]] for d in detail), detail
    if reason != "exactly two":
        assert any(reason in d["msg"] for d in detail), detail
    assert await scheduler.redis.keys(f"{infra.prefix}:{{cpl_*}}:c") == before


async def test_non_json_and_oversized_bodies(infra, running) -> None:
    _, api = running
    answer = await api.post(
        "/v1/couples",
        content=b"{not json",
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert answer.status_code == 422
    huge = await api.post(
        "/v1/couples",
        content=b"x" * 70_000,
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert huge.status_code == 413


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (
            {
                "rrule": "FREQ=SOMETIMES",
                "timezone": "Europe/Berlin",
                "start": "2026-12-01T07:00:00",
            },
            "rrule",
        ),
        (
            {"rrule": "FREQ=SECONDLY", "timezone": "Europe/Berlin", "start": "2026-12-01T07:00:00"},
            "rrule",
        ),
        (
            {
                "rrule": "FREQ=DAILY;COUNT=0",
                "timezone": "Europe/Berlin",
                "start": "2026-12-01T07:00:00",
            },
            "rrule",
        ),
        (
            {
                "rrule": "FREQ=DAILY;UNTIL=20261101T000000",
                "timezone": "Europe/Berlin",
                "start": "2026-12-01T07:00:00",
            },
            "rrule",
        ),
        (
            {"rrule": "FREQ=DAILY", "timezone": "Mars/Olympus", "start": "2026-12-01T07:00:00"},
            "timezone",
        ),
        ({"at": "2020-01-01T00:00:00Z"}, "at"),
    ],
)
async def test_bad_schedules_are_422_and_store_nothing(infra, running, schedule, field) -> None:
    _, api = running
    couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    answer = await api.post(
        f"/v1/couples/{couple['id']}/rituals",
        json={"kind": "evening_checkin", "schedule": schedule},
        headers=ADMIN,
    )
    assert answer.status_code == 422, answer.text
    assert any(field in [str(x) for x in d["loc"]] for d in answer.json()["detail"]), answer.text
    listed = await api.get(f"/v1/couples/{couple['id']}/rituals", headers=ADMIN)
    assert listed.json()["rituals"] == []


async def test_kind_alone_gets_default_schedule_and_rotation_alternates(infra, running) -> None:
    _, api = running
    couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    ritual = (
        await api.post(
            f"/v1/couples/{couple['id']}/rituals", json={"kind": "date_night"}, headers=ADMIN
        )
    ).json()
    assert ritual["title"] == "Date night" and ritual["rotation"] == "alternate"
    assert "FREQ=WEEKLY" in ritual["schedule"]["rrule"]
    upcoming = (
        await api.get(f"/v1/rituals/{ritual['id']}/upcoming?count=4", headers=ADMIN)
    ).json()["occurrences"]
    assert len(upcoming) == 4
    planners = [o["planner"] for o in upcoming]
    sam, alex = (p["id"] for p in couple["partners"])
    assert (
        set(planners) == {sam, alex} and planners[0] != planners[1] and planners[0] == planners[2]
    )
    instants = [datetime.fromisoformat(o["scheduled_for"][sam]) for o in upcoming]
    assert all(
        b - a == timedelta(days=7) or abs((b - a) - timedelta(days=7)) <= timedelta(hours=1)
        for a, b in itertools.pairwise(instants)
    )
    for o in upcoming:  # Friday 17:00 in Berlin, both partners at that one instant
        local = instants[upcoming.index(o)].astimezone(
            __import__("zoneinfo").ZoneInfo("Europe/Berlin")
        )
        assert (local.weekday(), local.hour, local.minute) == (4, 17, 0)
        assert o["scheduled_for"][sam] == o["scheduled_for"][alex]


async def test_local_delivery_has_one_occurrence_per_partner(infra, running) -> None:
    _, api = running
    couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    sam, alex = (p["id"] for p in couple["partners"])
    ritual = (
        await api.post(
            f"/v1/couples/{couple['id']}/rituals",
            json={
                "kind": "morning_kiss",
                "delivery": "local",
                "schedule": {
                    "rrule": "FREQ=DAILY;BYHOUR=7;BYMINUTE=30",
                    "start": "2026-11-22T00:00:00",
                },
            },
            headers=ADMIN,
        )
    ).json()
    upcoming = (
        await api.get(f"/v1/rituals/{ritual['id']}/upcoming?count=4", headers=ADMIN)
    ).json()["occurrences"]
    by_partner = {next(iter(o["scheduled_for"])): o for o in upcoming[:2]}
    assert set(by_partner) == {sam, alex}
    zones = {sam: "Europe/Berlin", alex: "America/New_York"}
    from zoneinfo import ZoneInfo

    for pid, o in by_partner.items():
        local = datetime.fromisoformat(o["scheduled_for"][pid]).astimezone(ZoneInfo(zones[pid]))
        assert (local.hour, local.minute) == (7, 30)
        assert o["occurrence_id"].endswith(f"/{pid}")


async def test_pause_stops_and_resume_continues_from_now(infra, running) -> None:
    scheduler, api = running
    couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    ritual = (
        await api.post(f"/v1/couples/{couple['id']}/rituals", json={"kind": "hug"}, headers=ADMIN)
    ).json()
    tracks = [ritual["id"]]
    assert (await scheduler.store.due_of(tracks))[0] is not None
    await api.patch(f"/v1/couples/{couple['id']}", json={"paused": True}, headers=ADMIN)
    assert await scheduler.store.due_of(tracks) == [None]
    assert (await api.get(f"/v1/rituals/{ritual['id']}/upcoming", headers=ADMIN)).json()[
        "occurrences"
    ] == []
    assert (await api.post(f"/v1/rituals/{ritual['id']}/trigger", headers=ADMIN)).status_code == 409
    await api.patch(f"/v1/couples/{couple['id']}", json={"paused": False}, headers=ADMIN)
    upcoming = (await api.get(f"/v1/rituals/{ritual['id']}/upcoming", headers=ADMIN)).json()[
        "occurrences"
    ]
    first = datetime.fromisoformat(next(iter(upcoming[0]["scheduled_for"].values())))
    assert datetime.now(UTC) < first <= datetime.now(UTC) + timedelta(days=1)


async def test_trigger_publishes_ritual_due_now(infra, running) -> None:
    _, api = running
    async with TopicReader(infra.settings(), RITUAL_DUE, RITUAL_DUE_URGENT) as reader:
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        ritual = (
            await api.post(
                f"/v1/couples/{couple['id']}/rituals",
                json={"kind": "evening_checkin"},
                headers=ADMIN,
            )
        ).json()
        answer = await api.post(
            f"/v1/rituals/{ritual['id']}/trigger",
            headers={"Authorization": f"Bearer {couple['token']}"},
        )
        assert answer.status_code == 202
        occurrence = answer.json()["occurrence_id"]
        records = await reader.until(lambda rs: any(r["occurrence_id"] == occurrence for r in rs))
        event = next(r for r in records if r["occurrence_id"] == occurrence)
        assert event["trigger"] == "manual" and event["couple_id"] == couple["id"]
        assert [r["name"] for r in event["recipients"]] == ["Sam", "Alex"]
        assert all(
            "s3cr3t" not in c["redacted"] for r in event["recipients"] for c in r["channels"]
        )
        assert reader.keys[records.index(event)] == couple["id"]


async def test_plugin_channels_are_accepted_only_when_the_plugin_is_loaded(
    module_infra, tmp_path
) -> None:
    from services.scheduler.service import Scheduler

    # Apprise keeps loaded plugins for the life of the process: a schema of this test's own.
    schema = f"tandemtest{uuid.uuid4().hex[:8]}"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / f"{schema}.py").write_text(
        "from apprise.decorators import notify\n\n"
        f"@notify(on={schema!r})\n"
        "def send(body, title, notify_type, meta, *args, **kwargs):\n"
        "    return True\n"
    )
    body = couple_body()
    body["partners"][0]["channels"] = [{"url": f"{schema}://somewhere/sam", "kind": "push"}]
    for plugins_dir, status in ((None, 422), (plugins, 201)):
        scheduler = Scheduler(module_infra.settings(plugins_dir=plugins_dir))
        transport = httpx.ASGITransport(app=scheduler.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as api:
            answer = await api.post("/v1/couples", json=body, headers=ADMIN)
        await scheduler.redis.aclose()
        assert answer.status_code == status, answer.text
