"""The notifier's per-delivery economies over a real broker, a real Redis and real local HTTP
sinks: connections kept alive, loaded channel clients reused but never across a changed
channel, sends bounded per provider host, the delay queue in its hash-tagged buckets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.notifier.channels import Channels, Outcome, SendResult
from services.notifier.store import Job, NotifierStore
from shared.egress import EgressPolicy
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.vault import Vault
from tandem.notifier_harness import (
    Couple,
    HttpSink,
    Partner,
    make_nudge,
    publish_nudges,
    running_notifier,
    set_paused,
    store_couple,
    watching,
)
from tests.support.infra import Infra, allowing
from tests.support.notifier import fast


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    box = HttpSink().start()
    try:
        with allowing([box.allow]):
            yield box
    finally:
        box.stop()


def until(predicate: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


def couple_at(sink: HttpSink, tag: str, path: str | None = None) -> Couple:
    return Couple(
        id=f"cpl_{tag}",
        partners=[
            Partner(f"sam_{tag}", [("c_sam", "push", sink.json_url(path or f"sam-{tag}"))]),
            Partner(f"alex_{tag}", [("c_alex", "push", sink.ntfy_url(f"alex-{tag}"))]),
        ],
    )


async def test_connections_are_kept_alive_to_the_sink(infra: Infra, sink: HttpSink) -> None:
    settings = fast(infra)
    couple = couple_at(sink, "alive")
    await store_couple(settings, couple)
    nudges = [make_nudge(couple) for _ in range(10)]
    async with watching(settings) as out, running_notifier(settings) as notifier:
        await publish_nudges(settings, *nudges)
        await out.wait_for(lambda o: len(o.delivered) >= 20)
        loads = notifier.delivery.channels.clients.loads
    assert sink.requests == 20
    # One connection per send thread that ever sent (a handful), not one per request.
    assert sink.connections <= 6, sink.stats()
    # Each of the two channels was loaded once and reused for the nine nudges after.
    assert loads == 2


async def test_a_changed_channel_is_reloaded_and_a_rotated_key_is_not(
    infra: Infra, sink: HttpSink
) -> None:
    old_key, new_key = SecretBox.generate_key(), SecretBox.generate_key()
    # The notifier already knows the new key, the vault still holds the old one's text.
    settings = fast(infra, secret_key=new_key, old_secret_keys=old_key)
    written_with_old = fast(infra, secret_key=old_key)
    couple = couple_at(sink, "change", path="first")
    await store_couple(written_with_old, couple)
    async with watching(settings) as out, running_notifier(settings) as notifier:
        clients = notifier.delivery.channels.clients
        await publish_nudges(settings, make_nudge(couple))
        await out.wait_for(lambda o: len(o.delivered) >= 2)
        assert sink.paths.count("first") == 1 and clients.loads == 2

        # Key rotation: the same URLs, re-encrypted under the new key -> reused as loaded.
        redis = make_redis(settings)
        try:
            box = SecretBox(new_key, [old_key])
            rotated = await Vault(redis, Keys(settings.redis_prefix), box).rotate()
        finally:
            await redis.aclose()
        assert rotated.rotated >= 2
        await publish_nudges(settings, make_nudge(couple))
        await out.wait_for(lambda o: len(o.delivered) >= 4)
        assert sink.paths.count("first") == 2 and clients.loads == 2

        # The partner changes the channel: the next nudge goes to the new URL only.
        changed = couple_at(sink, "change", path="second")
        await store_couple(settings, changed)
        await publish_nudges(settings, make_nudge(changed))
        await out.wait_for(lambda o: len(o.delivered) >= 6)
    assert sink.paths.count("first") == 2 and sink.paths.count("second") == 1
    assert clients.loads == 3  # only the changed channel was loaded again


async def test_a_deployment_sets_how_many_sends_a_provider_gets_at_once(infra: Infra) -> None:
    # A provider that answers in 0.3 s: with TANDEM_DELIVERY_PER_HOST=3 the notifier keeps
    # exactly three of a burst's 24 sends in flight to it, never more.
    slow = HttpSink(delay=0.3).start()
    try:
        with allowing([slow.allow]):
            settings = fast(infra, delivery_per_host=3, delivery_concurrency=4)
            waited = REGISTRY.get_sample_value("tandem_send_slot_wait_seconds_sum") or 0.0
            couples = [couple_at(slow, f"bound{i}") for i in range(12)]
            for couple in couples:
                await store_couple(settings, couple)
            async with watching(settings) as out, running_notifier(settings):
                await publish_nudges(settings, *(make_nudge(c) for c in couples))
                await out.wait_for(lambda o: len(o.delivered) >= 24, within=60)
        assert slow.requests == 24 and slow.max_in_flight == 3
        # ... and the others' waits for a slot show (the last of 24 waits ~2 s alone).
        assert (REGISTRY.get_sample_value("tandem_send_slot_wait_seconds_sum") or 0) > waited + 1
    finally:
        slow.stop()


async def test_a_hanging_provider_does_not_starve_a_fast_one() -> None:
    hanging, quick = HttpSink(delay=None).start(), HttpSink().start()
    try:
        allow = EgressPolicy.parse(f"{hanging.allow},{quick.allow}")
        channels = Channels(connect_timeout=1, read_timeout=2, egress=allow, per_host=3, overall=6)

        def send(sink: HttpSink, name: str) -> Coroutine[Any, Any, SendResult]:
            return channels.send(sink.json_url(name), title="t", body="b", channel=("c", name))

        stuck = [asyncio.create_task(send(hanging, f"h{i}")) for i in range(6)]
        # Wait (in a thread: the loop keeps running the sends) until the hanging host
        # holds all its slots; then the fast host's sends.
        await asyncio.to_thread(until, lambda: hanging.in_flight == 3)
        fast_sends = await asyncio.gather(*(send(quick, f"q{i}") for i in range(10)))
        # Every fast send went through while the slow host's requests were still hanging,
        # and the slow host never saw more than its bound.
        assert all(r.ok for r in fast_sends)
        assert hanging.in_flight == 3 and hanging.max_in_flight == 3
        assert quick.requests == 10
        results: list[SendResult] = await asyncio.gather(*stuck)
        assert {r.outcome for r in results} == {Outcome.UNKNOWN}  # no answer: may have landed
        channels.close()
    finally:
        hanging.stop()
        quick.stop()


async def test_an_urgent_send_does_not_queue_behind_a_busy_host() -> None:
    # A herd's sends hold every slot of a provider and queue for more; a test nudge to the
    # same provider is sent in a slot of its own, beside them.
    slow = HttpSink(delay=2.0).start()
    try:
        allow = EgressPolicy.parse(slow.allow)
        channels = Channels(connect_timeout=1, read_timeout=5, egress=allow, per_host=2, overall=4)

        def send(name: str, urgent: bool = False) -> Coroutine[Any, Any, SendResult]:
            return channels.send(
                slow.json_url(name), title="t", body="b", channel=("c", name), urgent=urgent
            )

        herd = [asyncio.create_task(send(f"h{i}")) for i in range(6)]
        await asyncio.to_thread(until, lambda: slow.in_flight == 2)
        assert (await send("test-nudge", urgent=True)).ok
        # it was in flight with the two herd sends, not after them
        assert slow.max_in_flight == 3
        assert all(r.ok for r in await asyncio.gather(*herd))
        assert slow.max_in_flight == 3 and slow.requests == 7
        channels.close()
    finally:
        slow.stop()


async def test_delay_queue_lives_in_hash_tagged_buckets(infra: Infra) -> None:
    settings = fast(infra)
    redis = make_redis(settings)
    keys = Keys(settings.redis_prefix)
    store = NotifierStore(redis, keys)
    couple = couple_at(HttpSink(), "queue")
    try:
        jobs = [Job(nudge=make_nudge(couple), partners=[f"p{i}"]) for i in range(20)]
        for job in jobs:
            assert await store.enqueue(job, 0)
        # A job left in the pre-cluster single-key queue is adopted at start.
        legacy = Job(nudge=make_nudge(couple), partners=["legacy"])
        await redis.zadd(keys("notifier", "due"), {legacy.id: 0})
        await redis.hset(keys("notifier", "jobs"), legacy.id, legacy.model_dump_json())
        assert await store.adopt_legacy_queue() == 1
        assert not await redis.exists(keys("notifier", "due"))
        names = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}:notifier:*")]
        assert names and all("{notifier-q" in k for k in names)
        claimed = []
        while batch := await store.claim(8, 30):
            claimed += batch
        assert sorted(c.job.id for c in claimed) == sorted(j.id for j in [*jobs, legacy])
        assert all([await store.ack(c) for c in claimed])
    finally:
        await redis.aclose()


async def test_a_hanging_provider_holds_back_only_its_own_couples(infra: Infra) -> None:
    hanging, quick = HttpSink(delay=None).start(), HttpSink().start()
    try:
        with allowing([hanging.allow, quick.allow]):
            # Long enough that no held send times out (and is retried, a new request the
            # sink would count while it still holds the first) before the fast ones are done,
            # even on a slow machine.
            settings = fast(infra, delivery_read_timeout=15.0)
            stuck = [couple_at(hanging, f"stuck{i}") for i in range(10)]
            flowing = [couple_at(quick, f"flow{i}") for i in range(10)]
            for couple in [*stuck, *flowing]:
                await store_couple(settings, couple)
            # All on the topic before the notifier starts: one batch of the keyed consumer.
            await publish_nudges(settings, *(make_nudge(c) for c in [*stuck, *flowing]))
            async with watching(settings) as out, running_notifier(settings) as notifier:
                await out.wait_for(lambda o: len(o.delivered) >= 20)
                # Every fast couple was reached while the slow provider still held its
                # requests, and it never held more than its per-host bound.
                assert hanging.in_flight > 0
                per_host = notifier.delivery.channels.limits.per_host
                assert hanging.max_in_flight <= per_host
            assert {d.couple_id for d in out.delivered} == {c.id for c in flowing}
            assert quick.requests == 20
    finally:
        hanging.stop()
        quick.stop()


async def test_a_burst_reads_each_couples_own_channels_and_pause(
    infra: Infra, sink: HttpSink
) -> None:
    """The vault reads of a burst go to Redis together (one pipeline per loop turn, shared
    by every delivery under way): each couple still gets its own channels and its own
    pause, and a couple that is gone is dropped, whatever rode along in the pipeline."""
    settings = fast(infra)
    couples = [couple_at(sink, f"burst{i}") for i in range(12)]
    for couple in couples:
        await store_couple(settings, couple)
    paused = {couples[3].id, couples[7].id}
    for couple_id in paused:
        await set_paused(settings, couple_id, True)
    gone = couple_at(sink, "gone")  # never stored: not in the vault
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, *(make_nudge(c) for c in [gone, *couples]))
        await out.wait_for(lambda o: len(o.delivered) >= 20 and len(o.failed) >= 4)
        await asyncio.sleep(0.5)  # anything more would show now
    sent = [c for c in couples if c.id not in paused]
    assert sorted(sink.paths) == sorted(
        path for c in sent for path in (f"sam-{c.id[4:]}", f"alex-{c.id[4:]}")
    )
    assert {(d.couple_id, d.partner_id) for d in out.delivered} == {
        (c.id, p.id) for c in sent for p in c.partners
    }
    assert len(out.delivered) == 20
    assert {(f.couple_id, f.partner_id, f.reason, f.final) for f in out.failed} == {
        (c.id, p.id, "paused", True) for c in couples if c.id in paused for p in c.partners
    }
