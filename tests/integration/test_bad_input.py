"""Hostile and careless input against a running scheduler (real Redis, real broker).

Every row of :data:`CASES` must be answered with a 4xx (never a 5xx), with a ``detail`` that
names the field or says why, and must leave Redis holding exactly the keys it held before
(``SCAN`` under the test's prefix). The counts are printed with the results.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from services.scheduler.api.errors import MAX_BODY_BYTES
from services.scheduler.api.schemas import DATE_WINDOW
from shared.ids import new_id
from tests.support.scheduler import ADMIN, couple_body, running_scheduler


@pytest.fixture
def infra(module_infra):
    return module_infra


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    """Two couples, each with a ritual and a goal: ``a`` calls, ``b`` is someone else's."""

    a: dict[str, Any]
    b: dict[str, Any]
    ra: str
    rb: str
    ga: str
    gb: str

    def headers(self, who: str) -> dict[str, str]:
        return {"admin": ADMIN, "a": bearer(self.a["token"]), "b": bearer(self.b["token"])}.get(
            who, {}
        )

    def fill(self, text: str) -> str:
        return text.format(
            a=self.a["id"], b=self.b["id"], ra=self.ra, rb=self.rb, ga=self.ga, gb=self.gb
        )


async def make_world(api: httpx.AsyncClient) -> World:
    couples = []
    for _ in range(2):
        made = await api.post("/v1/couples", json=couple_body(), headers=ADMIN)
        assert made.status_code == 201, made.text
        couples.append(made.json())
    rituals, goals = [], []
    for c in couples:
        url = f"/v1/couples/{c['id']}"
        ritual = await api.post(f"{url}/rituals", json={"kind": "hug"}, headers=ADMIN)
        goal = await api.post(f"{url}/goals", json={"text": "Walk more"}, headers=ADMIN)
        assert ritual.status_code == 201 and goal.status_code == 201
        rituals.append(ritual.json()["id"])
        goals.append(goal.json()["id"])
    return World(couples[0], couples[1], *rituals, *goals)


# -- the table -------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    method: str
    path: str  # may name {a}, {b} (couples), {ra}, {rb} (rituals), {ga}, {gb} (goals)
    body: Any = None  # JSON, or bytes sent as they are
    who: str = "admin"  # "admin", "a" (the caller couple), "b", "none", or a raw token
    expect: str = ""  # a word of the field the 422 names, or of the reason
    status: tuple[int, ...] = (422,)
    headers: dict[str, str] = field(default_factory=dict)


def couple_with(**changes: Any) -> dict[str, Any]:
    """A valid couple body changed at "name", "p0.<field>", "p1.<field>" or "channel"."""
    body = couple_body(quiet_hours={"start": "23:00", "end": "07:00"})
    for where, value in changes.items():
        if where == "name":
            body["name"] = value
        elif where[:1] == "p" and where[1:2].isdigit():
            index, _, key = where.partition("_")
            body["partners"][int(index[1:])][key] = value
        else:
            body[where] = value
    return body


def quiet(start: Any, end: Any = "07:00") -> dict[str, Any]:
    return couple_with(p1_quiet_hours={"start": start, "end": end})


def ritual(**fields: Any) -> dict[str, Any]:
    return {"kind": "evening_checkin", **fields}


def schedule(**fields: Any) -> dict[str, Any]:
    return ritual(
        schedule={
            "rrule": "FREQ=DAILY",
            "timezone": "Europe/Berlin",
            "start": "2026-12-01T07:00:00",
            **fields,
        }
    )


low, high = DATE_WINDOW
CHANNEL = {"url": "json://127.0.0.1:9/hook", "kind": "push"}
COUPLES, RITUALS = "/v1/couples", "/v1/couples/{a}/rituals"
OCC = "/v1/occurrences/{rb}@20260101T070000Z/ack"
FORGED_FEED = "/v1/couples/{b}/calendar.ics?feed=" + "0" * 32

CASES: list[Case] = [
    # time zones: IANA names only
    Case(
        "zone localtime", "POST", COUPLES, couple_with(p0_timezone="localtime"), expect="timezone"
    ),
    Case("zone Factory", "POST", COUPLES, couple_with(p0_timezone="Factory"), expect="timezone"),
    Case(
        "zone path", "POST", COUPLES, couple_with(p0_timezone="../../etc/passwd"), expect="timezone"
    ),
    Case(
        "zone abs path",
        "POST",
        COUPLES,
        couple_with(p1_timezone="/etc/localtime"),
        expect="timezone",
    ),
    Case(
        "zone over-long",
        "POST",
        COUPLES,
        couple_with(p0_timezone="Europe/Berlin" * 50),
        expect="timezone",
    ),
    Case("zone empty", "POST", COUPLES, couple_with(p0_timezone=""), expect="timezone"),
    Case("zone padded", "POST", COUPLES, couple_with(p0_timezone=" UTC "), expect="timezone"),
    Case("zone null", "POST", COUPLES, couple_with(p0_timezone=None), expect="timezone"),
    Case("zone number", "POST", COUPLES, couple_with(p0_timezone=5), expect="timezone"),
    Case("schedule zone posix", "POST", RITUALS, schedule(timezone="EST+5"), expect="timezone"),
    # quiet hours: naive HH:MM
    Case("quiet with offset", "POST", COUPLES, quiet("23:00+05:00"), expect="start"),
    Case("quiet with Z", "POST", COUPLES, quiet("22:00", "07:00Z"), expect="end"),
    Case("quiet with seconds", "POST", COUPLES, quiet("23:00:00"), expect="start"),
    Case("quiet 24:00", "POST", COUPLES, quiet("24:00"), expect="start"),
    Case("quiet 7:00", "POST", COUPLES, quiet("7:00"), expect="start"),
    Case("quiet number", "POST", COUPLES, quiet(2300), expect="start"),
    Case("quiet am/pm", "POST", COUPLES, quiet("11:00 PM"), expect="start"),
    # dates inside DATE_WINDOW
    Case("start year 1", "POST", RITUALS, schedule(start="0001-01-01T00:00:00"), expect="start"),
    Case("start year 9999", "POST", RITUALS, schedule(start="9999-12-31T23:59:59"), expect="start"),
    Case("start 1999", "POST", RITUALS, schedule(start="1999-12-31T23:59:59"), expect="start"),
    Case(
        "at year 9999",
        "POST",
        RITUALS,
        ritual(schedule={"at": "9999-12-31T23:59:59Z"}),
        expect="at",
    ),
    Case(
        "at year 1 with offset",
        "POST",
        RITUALS,
        ritual(schedule={"at": "0001-01-01T00:00:00+05:00"}),
        expect="at",
    ),
    Case("at 2101", "POST", RITUALS, ritual(schedule={"at": "2101-01-01T00:00:00Z"}), expect="at"),
    Case(
        "until 9999",
        "POST",
        RITUALS,
        schedule(rrule="FREQ=DAILY;UNTIL=99991231T235959"),
        expect="rrule",
    ),
    Case(
        "exdate 1900", "POST", RITUALS, schedule(exdates=["1900-01-01T07:00:00"]), expect="exdates"
    ),
    Case(
        "exdates huge",
        "POST",
        RITUALS,
        schedule(exdates=["2027-01-01T07:00:00"] * 501),
        expect="exdates",
    ),
    Case(
        "goal year 1",
        "POST",
        "/v1/couples/{a}/goals",
        {"text": "x", "quarter": "0001-Q1"},
        expect="quarter",
    ),
    Case(
        "goal year 9999",
        "POST",
        "/v1/couples/{a}/goals",
        {"text": "x", "quarter": "9999-Q4"},
        expect="quarter",
    ),
    Case(
        "goal Q5",
        "POST",
        "/v1/couples/{a}/goals",
        {"text": "x", "quarter": "2026-Q5"},
        expect="quarter",
    ),
    # no null for what cannot be null
    Case("patch couple name null", "PATCH", "/v1/couples/{a}", {"name": None}, "a", "name"),
    Case("patch couple paused null", "PATCH", "/v1/couples/{a}", {"paused": None}, "a", "paused"),
    Case(
        "patch couple transition null",
        "PATCH",
        "/v1/couples/{a}",
        {"transition_mode": None},
        "a",
        "transition_mode",
    ),
    Case("patch ritual title null", "PATCH", "/v1/rituals/{ra}", {"title": None}, "a", "title"),
    Case(
        "patch ritual delivery null",
        "PATCH",
        "/v1/rituals/{ra}",
        {"delivery": None},
        "a",
        "delivery",
    ),
    Case(
        "patch ritual schedule null",
        "PATCH",
        "/v1/rituals/{ra}",
        {"schedule": None},
        "a",
        "schedule",
    ),
    Case(
        "patch ritual celebrate null",
        "PATCH",
        "/v1/rituals/{ra}",
        {"celebrate": None},
        "a",
        "celebrate",
    ),
    Case(
        "patch ritual policy null",
        "PATCH",
        "/v1/rituals/{ra}",
        {"quiet_hours_policy": None},
        "a",
        "quiet_hours_policy",
    ),
    Case("ritual kind null", "POST", RITUALS, {"kind": None}, expect="kind"),
    # decks that exist and suit the kind
    Case(
        "unknown deck",
        "POST",
        RITUALS,
        ritual(deck="no-such-deck"),
        expect="evening-highs-and-lows",
    ),
    Case("deck path", "POST", RITUALS, ritual(deck="../../etc/passwd"), expect="deck"),
    Case("deck of another kind", "POST", RITUALS, ritual(deck="date-night-ideas"), expect="deck"),
    Case(
        "deck for the summary",
        "POST",
        RITUALS,
        {"kind": "weekly_summary", "deck": "weekly-questions"},
        expect="deck",
    ),
    Case("patch unknown deck", "PATCH", "/v1/rituals/{ra}", {"deck": "nope"}, "a", "deck"),
    # printable names and titles
    Case("name RLO", "POST", COUPLES, couple_with(name="Sam \u202eXELA"), expect="name"),
    Case(
        "name LRI isolate", "POST", COUPLES, couple_with(p0_name="\u2066Sam\u2069"), expect="name"
    ),
    Case("name newline", "POST", COUPLES, couple_with(name="Sam\r\nBEGIN:VEVENT"), expect="name"),
    Case("name NUL", "POST", COUPLES, couple_with(p1_name="Al\x00ex"), expect="name"),
    Case("name bell", "POST", COUPLES, couple_with(name="\x07Sam & Alex"), expect="name"),
    Case("name zero-width space", "POST", COUPLES, couple_with(name="Sam\u200b"), expect="name"),
    Case("name BOM", "POST", COUPLES, couple_with(name="\ufeffSam"), expect="name"),
    Case("name lone ZWJ", "POST", COUPLES, couple_with(p0_name="\u200dSam"), expect="name"),
    Case("name ZWJ run", "POST", COUPLES, couple_with(p0_name="S\u200d\u200dam"), expect="name"),
    Case("name line separator", "POST", COUPLES, couple_with(name="Sam\u2028Alex"), expect="name"),
    Case("name blank", "POST", COUPLES, couple_with(name="    "), expect="name"),
    Case("name empty", "POST", COUPLES, couple_with(name=""), expect="name"),
    Case("name too long", "POST", COUPLES, couple_with(p0_name="S" * 41), expect="name"),
    Case("name a number", "POST", COUPLES, couple_with(name=42), expect="name"),
    Case("name a list", "POST", COUPLES, couple_with(name=["Sam", "Alex"]), expect="name"),
    Case(
        "name lone surrogate",
        "POST",
        COUPLES,
        json.dumps(couple_with(name="SURROGATE")).replace("SURROGATE", "\\ud800").encode(),
        expect="name",
    ),
    Case("title RLO", "POST", RITUALS, ritual(title="\u202etxet"), expect="title"),
    Case("title tab", "PATCH", "/v1/rituals/{ra}", {"title": "a\tb"}, "a", "title"),
    Case("patch name PDF", "PATCH", "/v1/couples/{a}", {"name": "x\u202c"}, "a", "name"),
    Case("goal bell", "POST", "/v1/couples/{a}/goals", {"text": "\x07ding"}, "a", "text"),
    Case("goal blank", "POST", "/v1/couples/{a}/goals", {"text": " "}, "a", "text"),
    # wrong types, wrong shapes, huge lists, stray fields
    Case(
        "partners three",
        "POST",
        COUPLES,
        couple_with(partners=[couple_body()["partners"][0]] * 3),
        expect="partners",
    ),
    Case("partners huge", "POST", COUPLES, couple_with(partners=[{}] * 5000), expect="partners"),
    Case(
        "channels over cap",
        "POST",
        COUPLES,
        couple_with(p0_channels=[CHANNEL] * 6),
        expect="channels",
    ),
    Case(
        "channels huge",
        "POST",
        COUPLES,
        couple_with(p0_channels=[CHANNEL] * 1000),
        expect="channels",
    ),
    Case(
        "channel redis-ish",
        "POST",
        COUPLES,
        couple_with(p0_channels=[{"url": "*\r\nFLUSHALL\r\n", "kind": "push"}]),
        expect="url",
    ),
    Case("stray field", "POST", COUPLES, couple_with(admin=True), expect="admin"),
    Case("body an array", "POST", COUPLES, [1, 2, 3], expect="body"),
    Case("body null", "POST", COUPLES, b"null", expect="body"),
    Case("body not JSON", "POST", COUPLES, b"{'name': 'x'", expect="body"),
    Case("kind injection", "POST", RITUALS, {"kind": "hug; DROP TABLE rituals"}, expect="kind"),
    Case(
        "rrule injection", "POST", RITUALS, schedule(rrule="FREQ=DAILY\r\nFLUSHALL"), expect="rrule"
    ),
    Case("grace negative", "POST", RITUALS, schedule(grace_seconds=-1), expect="grace_seconds"),
    Case(
        "grace NaN",
        "POST",
        RITUALS,
        b'{"kind": "hug", "schedule": {"grace_seconds": NaN}}',
        expect="grace_seconds",
    ),
    Case(
        "at without offset",
        "POST",
        RITUALS,
        ritual(schedule={"at": "2030-01-01T07:00:00"}),
        expect="at",
    ),
    Case(
        "grace infinite",
        "POST",
        RITUALS,
        b'{"kind": "hug", "schedule": {"grace_seconds": Infinity}}',
        expect="finite",
    ),
    Case(
        "snooze minutes 1e999",
        "POST",
        "/v1/occurrences/{ra}@20260101T070000Z/ack",
        b'{"action": "snooze", "minutes": 1e999}',
        "a",
        "minutes",
    ),
    Case(
        "deep nesting",
        "POST",
        COUPLES,
        b"[" * 30_000 + b"]" * 30_000,
        expect="parsing the body",
        status=(400, 422),
    ),
    Case("celebrate a word", "POST", RITUALS, ritual(celebrate="maybe"), expect="celebrate"),
    Case("paused a word", "PATCH", "/v1/couples/{a}", {"paused": "maybe"}, "a", "paused"),
    Case(
        "ack partner injection",
        "POST",
        "/v1/occurrences/{ra}@20260101T070000Z/ack",
        {"action": "done", "partner_id": "prt_*"},
        "a",
        "partner_id",
    ),
    Case(
        "nudges limit huge", "GET", "/v1/couples/{a}/nudges?limit=100000", who="a", expect="limit"
    ),
    Case(
        "upcoming count negative",
        "GET",
        "/v1/rituals/{ra}/upcoming?count=-1",
        who="a",
        expect="count",
    ),
    # ids in paths: an unknown shape is a plain 404
    Case("couple id glob", "GET", "/v1/couples/cpl_*", expect="couple not found", status=(404,)),
    Case(
        "couple id colon", "GET", "/v1/couples/{a}:token", expect="couple not found", status=(404,)
    ),
    Case("couple id short", "GET", "/v1/couples/cpl_123", expect="couple not found", status=(404,)),
    Case(
        "couple id upper",
        "GET",
        "/v1/couples/CPL_0123456789AB",
        expect="couple not found",
        status=(404,),
    ),
    Case(
        "couple id space",
        "GET",
        "/v1/couples/cpl_0123%2045678ab",
        expect="couple not found",
        status=(404,),
    ),
    Case(
        "couple id unicode",
        "GET",
        "/v1/couples/cpl_%E2%98%83%E2%98%83",
        expect="couple not found",
        status=(404,),
    ),
    Case(
        "couple id traversal",
        "GET",
        "/v1/couples/..%2F..%2Fsched",
        expect="not found",
        status=(404,),
    ),
    Case(
        "couple id null byte",
        "PATCH",
        "/v1/couples/cpl_%00",
        {"name": "x"},
        expect="couple not found",
        status=(404,),
    ),
    Case("ritual id glob", "DELETE", "/v1/rituals/rit_*", expect="ritual not found", status=(404,)),
    Case(
        "ritual id key",
        "GET",
        "/v1/rituals/{ra}:x/upcoming",
        expect="ritual not found",
        status=(404,),
    ),
    Case(
        "trigger id glob",
        "POST",
        "/v1/rituals/rit_%3F%3F%3F/trigger",
        expect="ritual not found",
        status=(404,),
    ),
    Case(
        "goal id glob",
        "DELETE",
        "/v1/couples/{a}/goals/gol_*",
        expect="goal not found",
        status=(404,),
    ),
    Case(
        "goal id key",
        "DELETE",
        "/v1/couples/{a}/goals/{ga}:x",
        expect="goal not found",
        status=(404,),
    ),
    Case(
        "occurrence glob",
        "POST",
        "/v1/occurrences/rit_*@*/ack",
        {"action": "done"},
        expect="occurrence not found",
        status=(404,),
    ),
    Case(
        "occurrence traversal",
        "POST",
        "/v1/occurrences/../../sched/ack",
        {"action": "done"},
        expect="not found",
        status=(404,),
    ),
    Case(
        "occurrence partner glob",
        "POST",
        "/v1/occurrences/{ra}@20260101T070000Z/prt_*/ack",
        {"action": "done"},
        expect="occurrence not found",
        status=(404,),
    ),
    Case(
        "calendar id glob",
        "GET",
        "/v1/couples/cpl_*/calendar.ics",
        expect="couple not found",
        status=(404,),
    ),
    # another couple's things look exactly like nothing
    Case(
        "other couple", "GET", "/v1/couples/{b}", who="a", expect="couple not found", status=(404,)
    ),
    Case(
        "other couple patch",
        "PATCH",
        "/v1/couples/{b}",
        {"paused": True},
        "a",
        "couple not found",
        (404,),
    ),
    Case(
        "other ritual", "GET", "/v1/rituals/{rb}", who="a", expect="ritual not found", status=(404,)
    ),
    Case(
        "other ritual patch",
        "PATCH",
        "/v1/rituals/{rb}",
        {"title": "Mine"},
        "a",
        "ritual not found",
        (404,),
    ),
    Case(
        "other ritual trigger",
        "POST",
        "/v1/rituals/{rb}/trigger",
        who="a",
        expect="ritual not found",
        status=(404,),
    ),
    Case(
        "other ritual delete",
        "DELETE",
        "/v1/rituals/{rb}",
        who="a",
        expect="ritual not found",
        status=(404,),
    ),
    Case(
        "other goal",
        "DELETE",
        "/v1/couples/{a}/goals/{gb}",
        who="a",
        expect="goal not found",
        status=(404,),
    ),
    Case(
        "other couple goals",
        "POST",
        "/v1/couples/{b}/goals",
        {"text": "Mine"},
        "a",
        "couple not found",
        (404,),
    ),
    Case("other occurrence", "POST", OCC, {"action": "done"}, "a", "occurrence not found", (404,)),
    Case(
        "other calendar",
        "GET",
        "/v1/couples/{b}/calendar.ics",
        who="a",
        expect="couple not found",
        status=(404,),
    ),
    Case(
        "other nudges",
        "GET",
        "/v1/couples/{b}/nudges",
        who="a",
        expect="couple not found",
        status=(404,),
    ),
    Case(
        "forged feed",
        "GET",
        FORGED_FEED,
        who="none",
        expect="feed",
        status=(401,),
    ),
    # credentials and size
    Case("no token", "POST", COUPLES, couple_body(), who="none", expect="token", status=(401,)),
    Case(
        "unknown token",
        "POST",
        COUPLES,
        couple_body(),
        who="ct_nope",
        expect="token",
        status=(401,),
    ),
    Case(
        "couple token creates",
        "POST",
        COUPLES,
        couple_body(),
        who="a",
        expect="admin",
        status=(403,),
    ),
    Case(
        "body over limit",
        "POST",
        COUPLES,
        b"x" * (MAX_BODY_BYTES + 1),
        expect="body",
        status=(413,),
    ),
]


def _mentions(detail: Any, word: str) -> bool:
    """Whether the answer's ``detail`` names ``word`` (a field of a loc, or in a reason)."""
    if isinstance(detail, str):
        return word.lower() in detail.lower()
    if isinstance(detail, list):
        return any(
            word in [str(x) for x in d.get("loc", [])] or word.lower() in d.get("msg", "").lower()
            for d in detail
        ) and all(d.get("msg") for d in detail)
    return False


async def _keys(redis: Any, prefix: str) -> set[str]:
    return {k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)}


async def _send(api: httpx.AsyncClient, world: World, case: Case) -> httpx.Response:
    headers = {**world.headers(case.who), **case.headers}
    if case.who not in ("admin", "a", "b", "none"):
        headers = bearer(case.who)
    kwargs: dict[str, Any] = {"headers": headers}
    if isinstance(case.body, bytes):
        kwargs["content"] = case.body
        kwargs["headers"] = {**headers, "content-type": "application/json"}
    elif case.body is not None:
        kwargs["json"] = case.body
    return await api.request(case.method, world.fill(case.path), **kwargs)


async def test_bad_input_is_4xx_with_a_reason_and_changes_no_key(infra, running, capsys) -> None:
    scheduler, api = running
    world = await make_world(api)
    # Each caller's rate-limit counter exists from its first request on: make them now, so
    # that "the same keys" below is exact.
    for who in ("admin", "a", "b", "none", "ct_nope"):
        headers = bearer(who) if who.startswith("ct_") else world.headers(who)
        await api.get(f"/v1/couples/{world.a['id']}", headers=headers)
    await api.get(world.fill(FORGED_FEED))  # a feed's credential is counted too
    assert len(CASES) >= 40
    tried = with_reason = unchanged = 0
    failures: list[str] = []
    for case in CASES:
        before = await _keys(scheduler.redis, infra.prefix)
        answer = await _send(api, world, case)
        after = await _keys(scheduler.redis, infra.prefix)
        tried += 1
        try:
            detail = answer.json().get("detail")
        except ValueError:
            detail = None
        good_status = answer.status_code in case.status and 400 <= answer.status_code < 500
        if good_status and _mentions(detail, case.expect):
            with_reason += 1
        else:
            failures.append(f"{case.name}: {answer.status_code} {answer.text[:300]}")
        if before == after:
            unchanged += 1
        else:
            failures.append(f"{case.name}: keys changed: +{after - before} -{before - after}")
    with capsys.disabled():
        print(
            f"\nbad input: {tried} tried, {with_reason} answered 4xx with a reason, "
            f"{unchanged} left the keys unchanged"
        )
    assert not failures, "\n".join(failures)
    assert tried == with_reason == unchanged == len(CASES)


async def test_another_couples_ids_answer_exactly_like_missing_ones(infra, running) -> None:
    """No ownership oracle: for every lookup by id, another couple's id and an id of no
    thing get the same status and the same body."""
    _, api = running
    world = await make_world(api)
    a = world.headers("a")
    nobody = {
        "b": new_id("cpl"),
        "rb": new_id("rit"),
        "gb": new_id("gol"),
    }
    lookups = [
        ("GET", "/v1/couples/{b}", None),
        ("PATCH", "/v1/couples/{b}", {"paused": True}),
        ("DELETE", "/v1/couples/{b}", None),
        ("GET", "/v1/couples/{b}/rituals", None),
        ("POST", "/v1/couples/{b}/rituals", {"kind": "hug"}),
        ("GET", "/v1/couples/{b}/goals", None),
        ("POST", "/v1/couples/{b}/goals", {"text": "x"}),
        ("DELETE", "/v1/couples/{a}/goals/{gb}", None),
        ("DELETE", "/v1/couples/{b}/goals/{gb}", None),
        ("GET", "/v1/couples/{b}/nudges", None),
        ("GET", "/v1/couples/{b}/calendar.ics", None),
        ("GET", "/v1/rituals/{rb}", None),
        ("PATCH", "/v1/rituals/{rb}", {"title": "x"}),
        ("DELETE", "/v1/rituals/{rb}", None),
        ("GET", "/v1/rituals/{rb}/upcoming", None),
        ("POST", "/v1/rituals/{rb}/trigger", None),
        ("POST", "/v1/occurrences/{rb}@20260101T070000Z/ack", {"action": "done"}),
        ("POST", "/v1/occurrences/{rb}@20260101T070000Z/{pb}/ack", {"action": "done"}),
    ]
    pb = world.b["partners"][0]["id"]
    for method, path, body in lookups:
        theirs = path.format(a=world.a["id"], b=world.b["id"], rb=world.rb, gb=world.gb, pb=pb)
        missing = path.format(a=world.a["id"], pb=new_id("prt"), **nobody)
        got = [
            await api.request(method, p, headers=a, **({"json": body} if body else {}))
            for p in (theirs, missing)
        ]
        assert got[0].status_code == got[1].status_code == 404, (path, got[0].text)
        assert got[0].json() == got[1].json(), (path, got[0].text, got[1].text)
    # and nothing of b's changed
    assert (await api.get(f"/v1/couples/{world.b['id']}", headers=ADMIN)).json()["paused"] is False
    assert (await api.get(f"/v1/rituals/{world.rb}", headers=ADMIN)).status_code == 200


async def test_valid_input_still_passes(infra, running) -> None:
    """What the rules must not refuse: trimmed names, emoji sequences, UTC and Etc zones,
    quiet hours across midnight, nullable PATCH fields, dates at the window's edges."""
    _, api = running
    body = couple_with(name="  Sam & Alex 👩\u200d❤\ufe0f\u200d👨  ", p0_timezone="UTC")
    body["partners"][1]["timezone"] = "Etc/GMT+5"
    made = await api.post("/v1/couples", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    couple = made.json()
    assert couple["name"] == "Sam & Alex 👩\u200d❤\ufe0f\u200d👨"
    assert couple["partners"][1]["quiet_hours"] == {"start": "23:00:00", "end": "07:00:00"}
    url = f"/v1/couples/{couple['id']}/rituals"
    edge = {"rrule": "FREQ=YEARLY", "timezone": "UTC", "start": f"{low:%Y-%m-%dT%H:%M:%S}"}
    made = await api.post(url, json={"kind": "custom", "schedule": edge}, headers=ADMIN)
    assert made.status_code == 201, made.text
    one_off = {"at": f"{high:%Y-%m-%dT%H:%M:%S}Z"}
    made = await api.post(url, json={"kind": "custom", "schedule": one_off}, headers=ADMIN)
    assert made.status_code == 201, made.text
    date_night = await api.post(
        url, json={"kind": "date_night", "deck": "date-night-ideas"}, headers=ADMIN
    )
    assert date_night.status_code == 201, date_night.text
    patched = await api.patch(
        f"/v1/rituals/{date_night.json()['id']}",
        json={"rotation": None, "deck": None},
        headers=ADMIN,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["rotation"] is None and patched.json()["deck"] is None
    unchanged = await api.patch(f"/v1/couples/{couple['id']}", json={}, headers=ADMIN)
    assert unchanged.status_code == 200 and unchanged.json()["name"] == couple["name"]


# -- bodies over the limit, over a real socket -------------------------------------------------
@pytest.fixture
async def served(running) -> AsyncIterator[str]:
    """The running scheduler's app behind uvicorn, on a socket already listening (so a
    client may connect at once)."""
    scheduler, _ = running
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(scheduler.app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def _chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    while total > 0:
        yield b" " * min(size, total)
        total -= size


async def _raw_chunked(base: str, path: str, chunks: Iterator[bytes]) -> tuple[int, bytes]:
    """POST ``chunks`` with ``Transfer-Encoding: chunked`` over a plain socket; the status
    and body of the answer."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {ADMIN['Authorization']}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode())
    try:
        for chunk in chunks:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except ConnectionError:
        pass  # the server answered and closed before the whole body was sent
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def test_chunked_bodies_over_the_limit_get_413_over_a_real_socket(
    infra, running, served
) -> None:
    scheduler, _ = running
    before = await _keys(scheduler.redis, infra.prefix)
    status, body = await _raw_chunked(served, "/v1/couples", _chunks(MAX_BODY_BYTES + 10_000))
    assert status == 413
    assert json.loads(body)["detail"][0]["type"] == "too_large"

    async def stream() -> AsyncIterator[bytes]:
        for chunk in _chunks(5 * MAX_BODY_BYTES):
            yield chunk

    async with httpx.AsyncClient(base_url=served) as http:
        answer = await http.post("/v1/couples", content=stream(), headers=ADMIN)
        assert answer.request.headers["transfer-encoding"] == "chunked"
        assert answer.status_code == 413, answer.text
        assert answer.json()["detail"][0]["loc"] == ["body"]
        assert await _keys(scheduler.redis, infra.prefix) == before

        # a chunked body within the limit is read whole and works as before
        valid = json.dumps(couple_body()).encode()

        async def small() -> AsyncIterator[bytes]:
            for i in range(0, len(valid), 100):
                yield valid[i : i + 100]

        as_json = {**ADMIN, "content-type": "application/json"}
        made = await http.post("/v1/couples", content=small(), headers=as_json)
        assert made.request.headers["transfer-encoding"] == "chunked"
        assert made.status_code == 201, made.text


# -- caps and rate limits --------------------------------------------------------------------
async def test_caps_per_couple_and_partner(module_infra) -> None:
    settings = module_infra.settings(
        redis_prefix=f"t{uuid.uuid4().hex[:8]}",
        max_rituals_per_couple=2,
        max_goals_per_couple=1,
        max_channels_per_partner=1,
    )
    async with running_scheduler(settings) as (_, api):
        two = couple_body()
        two["partners"][0]["channels"] *= 2
        refused = await api.post("/v1/couples", json=two, headers=ADMIN)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "partners", 0, "channels"]
        assert "at most 1 channels" in refused.json()["detail"][0]["msg"]
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        url = f"/v1/couples/{couple['id']}"
        for kind in ("hug", "date_night"):
            made = await api.post(f"{url}/rituals", json={"kind": kind}, headers=ADMIN)
            assert made.status_code == 201
        third = await api.post(f"{url}/rituals", json={"kind": "hug"}, headers=ADMIN)
        assert third.status_code == 409 and "at most 2 rituals" in third.json()["detail"]
        assert len((await api.get(f"{url}/rituals", headers=ADMIN)).json()["rituals"]) == 2
        goal = await api.post(f"{url}/goals", json={"text": "one"}, headers=ADMIN)
        assert goal.status_code == 201
        second = await api.post(f"{url}/goals", json={"text": "two"}, headers=ADMIN)
        assert second.status_code == 409 and "at most 1 goals" in second.json()["detail"]
        # room again once one is deleted
        assert (await api.delete(f"{url}/goals/{goal.json()['id']}", headers=ADMIN)).is_success
        assert (await api.post(f"{url}/goals", json={"text": "two"}, headers=ADMIN)).is_success


async def test_rate_limits_per_token_answer_429_with_retry_after(module_infra) -> None:
    settings = module_infra.settings(
        redis_prefix=f"t{uuid.uuid4().hex[:8]}", rate_limit="3/minute", admin_rate_limit="6/minute"
    )
    async with running_scheduler(settings) as (scheduler, api):
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        mine = bearer(couple["token"])
        url = f"/v1/couples/{couple['id']}"
        assert [(await api.get(url, headers=mine)).status_code for _ in range(4)] == [
            200,
            200,
            200,
            429,
        ]
        over = await api.get(url, headers=mine)
        assert over.status_code == 429 and "too many requests" in over.json()["detail"]
        assert 1 <= int(over.headers["retry-after"]) <= 60
        # the admin's own, higher limit (one request spent creating the couple)
        assert [(await api.get(url, headers=ADMIN)).status_code for _ in range(6)] == [200] * 5 + [
            429
        ]
        # probes are never limited; the counters live under the deployment's prefix, keyed
        # by a digest of the token, never the token itself
        assert (await api.get("/healthz")).status_code == 200
        keys = await _keys(scheduler.redis, f"{settings.redis_prefix}:ratelimit")
        assert keys and not any(couple["token"] in k for k in keys)
