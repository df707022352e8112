"""The notifier over a real broker and a real Redis, delivering to the local inbox sinks."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.notifier import metrics
from shared.events import QuietHours
from tandem.inbox import Fault, Inbox
from tandem.notifier_harness import (
    Couple,
    Partner,
    make_nudge,
    publish_nudges,
    running_notifier,
    set_paused,
    store_couple,
    watching,
)
from tests.support.notifier import fast, received, two_partners


async def test_both_partners_receive_the_same_nudge(infra, inbox: Inbox) -> None:
    settings = fast(infra)
    tag = "both"
    couple = Couple(
        id="cpl_both",
        partners=[
            Partner("sam", [("c_sam_push", "push", inbox.json_url(f"sam-{tag}"))]),
            Partner("alex", [("c_alex_mail", "email", inbox.mailto_url("alex@example.com"))]),
        ],
    )
    await store_couple(settings, couple)
    nudge = make_nudge(couple)
    skew_before = metrics.SKEW._sum.get()
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, nudge)
        await received(inbox, lambda r: len(r) >= 2)
        await out.wait_for(lambda o: len(o.delivered) >= 2)
    sam = inbox.to(f"sam-{tag}")
    alex = inbox.to("alex@example.com")
    assert len(sam) == 1 and len(alex) == 1
    assert nudge.occurrence_id in sam[0].body
    assert alex[0].body.endswith("(long)")  # e-mail gets the long body
    by_partner = {d.partner_id: d for d in out.delivered}
    assert by_partner["sam"].channel_id == "c_sam_push"
    assert by_partner["alex"].channel_kind == "email"
    assert all(d.attempt == 1 and d.latency_ms >= 0 for d in out.delivered)
    assert all(d.prompt_id == "hug-1" for d in out.delivered)
    # Redacted channel only: no address or port of the real URL in the events.
    assert "example.com" not in json.dumps([d.model_dump(mode="json") for d in out.delivered])
    skew = metrics.partner_skew(out.delivered)
    assert skew is not None and skew < 5
    assert metrics.SKEW._sum.get() >= skew_before


async def test_falls_back_to_the_next_channel(infra, inbox: Inbox) -> None:
    settings = fast(infra)
    couple = Couple(
        id="cpl_fb",
        partners=[
            Partner(
                "sam",
                [
                    ("c_sam_push", "push", inbox.json_url("sam-push")),
                    ("c_sam_sms", "sms", inbox.json_url("sam-sms")),
                ],
            ),
            Partner("alex", [("c_alex_push", "push", inbox.ntfy_url("alex-push"))]),
        ],
    )
    inbox.fault("sam-push", Fault(forever=True))
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, make_nudge(couple))
        await out.wait_for(lambda o: len(o.delivered) >= 2)
    assert inbox.attempts("sam-push") == 1
    assert len(inbox.to("sam-sms")) == 1 and len(inbox.to("alex-push")) == 1
    sam = out.delivered_to("sam")[0]
    assert (sam.channel_id, sam.channel_kind, sam.attempt) == ("c_sam_sms", "sms", 1)
    assert sam.channel == "sms://***/c_sam_sms"


async def test_retries_with_backoff_then_delivers(infra, inbox: Inbox) -> None:
    settings = fast(infra)
    couple = two_partners(inbox, "retry")
    sam_address = "sam-retry"
    inbox.fault(sam_address, Fault(fail=2))
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, make_nudge(couple))
        await out.wait_for(lambda o: len(o.delivered) >= 2)
        await asyncio.sleep(0.5)  # room for a wrong extra send to show up
    assert inbox.attempts(sam_address) == 3
    assert len(inbox.to(sam_address)) == 1
    sam = out.delivered_to(couple.partners[0].id)[0]
    assert sam.attempt == 3
    interim = [f for f in out.failed if f.partner_id == couple.partners[0].id]
    assert [f.final for f in interim] == [False, False]
    assert out.dead == []


async def test_dead_letters_after_max_attempts(infra, inbox: Inbox) -> None:
    settings = fast(infra)
    couple = Couple(
        id="cpl_dlq",
        partners=[
            Partner(
                "sam",
                [
                    ("c_sam_push", "push", inbox.json_url("sam-a")),
                    ("c_sam_mail", "email", inbox.mailto_url("sam@example.com")),
                ],
            ),
            Partner("alex", [("c_alex_push", "push", inbox.ntfy_url("alex-a"))]),
        ],
    )
    inbox.fault("sam-a", Fault(forever=True))
    inbox.fault("sam@example.com", Fault(forever=True))
    await store_couple(settings, couple)
    nudge = make_nudge(couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, nudge)
        await out.wait_for(lambda o: len(o.dead) >= 1 and any(f.final for f in o.failed))
    letter = out.dead[0]
    assert letter.source_topic == "nudge.ready" and letter.key == "cpl_dlq"
    assert letter.service == "notifier"
    assert letter.partition is not None and letter.offset is not None
    assert json.loads(letter.payload)["occurrence_id"] == nudge.occurrence_id
    # Every attempt, on every channel: 3 attempts x 2 channels.
    assert len(letter.errors) == 6
    assert sum("c_sam_mail" in e for e in letter.errors) == 3
    final = [f for f in out.failed if f.final]
    assert len(final) == 1 and final[0].partner_id == "sam"
    assert [a.attempt for a in final[0].attempts] == [1, 1, 2, 2, 3, 3]
    assert "example.com" not in letter.model_dump_json()  # errors carry no address
    assert inbox.attempts("sam-a") == 3
    assert len(out.delivered) == 1 and out.delivered[0].partner_id == "alex"


async def test_same_nudge_twice_is_delivered_once(infra, inbox: Inbox) -> None:
    settings = fast(infra)
    couple = two_partners(inbox, "dup")
    await store_couple(settings, couple)
    nudge = make_nudge(couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, nudge, nudge)
        await received(inbox, lambda r: len(r) >= 2)
        # The second copy is processed after the first (same key, same partition); once
        # a later nudge has arrived, the duplicate has certainly been handled.
        marker = make_nudge(couple)
        await publish_nudges(settings, marker)
        await received(inbox, lambda r: len(r) >= 4)
        await asyncio.sleep(0.3)
    for p in couple.partners:
        assert (
            sum(
                nudge.occurrence_id in r.body
                for r in inbox.received
                if p.id.split("_")[0] in r.address
            )
            == 1
        )
    assert len(inbox.received) == 4
    ids = {(d.occurrence_id, d.partner_id) for d in out.delivered}
    assert len(ids) == 4


async def test_pause_stops_delivery_including_retries(infra, inbox: Inbox) -> None:
    settings = fast(infra, delivery_backoff_seconds=1.0, delivery_backoff_max_seconds=2.0)
    couple = two_partners(inbox, "pause")
    sam_address = "sam-pause"
    inbox.fault(sam_address, Fault(fail=1))
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, make_nudge(couple))
        # Alex got it; Sam's first attempt failed and a retry is pending: pause now.
        await out.wait_for(lambda o: len(o.delivered) >= 1 and len(o.failed) >= 1)
        await set_paused(settings, couple.id, True)
        await out.wait_for(lambda o: any(f.reason == "paused" for f in o.failed))
        later = make_nudge(couple)
        await publish_nudges(settings, later)
        await out.wait_for(lambda o: sum(f.reason == "paused" for f in o.failed) >= 3)
    assert inbox.attempts(sam_address) == 1
    assert len(inbox.to(sam_address)) == 0
    assert [d.partner_id for d in out.delivered] == [couple.partners[1].id]
    assert all(f.final for f in out.failed if f.reason == "paused")


def _quiet_now(zone: str, seconds: float) -> QuietHours:
    """A quiet window, in ``zone``, that started a minute ago and ends ``seconds`` from now."""
    local = datetime.now(ZoneInfo(zone))
    return QuietHours(
        start=(local - timedelta(minutes=1)).time().replace(microsecond=0),
        end=(local + timedelta(seconds=seconds)).time().replace(microsecond=0),
    )


@pytest.mark.parametrize("policy", ["hold_both", "per_partner"])
async def test_quiet_hours_hold_until_the_window_ends(infra, inbox: Inbox, policy: str) -> None:
    settings = fast(infra)
    couple = two_partners(inbox, f"quiet{policy[:3]}")
    sam, alex = couple.partners
    sam.timezone = "Asia/Kolkata"  # a +05:30 zone: the window is read in the partner's zone
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        sam.quiet_hours = _quiet_now(sam.timezone, 4)
        published = time.time()
        await publish_nudges(settings, make_nudge(couple, policy=policy))  # type: ignore[arg-type]
        await out.wait_for(lambda o: len(o.delivered) >= 2, within=60)
    assert sam.quiet_hours is not None
    window_end = datetime.combine(
        datetime.now(ZoneInfo(sam.timezone)).date(),
        sam.quiet_hours.end,
        tzinfo=ZoneInfo(sam.timezone),
    ).timestamp()
    if window_end < published - 3600:  # the window crossed midnight while we ran
        window_end += 86400
    by = {d.partner_id: d for d in out.delivered}
    assert by[sam.id].delivered_at.timestamp() >= window_end - 0.05
    if policy == "hold_both":
        assert by[alex.id].delivered_at.timestamp() >= window_end - 0.05
        skew = metrics.partner_skew(out.delivered)
        assert skew is not None and skew < 1.0
    else:
        assert by[alex.id].delivered_at.timestamp() < window_end - 1


async def test_custom_plugin_channel(
    infra, inbox: Inbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fast(infra)
    monkeypatch.setenv("TANDEMLOG_DIR", str(tmp_path))  # the plugin writes only below it
    log_file = tmp_path / "sam.jsonl"
    couple = Couple(
        id="cpl_plugin",
        partners=[
            Partner("sam", [("c_sam_log", "push", "tandemlog://sam.jsonl")]),
            Partner("alex", [("c_alex_push", "push", inbox.json_url("alex-plugin"))]),
        ],
    )
    await store_couple(settings, couple)
    nudge = make_nudge(couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, nudge)
        await out.wait_for(lambda o: len(o.delivered) >= 2)
    lines = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert len(lines) == 1 and nudge.occurrence_id in lines[0]["body"]
    assert out.delivered_to("sam")[0].channel_id == "c_sam_log"


async def test_deleted_couple_is_dropped(infra, inbox: Inbox, caplog) -> None:
    settings = fast(infra)
    ghost = two_partners(inbox, "ghost")  # never stored in the vault
    live = two_partners(inbox, "live")
    await store_couple(settings, live)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, make_nudge(ghost), make_nudge(live))
        await out.wait_for(lambda o: len(o.delivered) >= 2)
    assert all(d.couple_id == live.id for d in out.delivered)
    assert not any("ghost" in r.address for r in inbox.received)
    assert any("no longer exists" in r.getMessage() for r in caplog.records)


async def test_an_urgent_nudge_does_not_wait_for_a_place_behind_a_herd(infra, inbox: Inbox) -> None:
    # Every place a herd's deliveries take is held (a herd in full flight); a test nudge,
    # on its own lane, is delivered all the same.
    settings = fast(infra)
    couple = two_partners(inbox, "urgentplace")
    await store_couple(settings, couple)
    nudge = make_nudge(couple).model_copy(update={"urgent": True})
    async with watching(settings) as out, running_notifier(settings) as notifier:
        runs = notifier.delivery.runs
        held = 0
        while not runs.locked():
            await runs.acquire()
            held += 1
        try:
            await publish_nudges(settings, nudge)
            await out.wait_for(lambda o: len(o.delivered) >= 2)
        finally:
            for _ in range(held):
                runs.release()
    assert {d.partner_id for d in out.delivered} == {p.id for p in couple.partners}
