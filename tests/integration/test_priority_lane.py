"""The priority lane: a test nudge (and a snooze) never waits behind a herd. Over a real
Redis (the outbox a herd fills) and a real broker (the record as content receives it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.scheduler import planning
from services.scheduler.api import rituals as ritual_routes
from services.scheduler.firing import outgoing_due
from services.scheduler.service import Scheduler
from services.scheduler.store import SchedulerStore
from shared.events import RitualDue
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.topics import RITUAL_DUE_URGENT
from shared.vault import Vault
from tests.integration.test_scheduler_routers import a_couple, bare_app, client
from tests.support.kafka import TopicReader
from tests.support.scheduler import ADMIN, couple_body

HERD = 2_000


@pytest.fixture(params=[16, 1], ids=["16-buckets", "one-bucket"])
async def own_store(infra, request) -> AsyncIterator[SchedulerStore]:
    """A store of its own; with one bucket the triggers share the herd's bucket for sure."""
    settings = infra.settings()
    redis = make_redis(settings)
    keys = Keys(settings.redis_prefix)
    vault = Vault(redis, keys, SecretBox(settings.secret_key))
    yield SchedulerStore(redis, keys, vault, buckets=request.param)
    await redis.aclose()


async def test_a_trigger_is_leased_before_a_herd_waiting_in_the_outbox(infra, own_store) -> None:
    store = own_store
    couple = await a_couple(store)
    app = bare_app(ritual_routes.router, infra.settings(), store, on_enqueue=lambda: None)
    now = datetime.now(UTC)
    async with client(app) as api:
        created = await api.post(f"/v1/couples/{couple.id}/rituals", json={"kind": "hug"})
        assert created.status_code == 201, created.text
        ritual = await store.get_ritual(created.json()["id"])
        assert ritual is not None
        # A herd due a minute ago, still waiting to be sent.
        scheduled = [
            json.loads(o.value)
            for _ in range(HERD)
            for o in planning.manual_trigger(couple, ritual, now)
        ]
        herd = [
            outgoing_due(RitualDue.model_validate({**e, "trigger": "schedule", "urgent": False}))
            for e in scheduled
        ]
        await store.enqueue((now - timedelta(minutes=1)).timestamp(), herd)
        plain = (await api.post(f"/v1/rituals/{ritual.id}/trigger")).json()
        keyed = await api.post(
            f"/v1/rituals/{ritual.id}/trigger", headers={"Idempotency-Key": "test-nudge-1"}
        )
    # Two entries a bucket: the triggers may share the herd's bucket (a plain trigger is
    # bucketed by its couple, a keyed one by its ritual), and with one entry a bucket
    # only one of them could be leased -- a 1-in-16 failure of this test before.
    first = await store.lease_outbox(now.timestamp() + 1, now.timestamp() + 30, 2 * store.buckets)
    triggers = {plain["occurrence_id"], keyed.json()["occurrence_id"]}
    assert triggers <= {o.id for o in first}
    for bucket in {o.bucket for o in first}:
        urgent = [json.loads(o.value)["urgent"] for o in first if o.bucket == bucket]
        assert urgent == sorted(urgent, reverse=True), "a herd entry leased before a trigger"
    assert all(json.loads(o.value)["urgent"] is (o.id in triggers) for o in first)


async def test_a_triggered_record_travels_the_urgent_lane(module_infra, running) -> None:
    _, api = running
    async with TopicReader(module_infra.settings(), RITUAL_DUE_URGENT) as reader:
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        ritual = (
            await api.post(
                f"/v1/couples/{couple['id']}/rituals", json={"kind": "hug"}, headers=ADMIN
            )
        ).json()
        answer = await api.post(f"/v1/rituals/{ritual['id']}/trigger", headers=ADMIN)
        assert answer.status_code == 202, answer.text
        occurrence = answer.json()["occurrence_id"]
        records = await reader.until(lambda rs: any(r["occurrence_id"] == occurrence for r in rs))
    event = next(r for r in records if r["occurrence_id"] == occurrence)
    assert event["trigger"] == "manual" and event["urgent"] is True


async def test_a_trigger_goes_out_beside_a_herd_batch_being_sent(infra) -> None:
    """While the publish loop is sending a herd's batch (until its last acknowledgement),
    a trigger does not wait for it: an express publish sends it at once, taking no more
    than the head of each bucket of the herd waiting behind it."""
    settings = infra.settings()
    scheduler = Scheduler(settings)  # not started: the test plays the publish loop's part
    await scheduler.broker.start()
    store, firer = scheduler.store, scheduler.firer
    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=scheduler.app), base_url="http://s"
            ) as api,
            TopicReader(settings, RITUAL_DUE_URGENT) as reader,
        ):
            couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
            ritual_id = (
                await api.post(
                    f"/v1/couples/{couple['id']}/rituals", json={"kind": "hug"}, headers=ADMIN
                )
            ).json()["id"]
            ritual, stored = await store.get_ritual(ritual_id), await store.get_couple(couple["id"])
            assert ritual is not None and stored is not None
            now = datetime.now(UTC)
            herd = [
                outgoing_due(RitualDue.model_validate({**json.loads(o.value), "urgent": False}))
                for _ in range(HERD)
                for o in planning.manual_trigger(stored, ritual, now)
            ]
            await store.enqueue((now - timedelta(minutes=1)).timestamp(), herd)

            firer._publishing = True  # the loop is in the middle of a herd's batch
            answer = (await api.post(f"/v1/rituals/{ritual_id}/trigger", headers=ADMIN)).json()
            express = firer._express
            assert express is not None
            await express
            sent = await reader.until(
                lambda rs: any(r["occurrence_id"] == answer["occurrence_id"] for r in rs)
            )
            assert all(r["urgent"] for r in sent)
            # the herd still waits for the loop (one couple: one bucket, one head leased)
            left = await store.lease_outbox(now.timestamp() + 1, now.timestamp() + 30, 16 * HERD)
            assert len(left) == HERD and not any(json.loads(o.value)["urgent"] for o in left)

            firer._publishing = False  # an idle loop takes a trigger itself, at once
            idle = await api.post(f"/v1/rituals/{ritual_id}/trigger", headers=ADMIN)
            assert idle.status_code == 202 and firer._express is express
    finally:
        await scheduler.broker.stop()
        await scheduler.redis.aclose()
