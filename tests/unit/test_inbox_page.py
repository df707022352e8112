"""What the inbox page promises to show, from plain data: phones, channels, lateness."""

from __future__ import annotations

import socket

import httpx

from tandem.inbox import Inbox, Received
from tandem.inbox_page import InboxPage, build_state, channel_of, owner_of, scheduled_for

PARTNERS = [
    {
        "id": "prt_sam",
        "name": "Sam",
        "timezone": "Europe/Berlin",
        "channels": [
            {"kind": "push", "redacted": "json://127.0.0.1:4000/sam-phone?method=POST"},
            {"kind": "email", "redacted": "mailto://127.0.0.1:2525/s***%40example.com?cto=15"},
        ],
    },
    {
        "id": "prt_alex",
        "name": "Alex",
        "timezone": "America/New_York",
        "channels": [
            {"kind": "push", "redacted": "ntfy://127.0.0.1:4000/alex-phone?priority=default"},
            {"kind": "sms", "redacted": "signal://127.0.0.1:4000/***00/***67?batch=no"},
        ],
    },
]
COUPLE = {"id": "cpl_1", "name": "Sam & Alex", "partners": PARTNERS}


def got(address: str, title: str, at: float, sink: str = "http", body: str = "b") -> Received:
    return Received(sink=sink, address=address, title=title, body=body, at=at)


def test_channel_follows_the_sink_and_the_address() -> None:
    assert channel_of(got("sam-phone", "t", 0)) == "push"
    assert channel_of(got("sam@example.com", "t", 0, sink="smtp")) == "email"
    assert channel_of(got("+15551234567", "t", 0)) == "sms"


def test_addresses_are_matched_to_partners_through_redacted_channel_urls() -> None:
    assert owner_of("sam-phone", PARTNERS) == "prt_sam"
    assert owner_of("sam@example.com", PARTNERS) == "prt_sam"  # masked like the URL is
    assert owner_of("alex-phone", PARTNERS) == "prt_alex"
    assert owner_of("+15551234567", PARTNERS) == "prt_alex"
    assert owner_of("sam", PARTNERS) is None  # a whole segment, not a substring
    assert owner_of("stranger-phone", PARTNERS) is None


def test_lateness_is_arrival_minus_the_matching_occurrence() -> None:
    history = [
        {  # newest first, as the API answers; this one is scheduled after the arrival
            "scheduled_for": "2026-11-21T20:06:00+00:00",
            "partners": {"prt_sam": {"title": "Check-in", "body": "b"}},
        },
        {
            "scheduled_for": "2026-11-21T20:03:00Z",
            "partners": {"prt_sam": {"title": "Check-in", "body": "b"}},
        },
        {
            "scheduled_for": "2026-11-21T20:00:00Z",
            "partners": {"prt_sam": {"title": "Check-in", "body": "other"}},
        },
    ]
    at = 1795291380.0 + 0.25  # 2026-11-21T20:03:00Z + 0.25 s
    assert scheduled_for(got("sam-phone", "Check-in", at), "prt_sam", history) == at - 0.25
    assert scheduled_for(got("sam-phone", "Check-in", at), "prt_alex", history) is None
    assert scheduled_for(got("sam-phone", "Other title", at), "prt_sam", history) is None

    state = build_state([got("sam-phone", "Check-in", at)], COUPLE, history, [], now=at)
    [sam, alex] = state["phones"]
    assert (sam["name"], alex["name"]) == ("Sam", "Alex")  # a phone per partner, even empty
    assert sam["nudges"][0]["lateness_s"] == 0.25 and alex["nudges"] == []


def test_unknown_addresses_get_their_own_phone_and_upcoming_names_partners() -> None:
    upcoming = [
        {
            "ritual": "Date night",
            "occurrence_id": "rit_1@x",
            "scheduled_for": {
                "prt_sam": "2026-11-27T16:00:00Z",
                "prt_alex": "2026-11-27T16:00:00Z",
            },
            "planner": "prt_alex",
        }
    ]
    received = [got("stranger", "hi", 1.0), got("stranger", "again", 2.0)]
    state = build_state(received, COUPLE, [], upcoming, now=0.0)
    assert [p["name"] for p in state["phones"]] == ["Sam", "Alex", "stranger"]
    assert [n["title"] for n in state["phones"][2]["nudges"]] == ["again", "hi"]  # newest first
    [occurrence] = state["upcoming"]
    assert occurrence["planner"] == "Alex"
    assert [t["partner"] for t in occurrence["times"]] == ["Sam", "Alex"]
    assert build_state(received, None, [], [])["couple"] is None


async def test_the_page_and_its_files_are_served_from_the_package() -> None:
    transport = httpx.ASGITransport(app=InboxPage(Inbox()).app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inbox") as client:
        page, css, js = [await client.get(path) for path in ("/", "/inbox.css", "/inbox.js")]
    assert [r.status_code for r in (page, css, js)] == [200, 200, 200]
    assert page.headers["content-type"].startswith("text/html")
    assert css.headers["content-type"].startswith("text/css")
    assert js.headers["content-type"].startswith("text/javascript")
    assert all(r.headers["cache-control"] == "no-store" for r in (page, css, js))
    assert 'href="inbox.css"' in page.text and 'src="inbox.js"' in page.text
    assert ".phone" in css.text and 'fetch("state.json"' in js.text


def test_addresses_are_matched_through_masked_paths_too() -> None:
    partners = [
        {"id": "prt_sam", "channels": [{"redacted": "json://127.0.0.1:4000/s***ne?method=POST"}]},
        {"id": "prt_alex", "channels": [{"redacted": "ntfy://127.0.0.1:4000/a***ne"}]},
        {"id": "prt_kim", "channels": [{"redacted": "json://127.0.0.1:4000/***"}]},
    ]
    assert owner_of("sam-phone", partners) == "prt_sam"
    assert owner_of("alex-phone", partners) == "prt_alex"
    assert owner_of("kim", partners) is None  # "***" names nobody


def test_a_request_cut_off_mid_body_is_not_a_delivery() -> None:
    # A sender killed between its headers and its body (separate writes): a provider drops
    # what it did not get whole, and so does the inbox; a whole request still lands.
    inbox = Inbox().start()
    try:
        with socket.create_connection(("127.0.0.1", inbox.http_port), timeout=5) as cut:
            cut.sendall(
                b"POST /sam HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"title": "T", "mess'
            )
            cut.shutdown(socket.SHUT_WR)  # the sender is gone
            while cut.recv(1024):  # until the inbox has handled it and hung up
                pass
        whole = httpx.post(
            f"http://127.0.0.1:{inbox.http_port}/alex",
            json={"title": "T", "message": "B"},
            timeout=5,
            trust_env=False,
        )
        assert whole.status_code == 200
        assert [r.address for r in inbox.received] == ["alex"]
    finally:
        inbox.stop()
