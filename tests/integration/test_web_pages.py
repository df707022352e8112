"""The web app's pages over a real Redis, in process (no browser): the scheduler's API app
with the pages mounted, two partners' cookie jars, and codes read from the local inbox.
What needs a clock (an expired invite, an expired session) or a look at the store (pausing
until a date, editing a ritual, goals) is checked here; the browser test covers the rest.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import itsdangerous
import pytest
from fastapi import FastAPI

from services.scheduler import planning
from services.scheduler.api import create_app, deps
from services.scheduler.history import NudgeHistory
from services.scheduler.keeping import Keeping
from services.scheduler.store import SchedulerStore
from services.scheduler.web import PREFIX
from services.scheduler.web.session import SESSION_COOKIE, SESSION_SECONDS, session_key
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.vault import Vault
from tandem.dev import inbox_gateways
from tandem.inbox import Inbox
from tests.support.infra import Infra
from tests.support.scheduler import ADMIN

HOST = "http://web.test"


@dataclass
class Site:
    app: FastAPI
    web: FastAPI
    store: SchedulerStore
    settings: Settings
    inbox: Inbox

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=HOST)


@pytest.fixture
async def site(infra: Infra, inbox: Inbox) -> AsyncIterator[Site]:
    gateways = {k.removeprefix("TANDEM_").lower(): v for k, v in inbox_gateways(inbox).items()}
    settings = infra.settings(**gateways)
    redis = make_redis(settings)
    keys = Keys(settings.redis_prefix)
    store = SchedulerStore(
        redis, keys, Vault(redis, keys, SecretBox(settings.require_secret_key()))
    )
    history = NudgeHistory(redis, keys)
    app = create_app(settings, store, history, Keeping(store, history))
    web = next(r.app for r in app.routes if getattr(r, "path", None) == PREFIX)  # type: ignore[attr-defined]
    yield Site(app, web, store, settings, inbox)
    await redis.aclose()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[-1500:]
    return found[1]


def _notices(page: str) -> list[str]:
    return re.findall(r'class="notice[^"]*"[^>]*>([^<]*)<', page)


async def _form(client: httpx.AsyncClient, page: str, path: str, **form: Any) -> httpx.Response:
    got = await client.get(page)
    return await client.post(path, data={"csrf": _csrf(got.text), **form})


async def _started(site: Site, a: httpx.AsyncClient) -> str:
    """Sam starts a couple; the invite link's path."""
    started = await _form(a, f"{PREFIX}/", f"{PREFIX}/start", name="Sam", timezone="Europe/Berlin")
    assert started.status_code == 303
    invite = await a.get(f"{PREFIX}/invite")
    link = re.search(r'id="invite-link" type="url" readonly value="([^"]+)"', invite.text)
    assert link, invite.text[-2000:]
    return "/" + link[1].split("/", 3)[3]


async def _verified(site: Site, client: httpx.AsyncClient, topic: str) -> None:
    await _form(client, f"{PREFIX}/channels", f"{PREFIX}/channels", type="ntfy", topic=topic)
    site.inbox.wait_for(lambda got: any(r.address == topic for r in got), timeout=20)
    code = re.search(r"(\d{3}) (\d{3})", site.inbox.to(topic)[-1].body)
    assert code
    page = await client.get(f"{PREFIX}/channels")
    channel = re.search(r'data-channel="(chn_[^"]+)" data-state="pending"', page.text)
    assert channel
    done = await client.post(
        f"{PREFIX}/channels/{channel[1]}/verify",
        data={"csrf": _csrf(page.text), "code": code[1] + code[2]},
    )
    assert done.status_code == 303


async def _couple(site: Site, a: httpx.AsyncClient, b: httpx.AsyncClient) -> str:
    """Sam and Alex, both joined and verified; the couple id."""
    path = await _started(site, a)
    join = await b.get(path, follow_redirects=True)
    joined = await b.post(
        str(join.url),
        data={"csrf": _csrf(join.text), "name": "Alex", "timezone": "America/New_York"},
    )
    assert joined.status_code == 303, joined.text
    await _verified(site, a, "sam-web")
    await _verified(site, b, "alex-web")
    cookie = a.cookies.get(SESSION_COOKIE)
    assert cookie
    session = json.loads(base64.b64decode(cookie.split(".")[0]))
    return str(session["couple"])


async def test_an_expired_invite_is_refused_and_nothing_changes(site: Site) -> None:
    async with site.client() as a, site.client() as b:
        path = await _started(site, a)
        later = datetime.now(UTC) + timedelta(seconds=site.settings.invite_ttl_seconds + 60)
        site.web.dependency_overrides[deps.now] = lambda: later
        join = await b.get(path, follow_redirects=True)
        assert join.status_code == 410
        assert "This invite has expired: ask your partner for a new link" in join.text
        # A form for it, sent anyway, is refused the same way; Sam is still waiting.
        token = path.rsplit("/", 1)[1]
        page = await b.get(f"{PREFIX}/")
        sent = await b.post(
            f"{PREFIX}/join/{token}",
            data={"csrf": _csrf(page.text), "name": "Alex", "timezone": "America/New_York"},
        )
        assert sent.status_code == 410 and "expired" in sent.text
        site.web.dependency_overrides.clear()
        invite = await a.get(f"{PREFIX}/invite")
        assert "Your partner has not joined yet" in invite.text or "invite-link" in invite.text


async def test_the_session_cookie_is_signed_httponly_lax_and_expires(site: Site) -> None:
    async with site.client() as a:
        page = await a.get(f"{PREFIX}/")
        cookie = page.headers["set-cookie"]
        assert f"{SESSION_COOKIE}=" in cookie and "httponly" in cookie.lower()
        assert "samesite=lax" in cookie.lower() and f"Max-Age={SESSION_SECONDS}" in cookie
        # Never framed (clickjacking), only the project's own scripts, no Referer leaks.
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        await _started(site, a)
        assert (await a.get(f"{PREFIX}/rituals")).status_code == 200
        signed_in = a.cookies[SESSION_COOKIE]

    # The same session signed longer ago than SESSION_SECONDS: signed out.
    class Then(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - SESSION_SECONDS - 60

    data = signed_in.rsplit(".", 2)[0]
    old = Then(session_key(site.settings.require_secret_key())).sign(data).decode()
    async with site.client() as late:
        late.cookies.set(SESSION_COOKIE, old, domain="web.test", path=PREFIX)
        answer = await late.get(f"{PREFIX}/rituals")
        assert answer.status_code == 401 and "Your session has ended" in answer.text
    # A tampered cookie is no session at all.
    async with site.client() as forged:
        forged.cookies.set(SESSION_COOKIE, signed_in[:-2] + "xx", domain="web.test", path=PREFIX)
        assert (await forged.get(f"{PREFIX}/rituals")).status_code == 401


async def test_signing_out_ends_the_session(site: Site) -> None:
    async with site.client() as a:
        await _started(site, a)
        waiting = await a.get(f"{PREFIX}/rhythm")  # says why nothing is scheduled yet
        assert "Nothing is scheduled until your partner joins from the invite link" in waiting.text
        out = await _form(a, f"{PREFIX}/rituals", f"{PREFIX}/logout")
        assert out.status_code == 303
        assert (await a.get(f"{PREFIX}/rhythm")).status_code == 401


async def test_rituals_are_added_edited_and_refused_with_a_reason(site: Site) -> None:
    async with site.client() as a, site.client() as b:
        couple_id = await _couple(site, a, b)
        added = await _form(
            a,
            f"{PREFIX}/rituals",
            f"{PREFIX}/rituals",
            card="kiss",
            time="07:15",
            delivery="local",
            days=["MO", "WE"],
        )
        assert added.status_code == 303
        [ritual] = await site.store.list_rituals(couple_id)
        assert ritual.kind == "morning_kiss" and ritual.delivery == "local"
        assert ritual.schedule.rrule == "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=7;BYMINUTE=15"

        bad = await _form(
            b, f"{PREFIX}/rituals", f"{PREFIX}/rituals/{ritual.id}", time="7.15", days=["MO"]
        )
        page = await b.get(bad.headers["location"])
        assert "Give the time as HH:MM on a 24-hour clock, e.g. 21:00." in _notices(page.text)
        assert await site.store.get_ritual(ritual.id) == ritual  # nothing changed

        edited = await _form(
            b,
            f"{PREFIX}/rituals",
            f"{PREFIX}/rituals/{ritual.id}",
            time="08:00",
            delivery="together",
            days=list("MO TU WE TH FR SA SU".split()),
        )
        assert edited.status_code == 303
        now_ = await site.store.get_ritual(ritual.id)
        assert now_ is not None and now_.delivery == "together"
        assert now_.schedule.rrule == "FREQ=DAILY;BYHOUR=8;BYMINUTE=0"
        page = await a.get(f"{PREFIX}/rituals")
        assert "Next for Sam" in page.text and "08:00" in page.text


async def test_pausing_until_a_date_resumes_by_itself(site: Site) -> None:
    async with site.client() as a, site.client() as b:
        couple_id = await _couple(site, a, b)
        await _form(
            a,
            f"{PREFIX}/rituals",
            f"{PREFIX}/rituals",
            card="checkin",
            time="21:00",
            days=list("MO TU WE TH FR SA SU".split()),
        )
        couple = await site.store.get_couple(couple_id)
        assert couple is not None and not couple.paused
        [ritual] = await site.store.list_rituals(couple_id)
        day = (datetime.now(UTC) + timedelta(days=10)).date()

        paused = await _form(b, f"{PREFIX}/rhythm", f"{PREFIX}/rhythm/pause", until=day.isoformat())
        page = await b.get(paused.headers["location"])
        assert any("we resume then" in n for n in _notices(page.text)), _notices(page.text)
        [first] = await planning.upcoming(site.store, couple, ritual, 1)
        local = datetime.fromisoformat(first["wall_time"])
        assert local.date() == day and local.hour == 21  # nothing before the date, then on

        await _planned_from_the_break(site, couple_id)

        past = await _form(b, f"{PREFIX}/rhythm", f"{PREFIX}/rhythm/pause", until="2001-01-01")
        page = await b.get(past.headers["location"])
        assert "Pick a day after today: the rituals resume on that morning." in _notices(page.text)

        await _form(a, f"{PREFIX}/rhythm", f"{PREFIX}/rhythm/resume")
        [again] = await planning.upcoming(site.store, couple, ritual, 1)
        assert datetime.fromisoformat(again["wall_time"]).date() < day


async def _planned_from_the_break(site: Site, couple_id: str) -> None:
    """The break is the couple's: every other path plans from its end too -- a ritual
    changed or added through the JSON API, a partner's new zone, a pause and resume over
    PATCH -- and each ritual's first firing is on the resume day (automatic resume)."""
    async with site.client() as api:
        [ritual] = await site.store.list_rituals(couple_id)
        daily = {"schedule": {"rrule": "FREQ=DAILY;BYHOUR=20;BYMINUTE=0"}}
        changed = await api.patch(f"/v1/rituals/{ritual.id}", json=daily, headers=ADMIN)
        assert changed.status_code == 200, changed.text
        added = await api.post(
            f"/v1/couples/{couple_id}/rituals", json={"kind": "evening_checkin"}, headers=ADMIN
        )
        assert added.status_code == 201, added.text
        couple = await site.store.get_couple(couple_id)
        assert couple is not None and couple.resume_at is not None
        moved = await api.patch(
            f"/v1/couples/{couple_id}/partners/{couple.partners[1].id}",
            json={"timezone": "Asia/Tokyo"},
            headers=ADMIN,
        )
        assert moved.status_code == 200, moved.text
        for paused in (True, False):
            toggled = await api.patch(
                f"/v1/couples/{couple_id}", json={"paused": paused}, headers=ADMIN
            )
            assert toggled.status_code == 200, toggled.text
    couple = await site.store.get_couple(couple_id)
    assert couple is not None and couple.resume_at is not None
    for each in await site.store.list_rituals(couple_id):
        dues = await site.store.due_of(planning.track_ids(couple, each))
        resume = couple.resume_at.timestamp()
        assert all(d is not None and resume < d < resume + 86400 for d in dues), (dues, resume)


async def test_transition_mode_goals_and_each_partners_own_calendar(site: Site) -> None:
    async with site.client() as a, site.client() as b:
        couple_id = await _couple(site, a, b)
        await _form(a, f"{PREFIX}/rhythm", f"{PREFIX}/rhythm/transition", on="true")
        couple = await site.store.get_couple(couple_id)
        assert couple is not None and couple.transition_mode

        await _form(b, f"{PREFIX}/rhythm", f"{PREFIX}/rhythm/goals", text="A weekend away")
        [goal] = await site.store.goals(couple_id)
        assert goal.text == "A weekend away" and goal.reached_at is None
        await _form(a, f"{PREFIX}/rhythm", f"{PREFIX}/rhythm/goals/{goal.id}/reached")
        [goal] = await site.store.goals(couple_id)
        assert goal.reached_at is not None

        pages = [(await c.get(f"{PREFIX}/rhythm")).text for c in (a, b)]
        feeds = [re.search(r'id="cal" type="url" readonly value="([^"]+)"', p) for p in pages]
        assert all(feeds)
        sam, alex = (couple.partners[0].id, couple.partners[1].id)
        assert f"/partners/{sam}/calendar.ics" in feeds[0][1]  # type: ignore[index]
        assert f"/partners/{alex}/calendar.ics" in feeds[1][1]  # type: ignore[index]
        path = "/" + feeds[0][1].split("/", 3)[3]  # type: ignore[index]
        async with site.client() as anyone:
            ics = await anyone.get(path.replace("&amp;", "&"))
        assert ics.status_code == 200 and "BEGIN:VCALENDAR" in ics.text


async def test_leaving_the_couple_ends_that_partners_session(site: Site) -> None:
    async with site.client() as a, site.client() as b:
        couple_id = await _couple(site, a, b)
        couple = await site.store.get_couple(couple_id)
        assert couple is not None
        await site.app.state.door.leave(couple, couple.partners[1].id, datetime.now(UTC))
        gone = await b.get(f"{PREFIX}/channels")
        assert gone.status_code == 401 and "Your session has ended" in gone.text
        assert (await a.get(f"{PREFIX}/rhythm")).status_code == 200  # Sam is still in


async def test_a_partner_changes_their_own_details(site: Site) -> None:
    async with site.client() as a, site.client() as b:
        couple_id = await _couple(site, a, b)
        saved = await _form(
            b,
            f"{PREFIX}/channels",
            f"{PREFIX}/me",
            name="Alexandra",
            timezone="America/Chicago",
            quiet_start="22:30",
            quiet_end="07:00",
        )
        assert saved.status_code == 303
        couple = await site.store.get_couple(couple_id)
        assert couple is not None
        alex = couple.partners[1]
        assert (alex.name, alex.timezone) == ("Alexandra", "America/Chicago")
        assert alex.quiet_hours is not None and alex.quiet_hours.start.hour == 22
        bad = await _form(
            b, f"{PREFIX}/channels", f"{PREFIX}/me", name="A", timezone="Mars/Olympus"
        )
        page = await b.get(bad.headers["location"])
        assert any("is not a time zone we know" in n for n in _notices(page.text))
        assert await site.store.get_couple(couple_id) == couple  # nothing changed
