"""The content worker against a real broker and a real Redis.

The worker runs in-process (``async with build(...)``); the test publishes ``ritual.due``
records with a plain aiokafka producer and reads ``nudge.ready`` and ``ritual.due.dlq`` with
its own consumer group (the ``bus`` fixture, :class:`tests.support.content_worker.Bus`). Every
wait polls for a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack

from shared import topics
from tests.support.content import local_pair, together
from tests.support.content_worker import CATALOG, Bus, history_used, start_workers


async def test_no_repeats_and_levels_in_order(bus: Bus) -> None:
    async with AsyncExitStack() as stack:
        await start_workers(stack, bus.settings)
        deck = CATALOG.get("closer-by-degrees")
        assert deck is not None
        for n in range(14):
            await bus.send(together("cpl_prog", n, deck="closer-by-degrees"))
        for n in range(8):
            await bus.send(together("cpl_weekly", n))
        await bus.wait(lambda: len(bus.of("cpl_prog")) == 14, "14 progressive nudges")
        await bus.wait(lambda: len(bus.of("cpl_weekly")) == 8, "8 weekly nudges")

    progressive = sorted(bus.of("cpl_prog"), key=lambda n: n.ordinal)
    ids = [n.prompt.prompt_id for n in progressive]
    assert len(set(ids)) == 14  # no repeats
    levels = [n.prompt.level for n in progressive]
    assert levels == [1] * 10 + [2] * 4  # all of level 1 before level 2
    weekly = [n.prompt.prompt_id for n in bus.of("cpl_weekly")]
    assert len(set(weekly)) == 8
    assert all(n.prompt.deck == "weekly-questions" for n in bus.of("cpl_weekly"))
    for nudge in bus.nudges:  # every partner got words of their own
        assert {m.partner_id for m in nudge.messages} == {"p_alex", "p_sam"}
        assert nudge.message_for("p_alex").body.startswith("Alex,")
    assert len(await history_used(bus.settings, "cpl_prog", "closer-by-degrees")) == 14


async def test_the_two_local_occurrences_of_a_couple_day_share_a_prompt(bus: Bus) -> None:
    async with AsyncExitStack() as stack:
        await start_workers(stack, bus.settings)
        for day in range(3):
            for event in local_pair("cpl_local", day):
                await bus.send(event)
        await bus.wait(lambda: len(bus.of("cpl_local")) == 6, "6 local nudges")

    by_day: dict[int, set[str]] = {}
    for nudge in bus.of("cpl_local"):
        assert len(nudge.messages) == 1 and nudge.messages[0].partner_id in ("p_alex", "p_sam")
        by_day.setdefault(nudge.ordinal, set()).add(nudge.prompt.prompt_id)
    assert all(len(ids) == 1 for ids in by_day.values())  # one prompt per couple day
    assert len(set().union(*by_day.values())) == 3  # and a new one each day
    used = await history_used(bus.settings, "cpl_local", "six-second-kiss")
    assert len(used) == 3  # the deck advanced once per couple day, not per partner


async def test_two_replicas_handling_both_partners_at_once_agree(bus: Bus) -> None:
    days = 6
    async with AsyncExitStack() as stack:
        await start_workers(stack, bus.settings, n=2)
        pairs = [local_pair("cpl_race", day) for day in range(days)]
        # Spread each pair over partitions the two replicas split between them, so the
        # two partners' occurrences of one day are handled concurrently.
        await asyncio.gather(
            *(bus.send(alex, partition=0) for alex, _ in pairs),
            *(bus.send(sam, partition=3) for _, sam in pairs),
        )
        await bus.wait(lambda: len(bus.of("cpl_race")) == 2 * days, "all racing nudges")

    by_day: dict[int, set[str]] = {}
    for nudge in bus.of("cpl_race"):
        by_day.setdefault(nudge.ordinal, set()).add(nudge.prompt.prompt_id)
    assert all(len(ids) == 1 for ids in by_day.values()), by_day
    assert len(set().union(*by_day.values())) == days
    assert len(await history_used(bus.settings, "cpl_race", "six-second-kiss")) == days


async def test_a_redelivered_occurrence_gets_the_same_prompt_once(bus: Bus) -> None:
    async with AsyncExitStack() as stack:
        await start_workers(stack, bus.settings)
        first = together("cpl_redo", 0)
        again = first.model_copy(update={"event_id": uuid.uuid4().hex})  # a re-publish
        await bus.send(first)
        await bus.send(again)
        await bus.wait(lambda: len(bus.of("cpl_redo")) == 2, "both deliveries")
        await bus.send(together("cpl_redo", 1))
        await bus.wait(lambda: len(bus.of("cpl_redo")) == 3, "the next occurrence")

    a, b, c = bus.of("cpl_redo")
    assert a.occurrence_id == b.occurrence_id and a.prompt == b.prompt
    assert c.prompt.prompt_id != a.prompt.prompt_id
    used = await history_used(bus.settings, "cpl_redo", "weekly-questions")
    assert used == {a.prompt.prompt_id, c.prompt.prompt_id}


async def test_transition_mode_reads_the_simplified_variant(bus: Bus) -> None:
    async with AsyncExitStack() as stack:
        await start_workers(stack, bus.settings)
        await bus.send(
            together("cpl_easy", 0, kind="evening_checkin", title="Evening", transition_mode=True)
        )
        await bus.wait(lambda: len(bus.of("cpl_easy")) == 1, "the transition nudge")

    (nudge,) = bus.of("cpl_easy")
    deck = CATALOG.get("evening-highs-and-lows")
    assert deck is not None
    prompt = deck.prompt(nudge.prompt.prompt_id)
    assert prompt is not None and prompt.simplified
    assert nudge.prompt.simplified and nudge.prompt.text == prompt.simplified
    body = nudge.message_for("p_sam").body
    assert "two-minute check-in" in body and prompt.simplified in body


async def test_poison_goes_to_the_dlq_and_the_consumer_keeps_going(bus: Bus) -> None:
    async with AsyncExitStack() as stack:
        await start_workers(stack, bus.settings)
        bad_deck = together("cpl_bad", 0, deck="no-such-deck")
        v2 = json.loads(together("cpl_bad", 1).model_dump_json())
        v2["schema_version"] = 2
        await bus.send(b'{"occurrence_id": "x", oops', key="cpl_bad")
        await bus.send(bad_deck)
        await bus.send(json.dumps(v2).encode(), key="cpl_bad")
        await bus.send(b'{"schema_version": 1, "couple_id": "cpl_bad"}', key="cpl_bad")
        good = together("cpl_bad", 2)
        await bus.send(good)
        await bus.wait(lambda: len(bus.dead) == 4, "four dead letters")
        await bus.wait(lambda: len(bus.of("cpl_bad")) == 1, "the good event after them")

    reasons = [d.reason for d in bus.dead]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1] == "unknown deck 'no-such-deck' for ritual 'rit_cpl_bad'"
    assert reasons[2].startswith("unknown schema_version 2")
    assert reasons[3].startswith("RitualDue invalid")
    assert all(d.source_topic == topics.RITUAL_DUE and d.service == "content" for d in bus.dead)
    assert all(d.key == "cpl_bad" for d in bus.dead)
    assert bus.dead[1].payload == bad_deck.model_dump_json()
    assert bus.of("cpl_bad")[0].occurrence_id == good.occurrence_id
