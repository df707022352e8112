"""The partners' web app in a real headless Chromium (Debian's, driven by Playwright) over
the real stack: a :class:`~tandem.dev.DevStack` runs the broker, Redis, the three services as
processes and the local inbox that stands in for both partners' phones.

Sam starts a couple, Alex joins from the invite link, each verifies a channel with the code
that lands in the inbox, they pick the evening check-in and press "send a test nudge", both
phones get it and the page says so, Sam presses "done" from the nudge and "Our rhythm" shows
it; Alex's stop link stops Alex's channel. Then what must be refused is refused, with a
clear message, and nothing changes. Screenshots of every page go to ``tmp_path`` (and, with
``TANDEM_SCREENSHOTS=<dir>``, to that directory: docs/screenshots is made that way).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tandem.embedded import free_port
from tandem.inbox import Received

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytest.importorskip("playwright")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]

PHONE = {"width": 390, "height": 844}  # the pages must work on a phone screen
WAIT = 60.0  # seconds any one step may take (never a speed assertion: a deadline for hangs)
# The visible form fields without a label (a <label>, aria-label or aria-labelledby).
_UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden' && !e.labels.length && !e.getAttribute('aria-label')
    && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML)"""
SAM_TOPIC = "sam-phone"
ALEX_EMAIL = "alex@example.com"


@dataclass
class Run:
    """The stack, the browser and what the tests share (screenshots, pages)."""

    stack: Any
    browser: Any
    shots: list[Path]
    out: Path
    pages: dict[str, Any] = field(default_factory=dict)

    def shot(self, page: Any, name: str) -> None:
        """A full-page screenshot named ``name``, kept as a test artefact -- of a page that
        labels every field and fits the phone's width."""
        assert page.evaluate(_UNLABELLED) == [], name
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        path = self.out / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        wanted = os.environ.get("TANDEM_SCREENSHOTS")
        if wanted:
            Path(wanted).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(wanted) / path.name)

    def new_page(self) -> Any:
        context = self.browser.new_context(viewport=PHONE, device_scale_factor=1)
        context.set_default_timeout(WAIT * 1000)  # generous: a slow, shared CI machine
        return context.new_page()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    from playwright.sync_api import sync_playwright

    from tandem.dev import DevStack

    out = tmp_path_factory.mktemp("screenshots")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    environ["TANDEM_API_PORT"] = str(free_port())
    with DevStack(environ=environ, run_dir=out / "run") as stack, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield Run(stack, browser, [], out)
        finally:
            browser.close()
    print(f"screenshots in {out}")


def _code(received: list[Received]) -> str:
    """The verification code in the newest message that carries one."""
    for item in reversed(received):
        found = re.search(r"\b(\d{3}) ?(\d{3})\b", item.body)
        if found and "code" in item.title.lower():
            return found[1] + found[2]
    raise AssertionError(f"no code among {received!r}")


def _wait_code(run: Run, address: str, seen: int) -> str:
    run.stack.inbox.wait_for(
        lambda got: len([r for r in got if r.address == address]) > seen, timeout=WAIT
    )
    return _code(run.stack.inbox.to(address))


def _link(item: Received, action: str) -> str:
    """The signed ``action`` link of a nudge: from ntfy's action buttons or the text."""
    text = f"{item.actions}\n{item.body}"
    label = {"done": "Done", "stop": "Stop"}[action]
    found = re.search(rf"{label}[^:,]*[:,]\s*(https?://\S+?)(?:[,\s]|$)", text)
    assert found, f"no {action} link in {text!r}"
    return found[1]


def _verify(run: Run, page: Any, address: str, seen: int) -> None:
    code = _wait_code(run, address, seen)
    page.get_by_label("The 6-digit code we sent there").fill(code)
    page.get_by_role("button", name="Verify").click()
    page.get_by_text("Verified: your nudges reach you there.").wait_for()


def test_a_couple_from_nothing_to_a_nudge_on_both_phones(run: Run) -> None:
    stack = run.stack
    sam = run.pages["sam"] = run.new_page()
    alex = run.pages["alex"] = run.new_page()

    # Sam starts a couple and gets the invite link to share.
    sam.goto(f"{stack.api_url}/app/")
    run.shot(sam, "1-start")
    sam.get_by_label("Your first name").fill("Sam")
    sam.get_by_label("Your time zone").fill("Europe/Berlin")
    sam.get_by_label("What shall we call the two of you?").fill("Sam & Alex")
    sam.get_by_role("button", name="Start, and invite my partner").click()
    invite = sam.get_by_label("Invite link").input_value()
    run.pages["invite"] = invite
    run.shot(sam, "2-invite")

    # Alex opens it and joins with their own details.
    alex.goto(invite)
    run.shot(alex, "3-join")
    alex.get_by_label("Your first name").fill("Alex")
    alex.get_by_label("Your time zone").fill("America/New_York")
    alex.get_by_role("button", name="Join Sam").click()
    alex.get_by_text("Welcome, Alex!").wait_for()
    run.shot(alex, "4-channels")

    # Each adds a channel with a helper form and enters the code the inbox received.
    sam.goto(f"{stack.api_url}/app/channels")
    sam.get_by_label(re.compile("^Topic on")).fill(SAM_TOPIC)
    # The QR code (drawn by the server, loaded under the page's CSP) and the subscribe
    # link follow the edited topic.
    qr = sam.locator("#ntfy-qr img")
    qr.wait_for()
    assert f"topic={SAM_TOPIC}" in str(qr.get_attribute("src"))
    sam.wait_for_function("() => document.querySelector('#ntfy-qr img').naturalWidth > 0")
    assert f"/{SAM_TOPIC}" in str(sam.locator("#ntfy-subscribe").get_attribute("href"))
    sam.get_by_role("button", name="Use this topic").click()
    _verify(run, sam, SAM_TOPIC, 0)
    alex.get_by_label("My e-mail address").fill(ALEX_EMAIL)
    alex.get_by_role("button", name="Send the code by e-mail").click()
    alex.get_by_text(f"We sent a code to {ALEX_EMAIL}").wait_for()
    run.shot(alex, "5-code-sent")
    _verify(run, alex, ALEX_EMAIL, 0)
    alex.get_by_text("You are both set").wait_for()

    # They pick the evening check-in and send a test nudge to both phones.
    sam.goto(f"{stack.api_url}/app/rituals")
    run.shot(sam, "6-rituals-catalogue")
    card = sam.locator('[data-card="checkin"]')
    card.get_by_role("button", name="Add Evening check-in").click()
    sam.get_by_text("Added “Evening check-in”.").wait_for()
    chosen = sam.locator('[data-ritual="evening_checkin"]')
    assert "Next for Sam" in chosen.inner_text() and "Next for Alex" in chosen.inner_text()
    before = {a: len(stack.inbox.to(a)) for a in (SAM_TOPIC, ALEX_EMAIL)}
    # By keyboard: the button takes focus and Enter presses it.
    chosen.get_by_role("button", name="Send a test nudge to both phones").focus()
    sam.keyboard.press("Enter")
    for name in ("Sam", "Alex"):  # the page's live confirmation, from delivery receipts
        status = sam.locator("#test li", has_text=name).locator(".phone-status")
        status.filter(has_text="got it").wait_for()
    run.shot(sam, "7-test-nudge-arrived")
    got = stack.inbox.wait_for(
        lambda r: all(len([x for x in r if x.address == a]) > n for a, n in before.items()),
        timeout=WAIT,
    )
    nudge = {a: [r for r in got if r.address == a][-1] for a in before}
    assert nudge[SAM_TOPIC].title == nudge[ALEX_EMAIL].title != ""
    run.pages["alex_nudge"] = nudge[ALEX_EMAIL]

    # Sam presses "done" from the nudge; "Our rhythm" shows it.
    sam.goto(_link(nudge[SAM_TOPIC], "done"))
    sam.get_by_role("button", name="Mark it done").click()
    sam.get_by_text("Marked done.").wait_for()
    sam.goto(f"{stack.api_url}/app/rhythm")
    row = sam.locator("#history tbody tr").first
    assert "Evening check-in" in row.inner_text()
    assert "done" in row.locator("td.answer").first.inner_text()
    run.shot(sam, "8-our-rhythm")


def test_a_stop_link_stops_that_channel(run: Run) -> None:
    stack, alex = run.stack, run.pages["alex"]
    alex.goto(_link(run.pages["alex_nudge"], "stop"))
    run.shot(alex, "9-stop-link")  # the API's own page (api/stop.py)
    alex.get_by_role("button", name=re.compile("^Pause")).first.click()
    alex.goto(f"{stack.api_url}/app/channels")
    card = alex.locator('[data-state="paused"]')
    assert card.count() == 1, alex.content()[-2000:]

    # The next test nudge reaches Sam only.
    sam = run.pages["sam"]
    before = {a: len(stack.inbox.to(a)) for a in (SAM_TOPIC, ALEX_EMAIL)}
    sam.goto(f"{stack.api_url}/app/rituals")
    sam.get_by_role("button", name="Send a test nudge to both phones").click()
    stack.inbox.wait_for(
        lambda r: len([x for x in r if x.address == SAM_TOPIC]) > before[SAM_TOPIC]
    )
    time.sleep(3)  # Alex's copy would have been sent alongside Sam's
    assert len(stack.inbox.to(ALEX_EMAIL)) == before[ALEX_EMAIL]


def test_a_used_invite_is_refused(run: Run) -> None:
    page = run.new_page()
    response = page.goto(run.pages["invite"])
    assert response is not None and response.status == 410
    page.get_by_text("This invite was already used: ask your partner for a new link").wait_for()
    assert page.get_by_role("button", name=re.compile("^Join")).count() == 0
    run.shot(page, "10-invite-used")


def test_five_wrong_codes_void_the_code(run: Run) -> None:
    stack, alex = run.stack, run.pages["alex"]
    address = "alex.second@example.com"
    alex.goto(f"{stack.api_url}/app/channels")
    alex.get_by_label("My e-mail address").fill(address)
    alex.get_by_role("button", name="Send the code by e-mail").click()
    right = _wait_code(run, address, 0)
    wrong = "000000" if right != "000000" else "111111"
    pending = alex.locator('[data-state="pending"]')
    for left in (4, 3, 2, 1):
        pending.get_by_label("The 6-digit code we sent there").fill(wrong)
        pending.get_by_role("button", name="Verify").click()
        alex.get_by_text(f"({left} attempts left)").wait_for()
    pending.get_by_label("The 6-digit code we sent there").fill(wrong)
    pending.get_by_role("button", name="Verify").click()
    alex.get_by_text("that was the last attempt: send a new code").wait_for()
    run.shot(alex, "11-wrong-code")
    # Even the right code no longer works: the channel stays unverified.
    pending.get_by_label("The 6-digit code we sent there").fill(right)
    pending.get_by_role("button", name="Verify").click()
    alex.get_by_text("No code is waiting for this channel").wait_for()
    assert pending.count() == 1


def test_one_partner_cannot_touch_the_others_channel(run: Run) -> None:
    stack, sam, alex = run.stack, run.pages["sam"], run.pages["alex"]
    sam.goto(f"{stack.api_url}/app/channels")
    sams = sam.locator("[data-channel]").first.get_attribute("data-channel")
    alex.goto(f"{stack.api_url}/app/channels")
    assert sams and sams not in alex.content()  # never shown to Alex
    csrf = alex.locator('input[name="csrf"]').first.input_value()
    answer = alex.context.request.post(
        f"{stack.api_url}/app/channels/{sams}/pause", form={"csrf": csrf}
    )
    assert answer.status == 404 and "Channel not found" in answer.text()
    sam.reload()
    assert sam.locator(f'[data-channel="{sams}"]').get_attribute("data-state") == "active"


def test_a_form_without_the_csrf_token_is_refused(run: Run) -> None:
    stack, sam = run.stack, run.pages["sam"]
    sam.goto(f"{stack.api_url}/app/rhythm")
    goals = sam.locator("#goals").inner_text()
    forged = sam.context.request.post(
        f"{stack.api_url}/app/rhythm/goals", form={"text": "Forged goal"}
    )
    assert forged.status == 403
    assert "did not come from Tandem" in forged.text()
    sam.reload()
    assert sam.locator("#goals").inner_text() == goals  # nothing changed
    # A cross-site form: the browser does not even send the session (SameSite=Lax).
    evil = run.new_page()
    evil.set_content(
        f'<form method="post" action="{stack.api_url}/app/rhythm/goals">'
        '<input name="text" value="Evil goal"><button>go</button></form>'
    )
    evil.get_by_role("button", name="go").click()
    evil.wait_for_load_state()
    assert "did not come from Tandem" in evil.content()
    sam.reload()
    assert "Evil goal" not in sam.locator("#goals").inner_text()


def test_the_demo_invite_takes_a_newcomer_to_the_first_nudge(run: Run) -> None:
    """What ``tandem dev --demo`` prepares: Robin started a couple and verified a phone;
    whoever opens the printed invite link joins, verifies, and gets the first nudge."""
    from tandem.dev import INVITER_TOPIC, create_invited

    stack = run.stack
    invited = create_invited(stack, code_timeout=WAIT)
    kim, address = run.new_page(), "kim@example.com"
    kim.goto(invited.invite_url)  # /join/<token>, as printed
    kim.get_by_label("Your first name").fill("Kim")
    kim.get_by_label("Your time zone").fill("Asia/Tokyo")
    kim.get_by_role("button", name="Join Robin").click()
    kim.get_by_label("My e-mail address").fill(address)
    kim.get_by_role("button", name="Send the code by e-mail").click()
    _verify(run, kim, address, 0)
    kim.get_by_text("You are both set").wait_for()

    kim.goto(f"{stack.api_url}/app/rituals")
    kim.locator('[data-card="hug"]').get_by_role("button", name="Add 20-second hug").click()
    before = len(stack.inbox.to(INVITER_TOPIC))
    kim.get_by_role("button", name="Send a test nudge to both phones").click()
    for name in ("Robin", "Kim"):
        status = kim.locator("#test li", has_text=name).locator(".phone-status")
        status.filter(has_text="got it").wait_for()
    assert len(stack.inbox.to(INVITER_TOPIC)) > before
    assert any("hug" in r.title.lower() for r in stack.inbox.to(address))
