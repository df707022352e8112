"""Bounded redelivery over the real stack (a Kafka-protocol broker, redis-server, the
services in process): a record whose handler keeps raising something that is not transient
is tried ``TANDEM_HANDLER_MAX_ATTEMPTS`` times, then dead-lettered with the exception, and
the couples queued behind it on the same partition are served meanwhile -- not after
someone deleted the bad couple. The same rule for the notifier's delay-queue jobs.

The deadlines are generous (30 s); the point is "within seconds", not "forever".
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

from services.content import worker as content_worker
from services.content.compose import compose
from services.notifier.store import Job, NotifierStore, now_ms
from shared.events import QuietHours
from shared.kafka import make_broker
from shared.redis import Keys, make_redis
from shared.topics import NUDGE_READY
from tandem.inbox import Inbox
from tandem.notifier_harness import (
    Couple,
    Partner,
    make_nudge,
    running_notifier,
    store_couple,
    watching,
)
from tests.support.content import together
from tests.support.content_worker import Bus, start_workers

DEADLINE = 30.0
# Quiet hours as an older API stored them, with a UTC offset: the notifier's quiet-hours
# maths compares them with a naive wall time and raises TypeError, on every try.
ODD_QUIET_HOURS = QuietHours.model_validate({"start": "23:00+05:00", "end": "07:00"})
NAIVE_AWARE = "can't compare offset-naive and offset-aware times"


def _couple(name: str, inbox: Inbox, *, quiet: QuietHours | None = None) -> Couple:
    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    return Couple(
        id=f"cpl_{tag}",
        partners=[Partner("sam", [("c_sam", "push", inbox.json_url(tag))], quiet_hours=quiet)],
    )


def _address(couple: Couple) -> str:
    """Where the couple's partner's messages land in the inbox."""
    return couple.id.removeprefix("cpl_")


async def test_a_nudge_the_notifier_cannot_handle_does_not_stall_its_partition(
    infra, inbox: Inbox
) -> None:
    settings = infra.settings(delivery_connect_timeout=1.0, delivery_read_timeout=2.0)
    good = [_couple(f"good{n}", inbox) for n in range(4)]
    bad = _couple("bad", inbox, quiet=ODD_QUIET_HOURS)
    for couple in (*good, bad):
        await store_couple(settings, couple)
    nudges = [make_nudge(c) for c in (good[0], good[1], bad, good[2], good[3])]
    async with watching(settings) as out, running_notifier(settings):
        broker = make_broker(settings, service="test")
        await broker.connect()
        try:
            for nudge in nudges:  # one partition: the bad one sits between the others
                await broker.publish(nudge, NUDGE_READY, key=nudge.couple_id.encode(), partition=0)
        finally:
            await broker.stop()
        await out.wait_for(
            lambda o: {d.couple_id for d in o.delivered} == {c.id for c in good} and bool(o.dead),
            within=DEADLINE,
        )
    [letter] = out.dead
    assert letter.source_topic == NUDGE_READY and letter.partition == 0
    assert letter.key == bad.id and letter.service == "notifier"
    assert letter.reason.startswith(f"handler raised {settings.handler_max_attempts} times")
    assert f"TypeError: {NAIVE_AWARE}" in letter.reason
    assert any("quiet_hours.py" in frame for frame in letter.errors)
    assert bad.id in letter.payload  # the record itself, ready for `tandem dlq replay`
    assert all(len(inbox.to(_address(c))) == 1 for c in good)
    assert inbox.to(_address(bad)) == []


async def test_a_ritual_due_content_keeps_failing_on_does_not_stall_its_partition(
    bus: Bus, monkeypatch
) -> None:
    def buggy(due: Any, *args: Any, **kwargs: Any) -> Any:
        if due.couple_id == "cpl_bug":
            raise IndexError("list index out of range")
        return compose(due, *args, **kwargs)

    monkeypatch.setattr(content_worker, "compose", buggy)
    async with AsyncExitStack() as stack:
        await start_workers(stack, bus.settings)
        for couple in ("cpl_ok1", "cpl_ok2", "cpl_bug", "cpl_ok3", "cpl_ok4"):
            await bus.send(together(couple, 0), partition=1)
        await bus.wait(
            lambda: all(bus.of(f"cpl_ok{n}") for n in range(1, 5)) and bool(bus.dead),
            "the others' nudges and the bug's dead letter",
        )
    [letter] = bus.dead
    assert letter.source_topic == "ritual.due" and letter.partition == 1
    assert letter.key == "cpl_bug" and letter.service == "content"
    assert "IndexError: list index out of range" in letter.reason
    assert any(frame.endswith("in buggy") for frame in letter.errors)
    assert bus.of("cpl_bug") == []


async def test_a_delay_queue_job_that_keeps_failing_is_dead_lettered(infra, inbox: Inbox) -> None:
    settings = infra.settings(delivery_connect_timeout=1.0, delivery_read_timeout=2.0)
    good = [_couple(f"later{n}", inbox) for n in range(3)]
    bad = _couple("badjob", inbox, quiet=ODD_QUIET_HOURS)
    redis = make_redis(settings)
    store = NotifierStore(redis, Keys(settings.redis_prefix))
    try:
        for couple in (*good, bad):
            await store_couple(settings, couple)
            job = Job(nudge=make_nudge(couple), partners=["sam"], reason="hold")
            await store.enqueue(job, now_ms())
        async with watching(settings) as out, running_notifier(settings):
            await out.wait_for(
                lambda o: (
                    {d.couple_id for d in o.delivered} == {c.id for c in good}
                    and bool(o.dead)
                    and any(f.final and f.couple_id == bad.id for f in o.failed)
                ),
                within=DEADLINE,
            )
        [letter] = out.dead
        assert letter.source_topic == NUDGE_READY and letter.key == bad.id
        assert letter.reason.startswith("delay-queue job ")
        assert f"raised {settings.handler_max_attempts} times: TypeError: {NAIVE_AWARE}" in (
            letter.reason
        )
        assert any("quiet_hours.py" in frame for frame in letter.errors)
        [failed] = [f for f in out.failed if f.couple_id == bad.id]
        assert failed.final and failed.partner_id == "sam" and failed.reason == "error: TypeError"
        assert await store.claim(10, 1.0) == []  # the job is gone, not coming back
    finally:
        await redis.aclose()
