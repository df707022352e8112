"""The dev inbox as a live web page: the partners' phones side by side.

:class:`InboxPage` serves, on 127.0.0.1 and a port of its own, one HTML page whose markup,
style and script are ``tandem/static/inbox.{html,css,js}`` (nothing is fetched from anywhere
but this server); the script polls ``/state.json`` every second. The state promises:

- one phone per partner of the followed couple, holding what the inbox received for that
  partner's addresses (matched through the couple's redacted channel URLs); an address no
  partner owns gets a phone of its own, so nothing that lands is hidden;
- per notification: title, body, channel (``push``, ``email``, ``sms``), arrival time and
  lateness = arrival at the sink minus the occurrence's scheduled instant, as the scheduler's
  nudge history records it (``null`` while the history does not know the occurrence yet);
- the next occurrences of the couple's rituals, as ``GET /v1/rituals/{id}/upcoming`` says.

Scheduler answers are cached for a second, so any number of open tabs costs the API the same.
When the API cannot answer, the phones still show what landed and ``error`` says why.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import unquote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.redaction import mask, mask_piece
from tandem.inbox import Inbox, Received

MAX_PER_PHONE = 30  # a lock screen, not an archive
HISTORY_LIMIT = 100
CACHE_SECONDS = 1.0
NO_STORE = {"Cache-Control": "no-store"}
# The page's files in tandem/static/, by the path they are served at, with their media type.
# Everything is served from here: the dev machine may have no internet.
PAGE_FILES = {
    "/": ("inbox.html", "text/html"),
    "/inbox.css": ("inbox.css", "text/css"),
    "/inbox.js": ("inbox.js", "text/javascript"),
}


def page_file(name: str) -> str:
    """One of the page's files, read from the installed package on every request (so an
    edit to tandem/static/ shows on reload)."""
    return (resources.files("tandem") / "static" / name).read_text(encoding="utf-8")


def channel_of(item: Received) -> str:
    """``email`` for the SMTP sink, ``sms`` for an SMS gateway number, else ``push``."""
    if item.sink == "smtp":
        return "email"
    return "sms" if item.address.startswith("+") else "push"


def _segments(redacted_url: str) -> set[str]:
    # The parts of a redacted channel URL that can name an inbox address: path segments
    # (json/ntfy topic, mailto recipient, SMS numbers) and query values (mailto's ?to=).
    rest = redacted_url.split("://", 1)[-1]
    return {unquote(part) for part in re.split(r"[/?&=]", rest) if part}


def owner_of(address: str, partners: Sequence[dict[str, Any]]) -> str | None:
    """The id of the partner one of whose channels points at ``address``.

    Channel URLs come back redacted (numbers and e-mail local parts masked), so the address
    is masked the same way before it is compared (URLs stored before path masking show
    push topics as they are).
    """
    wanted = {address, mask(address), mask_piece(address)} - {"***"}
    for partner in partners:
        for channel in partner.get("channels", []):
            if wanted & _segments(str(channel.get("redacted", ""))):
                return str(partner["id"])
    return None


def _instant(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def scheduled_for(
    item: Received, partner_id: str | None, history: Sequence[dict[str, Any]]
) -> float | None:
    """The scheduled instant of the occurrence ``item`` delivered, from the nudge history.

    The occurrence is the latest one scheduled before the arrival whose message to the
    partner has the item's title (an e-mail may carry a longer body, so a matching body only
    breaks ties); None when no recorded occurrence fits.
    """
    best: tuple[bool, float] | None = None
    for occurrence in history:
        try:
            instant = _instant(str(occurrence["scheduled_for"]))
        except (KeyError, ValueError):
            continue
        if instant > item.at + 1.0:  # clocks are one machine's; a second of slack suffices
            continue
        for pid, message in (occurrence.get("partners") or {}).items():
            if partner_id not in (None, pid) or message.get("title") != item.title:
                continue
            rank = (message.get("body") == item.body, instant)
            if best is None or rank > best:
                best = rank
    return best[1] if best else None


def build_state(
    received: Sequence[Received],
    couple: dict[str, Any] | None,
    history: Sequence[dict[str, Any]],
    upcoming: Sequence[dict[str, Any]],
    *,
    error: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """What the page shows, as JSON-ready data (see the module docstring)."""
    partners: list[dict[str, Any]] = list((couple or {}).get("partners", []))
    names = {str(p["id"]): str(p["name"]) for p in partners}
    return {
        "now": time.time() if now is None else now,
        "couple": {"id": couple["id"], "name": couple.get("name", "")} if couple else None,
        "phones": phones(received, partners, history),
        "upcoming": coming_up(upcoming, names),
        "error": error,
    }


def phones(
    received: Sequence[Received],
    partners: Sequence[dict[str, Any]],
    history: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One phone per partner, then one per address no partner owns, each holding its newest
    ``MAX_PER_PHONE`` notifications, newest first."""
    by_key = {
        str(p["id"]): _phone(str(p["id"]), str(p["name"]), p.get("timezone")) for p in partners
    }
    for item in received:
        owner = owner_of(item.address, partners)
        key = owner or f"address:{item.address}"
        phone = by_key.setdefault(key, _phone(key, item.address, None))
        if item.address not in phone["addresses"]:
            phone["addresses"].append(item.address)
        phone["nudges"].append(notification(item, scheduled_for(item, owner, history)))
    for phone in by_key.values():
        phone["nudges"] = sorted(phone["nudges"], key=lambda n: -n["at"])[:MAX_PER_PHONE]
    return list(by_key.values())


def _phone(key: str, name: str, timezone: str | None) -> dict[str, Any]:
    return {"key": key, "name": name, "timezone": timezone, "addresses": [], "nudges": []}


def notification(item: Received, due: float | None) -> dict[str, Any]:
    """One notification on a phone; ``due`` is its occurrence's scheduled instant, if known."""
    return {
        "title": item.title,
        "body": item.body,
        "channel": channel_of(item),
        "address": item.address,
        "at": item.at,
        "scheduled_for": due,
        "lateness_s": None if due is None else round(item.at - due, 3),
    }


def coming_up(upcoming: Sequence[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """The upcoming occurrences, soonest first, each with every partner's instant (partners
    named through ``names``); an occurrence with no instant is left out."""
    coming = []
    for occurrence in upcoming:
        times = [
            {"partner": names.get(pid, pid), "at": _instant(str(at))}
            for pid, at in (occurrence.get("scheduled_for") or {}).items()
        ]
        if not times:
            continue
        planner = occurrence.get("planner")
        coming.append(
            {
                "ritual": occurrence.get("ritual", ""),
                "occurrence_id": occurrence.get("occurrence_id"),
                "at": min(t["at"] for t in times),
                "times": times,
                "planner": names.get(planner, planner) if planner else None,
            }
        )
    coming.sort(key=lambda o: o["at"])
    return coming


@dataclass
class _SchedulerView:
    couple: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    upcoming: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    at: float = 0.0


class InboxPage:
    """The page server. ``start()`` returns once it listens; ``stop()`` is safe to repeat.

    ``follow(couple_id)`` picks the couple whose phones and rituals are shown; until then
    every inbox address is a phone of its own and nothing is upcoming.
    """

    def __init__(
        self, inbox: Inbox, api_url: str = "", admin_token: str = "", *, upcoming: int = 5
    ) -> None:
        self.inbox = inbox
        self.api_url = api_url
        self.admin_token = admin_token
        self.upcoming_count = upcoming
        self.couple_id: str | None = None
        self.port = 0
        self._view = _SchedulerView()
        self._view_lock = asyncio.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                *(Route(path, self._file) for path in PAGE_FILES),
                Route("/state.json", self._state_json),
            ]
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def follow(self, couple_id: str | None) -> None:
        self.couple_id = couple_id
        self._view = _SchedulerView()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> InboxPage:
        # Bind here, not in uvicorn: the port is known (and ours) before anyone is told it.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_notify=1
        )
        server = self._server = uvicorn.Server(config)
        # Not the main thread, so uvicorn leaves the runner's signal handlers alone.
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="inbox-page", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the inbox page did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    # -- data --------------------------------------------------------------------------
    async def state(self) -> dict[str, Any]:
        view = await self._scheduler_view()
        return build_state(
            self.inbox.received, view.couple, view.history, view.upcoming, error=view.error
        )

    async def _scheduler_view(self) -> _SchedulerView:
        async with self._view_lock:
            couple_id = self.couple_id
            if couple_id is None or not self.api_url:
                return _SchedulerView()
            if time.monotonic() - self._view.at < CACHE_SECONDS:
                return self._view
            view = _SchedulerView(at=time.monotonic())
            headers = {"Authorization": f"Bearer {self.admin_token}"}
            try:
                # trust_env=False: a proxy configured for the outside world must not see this.
                async with httpx.AsyncClient(
                    base_url=self.api_url, headers=headers, timeout=2.0, trust_env=False
                ) as client:
                    view.couple = await _get(client, f"/v1/couples/{couple_id}")
                    history = await _get(
                        client, f"/v1/couples/{couple_id}/nudges?limit={HISTORY_LIMIT}"
                    )
                    view.history = history.get("nudges", [])
                    rituals = await _get(client, f"/v1/couples/{couple_id}/rituals")
                    for ritual in rituals.get("rituals", []):
                        found = await _get(
                            client,
                            f"/v1/rituals/{ritual['id']}/upcoming?count={self.upcoming_count}",
                        )
                        for occurrence in found.get("occurrences", []):
                            view.upcoming.append({**occurrence, "ritual": ritual.get("title")})
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                view.error = f"scheduler API at {self.api_url}: {exc or type(exc).__name__}"
            if couple_id == self.couple_id:  # not a stale answer for a couple since replaced
                self._view = view
            return view

    # -- routes ------------------------------------------------------------------------
    async def _file(self, request: Request) -> Response:
        name, media_type = PAGE_FILES[request.url.path]
        return Response(page_file(name), media_type=media_type, headers=NO_STORE)

    async def _state_json(self, request: Request) -> Response:
        return JSONResponse(await self.state(), headers=NO_STORE)


async def _get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    answer = await client.get(path)
    answer.raise_for_status()
    data = answer.json()
    if not isinstance(data, dict):
        raise ValueError(f"GET {path} answered {type(data).__name__}, not an object")
    return data
