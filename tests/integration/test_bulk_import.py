"""Bulk import (``POST /v1/couples/import``) and ``tandem import``, over a real Redis and a
real broker: items checked as the single-couple path checks them, refused one by one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import uvicorn
from typer.testing import CliRunner

from services.scheduler.api import imports
from tandem.cli import app as cli
from tandem.embedded import free_port
from tests.support.infra import TEST_ADMIN_TOKEN
from tests.support.scheduler import ADMIN, couple_body


def _item(n: int) -> dict[str, Any]:
    body = couple_body(secret=f"tok-{n}")
    body["name"] = f"Couple {n}"
    body["rituals"] = [
        {"kind": "evening_checkin"},
        {
            "kind": "date_night",
            "schedule": {
                "rrule": "FREQ=WEEKLY;BYDAY=FR",
                "timezone": "Europe/Berlin",
                "start": "2026-01-02T19:00:00",
            },
        },
    ]
    return body


async def test_import_200_couples_one_bad_item_refused_alone(running) -> None:
    scheduler, api = running
    items = [_item(n) for n in range(200)]
    items[117]["partners"][1]["timezone"] = "Mars/Olympus"  # refused by the schema
    items[150]["rituals"][1]["deck"] = "no-such-deck"  # refused by the deck check
    answer = await api.post("/v1/couples/import", json={"couples": items}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert (got["created"], got["refused"]) == (198, 2)
    results = got["results"]
    assert [r["index"] for r in results] == list(range(200))
    bad = results[117]["errors"]
    assert [e["loc"] for e in bad] == [[117, "partners", 1, "timezone"]], bad
    assert results[150]["errors"][0]["loc"] == [150, "rituals", 1, "deck"]
    assert "id" not in results[117] and "id" not in results[150]

    created = [r for r in results if "id" in r]
    assert len({r["id"] for r in created}) == 198
    for r in (created[0], created[-1], created[100]):
        own = {"Authorization": f"Bearer {r['token']}"}
        couple = await api.get(f"/v1/couples/{r['id']}", headers=own)
        assert couple.status_code == 200, couple.text
        listed = (await api.get(f"/v1/couples/{r['id']}/rituals", headers=own)).json()
        assert sorted(x["kind"] for x in listed["rituals"]) == ["date_night", "evening_checkin"]
        for ritual in listed["rituals"]:
            upcoming = await api.get(f"/v1/rituals/{ritual['id']}/upcoming", headers=own)
            assert upcoming.status_code == 200 and upcoming.json()["occurrences"], upcoming.text
    # nothing of a refused item was written (all-or-nothing per item)
    stored = [
        key.split("{", 1)[1].split("}", 1)[0]
        async for key in scheduler.redis.scan_iter(match="*:{cpl_*}:c")  # the couples
    ]
    names = {c.name for c in (await scheduler.store.get_couples(stored)).values()}
    assert {"Couple 0", "Couple 199"} <= names
    assert not names & {"Couple 117", "Couple 150"}


async def test_import_checks_like_the_single_path(running) -> None:
    _, api = running
    local = _item(0)
    local["partners"][0]["channels"] = [{"url": "json://127.0.0.1:6379/x", "kind": "push"}]
    too_many = _item(1)
    too_many["partners"][0]["channels"] *= 6  # over TANDEM_MAX_CHANNELS_PER_PARTNER (5)
    bad_rule = _item(2)
    bad_rule["rituals"][1]["schedule"]["rrule"] = "FREQ=SOMETIMES"
    items: list[Any] = [local, too_many, bad_rule, "not an object", {**_item(3), "extra": 1}]
    items.append(json.loads(json.dumps(bad_rule)))  # a schedule seen before: refused again
    got = (await api.post("/v1/couples/import", json={"couples": items}, headers=ADMIN)).json()
    assert got["created"] == 0
    locs = [r["errors"][0]["loc"] for r in got["results"]]
    assert locs[0] == [0, "partners", 0, "channels", 0, "url"]
    assert locs[1] == [1, "partners", 0, "channels"]
    assert locs[2][:4] == [2, "rituals", 1, "schedule"]
    assert locs[3] == [3]
    assert locs[4] == [4, "extra"]
    assert locs[5] == [5, *locs[2][1:]]
    # the single path refuses the same channel with the same field
    single = await api.post(
        "/v1/couples", json={k: v for k, v in local.items() if k != "rituals"}, headers=ADMIN
    )
    assert single.status_code == 422
    assert single.json()["detail"][0]["loc"] == ["body", "partners", 0, "channels", 0, "url"]


async def test_import_is_admin_only_and_bounded(running) -> None:
    _, api = running
    one = (await api.post("/v1/couples/import", json={"couples": [_item(0)]}, headers=ADMIN)).json()
    own = {"Authorization": f"Bearer {one['results'][0]['token']}"}
    refused = await api.post("/v1/couples/import", json={"couples": [_item(1)]}, headers=own)
    assert refused.status_code == 403
    over: dict[str, Any] = {"couples": [{}] * 1001}
    assert (await api.post("/v1/couples/import", json=over, headers=ADMIN)).status_code == 422
    # the larger body limit is this route's alone
    big = b"x" * (imports.MAX_BODY_BYTES + 1)
    assert (await api.post("/v1/couples/import", content=big, headers=ADMIN)).status_code == 413
    assert (await api.post("/v1/couples", content=b"x" * 70_000, headers=ADMIN)).status_code == 413


async def test_tandem_import_command(running, tmp_path: Path) -> None:
    scheduler, _ = running
    lines = [json.dumps(_item(n)) for n in range(30)]
    lines[12] = json.dumps({"name": "No Partners"})  # line 13
    lines.insert(20, "")  # a blank line is skipped (its number still counts)
    lines.insert(25, "{not json")  # line 26
    path = tmp_path / "couples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(scheduler.app, host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 -- uvicorn offers no event to await
            await asyncio.sleep(0.05)
        args = ["import", str(path), "--chunk", "7", "--url", f"http://127.0.0.1:{port}"]
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, [*args, "--token", TEST_ADMIN_TOKEN]
        )
    finally:
        server.should_exit = True
        await serving
    assert result.exit_code == 1, result.output  # some were refused
    assert "created 29, refused 2" in result.output, result.output
    assert "line 13: partners: Field required" in result.output, result.output
    assert "line 26: not JSON" in result.output, result.output


async def test_tandem_import_spreads_its_requests_over_replicas(running, tmp_path: Path) -> None:
    # Two listeners in front of one scheduler stand for two replicas (the API is stateless);
    # each counts the import requests it was sent.
    scheduler, _ = running
    lines = [json.dumps(_item(n)) for n in range(40)]
    lines[16] = json.dumps({"name": "No Partners"})  # line 17, in the fourth request
    path = tmp_path / "couples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    seen = {"a": 0, "b": 0}

    def replica(name: str) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"] == imports.PATH:
                seen[name] += 1
            await scheduler.app(scope, receive, send)

        return app

    ports = {name: free_port() for name in seen}
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                replica(n), host="127.0.0.1", port=p, log_level="warning", lifespan="off"
            )
        )
        for n, p in ports.items()
    ]
    serving = [asyncio.create_task(s.serve()) for s in servers]
    try:
        while not all(s.started for s in servers):  # noqa: ASYNC110 -- no event to await
            await asyncio.sleep(0.05)
        urls = [a for p in ports.values() for a in ("--url", f"http://127.0.0.1:{p}")]
        args = ["import", str(path), "--chunk", "5", "--parallel", "4", *urls]
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, [*args, "--token", TEST_ADMIN_TOKEN]
        )
    finally:
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*serving)
    assert "created 39, refused 1" in result.output, result.output
    assert "line 17: partners: Field required" in result.output, result.output
    assert result.exit_code == 1
    assert seen == {"a": 4, "b": 4}  # eight requests of five, in turn


async def test_imported_rituals_fire_when_the_single_path_would(running) -> None:
    """Schedules checked and planned once per import (shared by every couple with the
    same schedule and zones) give each couple what the single routes give it."""
    _, api = running
    items = [_item(n) for n in range(3)]
    got = (await api.post("/v1/couples/import", json={"couples": items}, headers=ADMIN)).json()
    assert got["created"] == 3, got

    async def upcoming(couple_id: str, token: str) -> list[tuple[str, list[str], str]]:
        own = {"Authorization": f"Bearer {token}"}
        listed = (await api.get(f"/v1/couples/{couple_id}/rituals", headers=own)).json()
        found = []
        for ritual in sorted(listed["rituals"], key=lambda r: r["kind"]):
            url = f"/v1/rituals/{ritual['id']}/upcoming?count=3"
            for o in (await api.get(url, headers=own)).json()["occurrences"]:
                found.append((ritual["kind"], sorted(o["scheduled_for"].values()), o["wall_time"]))
        return found

    single = _item(9)
    rituals = single.pop("rituals")
    made = (await api.post("/v1/couples", json=single, headers=ADMIN)).json()
    for body in rituals:
        answer = await api.post(f"/v1/couples/{made['id']}/rituals", json=body, headers=ADMIN)
        assert answer.status_code == 201, answer.text
    expected = await upcoming(made["id"], made["token"])
    assert len(expected) == 6
    for result in got["results"]:
        assert await upcoming(result["id"], result["token"]) == expected
