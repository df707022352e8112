"""The inbox page in a real headless browser, against a real dev stack.

A DevStack runs the real services; the demo couple's first nudge lands on both partners'
phones; Chromium loads the page, runs its JavaScript and hands back the rendered DOM (and a
screenshot, saved next to the test's temp files for people to look at).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tandem.embedded import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]


def _chromium(url: str, profile: Path, *mode: str) -> str:
    """Run headless Chromium on ``url`` with ``mode`` flags; return what it printed."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1200,800",
            # Enough virtual time for the page's first poll to come back and render.
            "--virtual-time-budget=3000",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _phones(dom: str) -> dict[str, str]:
    """Each rendered phone's markup, by the partner it belongs to."""
    parts = re.split(r'<section class="phone" data-partner="([^"]*)">', dom)
    return {html.unescape(name): body for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _texts(markup: str, cls: str) -> list[str]:
    found = re.findall(rf'<(?:div|span) class="{cls}[^"]*"[^>]*>(.*?)</(?:div|span)>', markup, re.S)
    return [html.unescape(text) for text in found]


def test_both_partners_nudges_render_in_a_browser(tmp_path: Path) -> None:
    from tandem.dev import DevStack, create_demo

    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    environ["TANDEM_API_PORT"] = str(free_port())
    with DevStack(environ=environ, run_dir=tmp_path / "run") as stack:
        create_demo(stack, first_in=2)
        stack.inbox.wait_for(
            lambda got: {r.address for r in got} >= {"sam-phone", "alex-phone"}, timeout=60
        )
        sam, alex = stack.inbox.to("sam-phone")[0], stack.inbox.to("alex-phone")[0]

        # The history learns the occurrence from nudge.ready; wait until the page knows the
        # scheduled instant of both deliveries, so lateness is rendered, not "unknown".
        deadline = time.monotonic() + 20
        while True:
            state = httpx.get(f"{stack.page.url}state.json", trust_env=False).json()
            lateness = [n["lateness_s"] for p in state["phones"] for n in p["nudges"]]
            if lateness and None not in lateness and state["upcoming"]:
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.3)

        dom = _chromium(stack.page.url, tmp_path / "profile", "--dump-dom")
        shot = tmp_path / "inbox-page.png"
        _chromium(stack.page.url, tmp_path / "profile", f"--screenshot={shot}")

    phones = _phones(dom)
    assert list(phones) == ["Sam", "Alex"], dom[-3000:]  # one phone per partner, in order
    for partner, got in (("Sam", sam), ("Alex", alex)):
        markup = phones[partner]
        assert _texts(markup, "title") == [got.title]
        assert _texts(markup, "body") == [got.body]
        assert 'data-channel="push"' in markup and "Tandem · push" in markup
        [late] = _texts(markup, "lateness")
        assert re.fullmatch(r"\d+(\.\d+)? s late", late), late  # seconds after the instant
    upcoming = re.search(r'<div id="upcoming">(.*?)</aside>', dom, re.S)
    assert upcoming and "Evening check-in" in upcoming.group(1)
    assert "Sam " in upcoming.group(1) and "Alex " in upcoming.group(1)

    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
