"""Partners answering back, as the content worker sees it, over a real broker and Redis:
signed links on every ritual nudge, and a snooze that reads the same prompt as its original
without moving the deck on."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import date

from shared.events import NudgeReady, WeeklySummary
from shared.links import ACTIONS, STOP, verify, verify_stop
from tests.support.content import SAM, local_pair, recipient, together
from tests.support.content_worker import Bus, history_used, start_workers

PUBLIC = "https://tandem.example"


def assert_links(nudge: NudgeReady, key: str) -> None:
    """Every partner's message has the three links, each verifying for that partner, then
    their stop link."""
    assert key and len(nudge.messages) == 2
    for message in nudge.messages:
        assert list(message.actions) == [*ACTIONS, STOP]
        stop = verify_stop(key, message.actions[STOP].removeprefix(f"{PUBLIC}/s/"))
        assert (stop.couple_id, stop.partner_id) == (nudge.couple_id, message.partner_id)
        for action in ACTIONS:
            url = message.actions[action]
            assert url.startswith(f"{PUBLIC}/a/")
            grant = verify(key, url.removeprefix(f"{PUBLIC}/a/"))
            assert grant.couple_id == nudge.couple_id
            assert grant.occurrence_id == nudge.occurrence_id
            assert grant.partner_id == message.partner_id and grant.action == action
        assert PUBLIC not in message.body  # the links ride beside the lock-screen text


async def test_links_and_a_snooze_that_reads_its_originals_prompt(bus: Bus) -> None:
    """One test, one broker: the links on a ritual nudge, then its snooze, a celebration, a
    summary (and one without its numbers, dead-lettered) and the next occurrence, with the
    deck moved once per original only."""
    original = together("cpl_snooze", 0)
    snooze = together(
        "cpl_snooze",
        0,
        occurrence_id=f"{original.occurrence_id}/{SAM.id}~snooze",
        origin_occurrence_id=original.occurrence_id,
        trigger="snooze",
        scheduled_for=original.scheduled_for.replace(minute=15),
        recipients=[recipient(SAM)],
    )
    both = together(
        "cpl_snooze", 0, occurrence_id="rit_cpl_snooze@20261102T2100~both", purpose="celebration"
    )
    summary = together(
        "cpl_snooze",
        2,
        kind="weekly_summary",
        purpose="summary",
        summary=WeeklySummary(week_start=date(2026, 11, 9), rituals=[]),
    )
    no_summary = together("cpl_snooze", 3, kind="weekly_summary", purpose="summary")
    alex_local, sam_local = local_pair("cpl_snooze", 0)
    local_snooze = sam_local.model_copy(
        update={
            "occurrence_id": f"{sam_local.occurrence_id}~snooze",
            "origin_occurrence_id": sam_local.occurrence_id,
            "trigger": "snooze",
        }
    )
    async with AsyncExitStack() as stack:
        await start_workers(stack, bus.settings.model_copy(update={"public_url": PUBLIC}))
        for event in (original, alex_local, sam_local):
            await bus.send(event)
        await bus.wait(lambda: len(bus.of("cpl_snooze")) == 3, "the originals")
        for event in (snooze, local_snooze, both, together("cpl_snooze", 1), summary, no_summary):
            await bus.send(event)
        await bus.wait(lambda: len(bus.of("cpl_snooze")) == 8, "snoozes and the next one")
        await bus.wait(lambda: len(bus.dead) == 1, "the summary without numbers")

    by_id = {n.occurrence_id: n for n in bus.of("cpl_snooze")}
    first, again = by_id[original.occurrence_id], by_id[snooze.occurrence_id]
    assert_links(first, bus.settings.secret_key or "")
    assert again.prompt == first.prompt
    assert [m.partner_id for m in again.messages] == [SAM.id]
    assert again.message_for(SAM.id).body == first.message_for(SAM.id).body
    # the snooze's own links name the snooze's occurrence, so answering it answers that one
    token = again.message_for(SAM.id).actions["done"].rsplit("/", 1)[1]
    assert verify(bus.settings.secret_key or "", token).occurrence_id == snooze.occurrence_id
    assert by_id[local_snooze.occurrence_id].prompt == by_id[sam_local.occurrence_id].prompt
    assert by_id[both.occurrence_id].prompt.prompt_id == "celebration"
    assert by_id[summary.occurrence_id].prompt.prompt_id == "weekly-summary"
    assert all(m.actions == {} for m in by_id[summary.occurrence_id].messages)
    assert "carries no summary" in bus.dead[0].reason
    nxt = by_id[together("cpl_snooze", 1).occurrence_id]
    # the deck moved once per original, never for a snooze or a celebration
    assert await history_used(bus.settings, "cpl_snooze", "weekly-questions") == {
        first.prompt.prompt_id,
        nxt.prompt.prompt_id,
    }
    assert len(await history_used(bus.settings, "cpl_snooze", "six-second-kiss")) == 1
