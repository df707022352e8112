"""The dev inbox as a live web page: the partners' phones side by side.

:class:`InboxPage` serves, on 127.0.0.1 and a port of its own, one self-contained HTML page
(inline CSS and JS; nothing is fetched from anywhere but this server) that polls
``/state.json`` every second. The state promises:

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
from typing import Any
from urllib.parse import unquote

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from shared.redaction import mask
from tandem.inbox import Inbox, Received

MAX_PER_PHONE = 30  # a lock screen, not an archive
HISTORY_LIMIT = 100
CACHE_SECONDS = 1.0


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
    is masked the same way before it is compared; push topics and paths survive as they are.
    """
    wanted = {address, mask(address)}
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
    phones: dict[str, dict[str, Any]] = {
        str(p["id"]): {
            "key": str(p["id"]),
            "name": str(p["name"]),
            "timezone": p.get("timezone"),
            "addresses": [],
            "nudges": [],
        }
        for p in partners
    }
    for item in received:
        owner = owner_of(item.address, partners)
        key = owner or f"address:{item.address}"
        phone = phones.setdefault(
            key,
            {"key": key, "name": item.address, "timezone": None, "addresses": [], "nudges": []},
        )
        if item.address not in phone["addresses"]:
            phone["addresses"].append(item.address)
        due = scheduled_for(item, owner, history)
        phone["nudges"].append(
            {
                "title": item.title,
                "body": item.body,
                "channel": channel_of(item),
                "address": item.address,
                "at": item.at,
                "scheduled_for": due,
                "lateness_s": None if due is None else round(item.at - due, 3),
            }
        )
    for phone in phones.values():
        phone["nudges"] = sorted(phone["nudges"], key=lambda n: -n["at"])[:MAX_PER_PHONE]
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
    return {
        "now": time.time() if now is None else now,
        "couple": {"id": couple["id"], "name": couple.get("name", "")} if couple else None,
        "phones": list(phones.values()),
        "upcoming": coming,
        "error": error,
    }


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
            routes=[Route("/", self._page), Route("/state.json", self._state_json)]
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
    async def _page(self, request: Request) -> Response:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def _state_json(self, request: Request) -> Response:
        return JSONResponse(await self.state(), headers={"Cache-Control": "no-store"})


async def _get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    answer = await client.get(path)
    answer.raise_for_status()
    data = answer.json()
    if not isinstance(data, dict):
        raise ValueError(f"GET {path} answered {type(data).__name__}, not an object")
    return data


# The page: inline everything (the dev machine may have no internet). Data goes into the DOM
# with textContent only, so a prompt or an address can never inject markup.
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tandem inbox</title>
<style>
  :root { color-scheme: dark; --ink: #f5f3ff; --muted: #b9b4d0; }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; font: 15px/1.35 system-ui, -apple-system, "Segoe UI",
         Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
         background: radial-gradient(circle at 20% 0%, #2b2450, #0f0d1a 60%); }
  header { display: flex; align-items: baseline; gap: 14px; padding: 18px 32px 6px; }
  header h1 { margin: 0; font-size: 20px; letter-spacing: .3px; }
  header .couple { color: var(--muted); }
  header .live { margin-left: auto; font-size: 12px; color: var(--muted); }
  header .live::before { content: ""; display: inline-block; width: 8px; height: 8px;
         margin-right: 6px; border-radius: 50%; background: #4ade80; }
  header .live.stale::before { background: #f87171; }
  #error { margin: 4px 32px; color: #fca5a5; font-size: 13px; }
  main { display: flex; gap: 36px; justify-content: center; align-items: flex-start;
         padding: 10px 24px 24px; flex-wrap: wrap; }
  .phones { display: flex; gap: 28px; flex-wrap: wrap; justify-content: center; }
  .phone { width: 290px; }
  .frame { position: relative; height: 590px; border-radius: 46px; padding: 11px;
           background: #16141f; box-shadow: 0 0 0 2px #3a3650, 0 24px 60px rgba(0,0,0,.55); }
  .screen { position: relative; height: 100%; border-radius: 36px; overflow: hidden;
            padding: 46px 12px 12px; display: flex; flex-direction: column; }
  .phone:nth-child(3n+1) .screen {
    background: linear-gradient(160deg, #5b3cc4, #c2417a 70%, #f29b6b); }
  .phone:nth-child(3n+2) .screen {
    background: linear-gradient(160deg, #10628a, #2b8c8c 55%, #8fd19e); }
  .phone:nth-child(3n+3) .screen {
    background: linear-gradient(160deg, #464646, #8a6d3b); }
  .island { position: absolute; top: 12px; left: 50%; width: 96px; height: 26px;
            transform: translateX(-50%); border-radius: 14px; background: #000; }
  .status { position: absolute; top: 15px; left: 26px; right: 26px; display: flex;
            justify-content: space-between; font-size: 12px; font-weight: 600; }
  .clock { text-align: center; margin-bottom: 14px; text-shadow: 0 1px 8px rgba(0,0,0,.25); }
  .clock .date { font-size: 14px; font-weight: 500; opacity: .9; }
  .clock .time { font-size: 62px; font-weight: 300; line-height: 1; letter-spacing: -1px; }
  .stack { flex: 1; overflow: hidden; display: flex; flex-direction: column; gap: 8px; }
  .empty { margin-top: 40px; text-align: center; opacity: .75; font-size: 13px; }
  .nudge { border-radius: 18px; padding: 10px 12px; color: #111;
           background: rgba(255,255,255,.78); backdrop-filter: blur(14px);
           box-shadow: 0 4px 14px rgba(0,0,0,.18); }
  .nudge.fresh { animation: land .45s ease-out; }
  @keyframes land { from { transform: translateY(-16px) scale(.97); opacity: 0; } }
  .nudge .top { display: flex; align-items: center; gap: 7px; font-size: 11px;
                color: #4b4b57; text-transform: uppercase; letter-spacing: .4px; }
  .nudge .top .when { margin-left: auto; text-transform: none; letter-spacing: 0; }
  .icon { width: 20px; height: 20px; border-radius: 6px; display: grid; place-items: center;
          color: #fff; font: 700 11px/1 system-ui, sans-serif; }
  .icon.push { background: linear-gradient(135deg, #8b5cf6, #ec4899); }
  .icon.email { background: #2563eb; }
  .icon.sms { background: #16a34a; }
  .nudge .title { margin-top: 5px; font-weight: 650; font-size: 14px; }
  .nudge .body { margin-top: 2px; font-size: 13.5px; color: #25252d; white-space: pre-line;
                 overflow-wrap: anywhere;  /* a long link must not widen the card */
                 display: -webkit-box; -webkit-line-clamp: 4; -webkit-box-orient: vertical;
                 overflow: hidden; }
  .lateness { display: inline-block; margin-top: 6px; padding: 1px 7px; border-radius: 9px;
              font-size: 11px; font-weight: 600; background: #e5e7eb; color: #374151; }
  .lateness.ok { background: #dcfce7; color: #166534; }
  .lateness.slow { background: #fef3c7; color: #92400e; }
  .lateness.late { background: #fee2e2; color: #991b1b; }
  .label { margin-top: 12px; text-align: center; }
  .label .name { font-weight: 650; font-size: 16px; }
  .label .meta { color: var(--muted); font-size: 12px; word-break: break-all; }
  aside { width: 300px; padding: 18px 18px 10px; border-radius: 20px;
          background: rgba(255,255,255,.06); box-shadow: inset 0 0 0 1px rgba(255,255,255,.08); }
  aside h2 { margin: 0 0 10px; font-size: 15px; }
  .occurrence { padding: 9px 0; border-top: 1px solid rgba(255,255,255,.08); }
  .occurrence .what { display: flex; justify-content: space-between; gap: 8px; }
  .occurrence .in { color: #c4b5fd; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .occurrence .times { color: var(--muted); font-size: 12.5px; }
</style>
</head>
<body>
<header>
  <h1>Tandem inbox</h1><span class="couple" id="couple"></span>
  <span class="live" id="live">live</span>
</header>
<div id="error" hidden></div>
<main>
  <div class="phones" id="phones"></div>
  <aside><h2>Coming up</h2><div id="upcoming"></div></aside>
</main>
<script>
"use strict";
const seen = new Set();
let first = true;
let skew = 0;  // server clock minus ours, so countdowns agree with the scheduler

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}
function fmt(at, zone, opts) {
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone: zone || undefined, ...opts })
      .format(new Date(at * 1000));
  } catch (e) {
    return new Intl.DateTimeFormat("en-GB", opts).format(new Date(at * 1000));
  }
}
function span(seconds) {
  const s = Math.abs(seconds);
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
const LETTER = { push: "T", email: "@", sms: "#" };

function nudgeCard(n, zone) {
  const key = n.address + "|" + n.at;
  const card = el("article", "nudge" + (seen.has(key) || first ? "" : " fresh"));
  seen.add(key);
  card.dataset.channel = n.channel;
  const top = el("div", "top");
  top.append(el("span", "icon " + n.channel, LETTER[n.channel] || "T"));
  top.append(el("span", "app", "Tandem \\u00b7 " + n.channel));
  top.append(el("span", "when", fmt(n.at, zone, { hour: "2-digit", minute: "2-digit",
                                                 second: "2-digit" })));
  card.append(top, el("div", "title", n.title), el("div", "body", n.body));
  let cls = "lateness", text = "lateness unknown";
  if (n.lateness_s !== null) {
    const l = n.lateness_s;
    cls += l < 2 ? " ok" : l < 60 ? " slow" : " late";
    text = l < 0 ? span(l) + " early" : span(l) + " late";
  }
  const chip = el("span", cls, text);
  chip.title = n.scheduled_for === null ? "scheduled instant not in the history yet"
    : "scheduled " + fmt(n.scheduled_for, zone, { hour: "2-digit", minute: "2-digit",
                                                  second: "2-digit" });
  card.append(chip);
  return card;
}

function phone(p, now) {
  const box = el("section", "phone");
  box.dataset.partner = p.name;
  const frame = el("div", "frame"), screen = el("div", "screen");
  const status = el("div", "status");
  status.append(el("span", "", fmt(now, p.timezone, { hour: "2-digit", minute: "2-digit" })),
                el("span", "", "5G \\u25ae\\u25ae\\u25ae"));
  const clock = el("div", "clock");
  clock.append(el("div", "date", fmt(now, p.timezone, { weekday: "long", day: "numeric",
                                                        month: "long" })),
               el("div", "time", fmt(now, p.timezone, { hour: "2-digit", minute: "2-digit" })));
  const stack = el("div", "stack");
  if (!p.nudges.length) stack.append(el("div", "empty", "No notifications yet"));
  for (const n of p.nudges) stack.append(nudgeCard(n, p.timezone));
  screen.append(el("div", "island"), status, clock, stack);
  frame.append(screen);
  const label = el("div", "label");
  label.append(el("div", "name", p.name));
  const meta = [p.timezone, ...p.addresses].filter(Boolean).join(" \\u00b7 ");
  label.append(el("div", "meta", meta));
  box.append(frame, label);
  return box;
}

function occurrence(o, now, zones) {
  const row = el("div", "occurrence");
  const what = el("div", "what");
  what.append(el("span", "", o.ritual || "ritual"), el("span", "in", "in " + span(o.at - now)));
  const times = o.times.map(t => t.partner + " " +
    fmt(t.at, zones[t.partner], { weekday: "short", hour: "2-digit", minute: "2-digit" }));
  row.append(what, el("div", "times", times.join(" \\u00b7 ")));
  if (o.planner) row.append(el("div", "times", o.planner + " plans"));
  return row;
}

function render(state) {
  const now = Date.now() / 1000 + skew;
  document.getElementById("couple").textContent = state.couple ? state.couple.name : "";
  const error = document.getElementById("error");
  error.hidden = !state.error;
  error.textContent = state.error || "";
  const phones = document.getElementById("phones");
  phones.replaceChildren(...state.phones.map(p => phone(p, now)));
  if (!state.phones.length) phones.append(el("div", "empty", "Waiting for the first nudge\\u2026"));
  const zones = Object.fromEntries(state.phones.map(p => [p.name, p.timezone]));
  const upcoming = document.getElementById("upcoming");
  upcoming.replaceChildren(...state.upcoming.map(o => occurrence(o, now, zones)));
  if (!state.upcoming.length) upcoming.append(el("div", "times", "Nothing scheduled"));
  first = false;
}

async function poll() {
  const live = document.getElementById("live");
  try {
    const answer = await fetch("state.json", { cache: "no-store" });
    const state = await answer.json();
    skew = state.now - Date.now() / 1000;
    render(state);
    live.className = "live";
    live.textContent = "live";
  } catch (e) {
    live.className = "live stale";
    live.textContent = "reconnecting";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
"""
