"""The content worker against a real broker and a real Redis.

The worker runs in-process (``async with build(...)``); the test publishes ``ritual.due``
records with a plain aiokafka producer and reads ``nudge.ready`` and ``ritual.due.dlq`` with
its own consumer group. Every wait polls for a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.content.decks import load_catalog
from services.content.store import ContentStore
from services.content.worker import build
from shared import topics
from shared.events import DeadLetter, NudgeReady, PartnerInfo, Recipient, RitualDue
from shared.ids import OccurrenceId
from shared.kafka import ensure_topics
from shared.redis import Keys, make_redis
from shared.settings import Settings

TIMEOUT = 30.0
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
ALEX = PartnerInfo(id="p_alex", name="Alex", timezone="Europe/Berlin")
SAM = PartnerInfo(id="p_sam", name="Sam", timezone="America/New_York")
CATALOG = load_catalog()


def recipient(p: PartnerInfo) -> Recipient:
    return Recipient(id=p.id, name=p.name, timezone=p.timezone, channels=[])


def together(couple: str, n: int, *, kind: str = "weekly_questions", **kw: object) -> RitualDue:
    """The ``n``-th weekly occurrence of a together ritual of ``couple``."""
    at = datetime(2026, 11, 2, 20, tzinfo=UTC) + timedelta(weeks=n)
    base: dict[str, object] = dict(
        occurrence_id=str(OccurrenceId(f"rit_{couple}", at)),
        couple_id=couple,
        couple_name="Alex & Sam",
        ritual_id=f"rit_{couple}",
        kind=kind,
        title="Weekly questions",
        delivery="together",
        scheduled_for=at,
        wall_time=at.astimezone(BERLIN).replace(tzinfo=None),
        ordinal=n,
        partners=[ALEX, SAM],
        recipients=[recipient(ALEX), recipient(SAM)],
    )
    base.update(kw)
    return RitualDue.model_validate(base)


def local_pair(couple: str, day: int) -> tuple[RitualDue, RitualDue]:
    """Alex's (Berlin) and Sam's (New York) 07:30 morning kiss on one couple day."""
    out = []
    for partner, zone in ((ALEX, BERLIN), (SAM, NEW_YORK)):
        wall = datetime(2026, 11, 23, 7, 30) + timedelta(days=day)
        at = wall.replace(tzinfo=zone).astimezone(UTC)
        out.append(
            RitualDue(
                occurrence_id=str(OccurrenceId(f"rit_k_{couple}", at, partner.id)),
                couple_id=couple,
                couple_name="Alex & Sam",
                ritual_id=f"rit_k_{couple}",
                kind="morning_kiss",
                title="Six-second kiss",
                delivery="local",
                scheduled_for=at,
                wall_time=wall,
                ordinal=day,
                partners=[ALEX, SAM],
                recipients=[recipient(partner)],
            )
        )
    return out[0], out[1]


class Bus:
    """A producer for ``ritual.due`` and a consumer of what the worker emits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        servers = settings.kafka_bootstrap.split(",")
        self.producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=False)
        self.consumer = AIOKafkaConsumer(
            topics.NUDGE_READY,
            topics.dlq(topics.RITUAL_DUE),
            bootstrap_servers=servers,
            group_id=f"test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
        )
        self.nudges: list[NudgeReady] = []
        self.dead: list[DeadLetter] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _collect(self) -> None:
        async for record in self.consumer:
            if record.topic == topics.NUDGE_READY:
                self.nudges.append(NudgeReady.model_validate_json(record.value))
            else:
                self.dead.append(DeadLetter.model_validate_json(record.value))

    async def send(
        self, event: RitualDue | bytes, *, key: str = "cpl", partition: int | None = None
    ) -> None:
        value = event if isinstance(event, bytes) else event.model_dump_json().encode()
        if isinstance(event, RitualDue):
            key = event.couple_id
        await self.producer.send_and_wait(
            topics.RITUAL_DUE, value, key=key.encode(), partition=partition
        )

    def of(self, couple: str) -> list[NudgeReady]:
        return [n for n in self.nudges if n.couple_id == couple]

    async def wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}: {len(self.nudges)} nudges, "
                    f"{[d.reason for d in self.dead]} dead letters"
                )
            await asyncio.sleep(0.05)


@pytest.fixture
async def bus(infra) -> AsyncIterator[Bus]:  # type: ignore[no-untyped-def]
    settings = infra.settings()
    await ensure_topics(settings)
    b = Bus(settings)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def start_workers(stack: AsyncExitStack, settings: Settings, n: int = 1) -> None:
    for _ in range(n):
        await stack.enter_async_context(build(settings, catalog=CATALOG))


async def history_used(settings: Settings, couple: str, deck: str) -> frozenset[str]:
    redis = make_redis(settings)
    try:
        store = ContentStore(redis, Keys(settings.redis_prefix))
        return (await store.history(couple, deck)).used
    finally:
        await redis.aclose()


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
