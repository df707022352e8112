"""Firing over a real Redis and a real broker: on time, once, catch-up, several replicas,
and a replica killed mid-batch."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.scheduler import rituals
from services.scheduler.firing import Firer
from services.scheduler.rituals import Channel, Couple, Partner, Ritual, ScheduleSpec
from services.scheduler.service import Scheduler
from services.scheduler.store import SchedulerStore
from shared.ids import OccurrenceId, new_id
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.topics import RITUAL_DUE, RITUAL_MISSED
from shared.vault import Vault
from tandem.embedded import free_port, wait_for_port
from tests.support.kafka import TopicReader
from tests.support.scheduler import ADMIN, couple_body, running_scheduler


async def test_one_off_fires_once_at_its_instant(infra) -> None:
    settings = infra.settings()
    async with (
        running_scheduler(settings) as (scheduler, api),
        TopicReader(settings, RITUAL_DUE) as reader,
    ):
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
        ritual = (
            await api.post(
                f"/v1/couples/{couple['id']}/rituals",
                json={"kind": "hug", "schedule": {"at": at.isoformat()}},
                headers=ADMIN,
            )
        ).json()
        records = await reader.until(lambda rs: len(rs) >= 1)
        await reader.quiet(2.0)
        assert len(reader.records) == 1
        event = records[0]
        assert event["ritual_id"] == ritual["id"] and event["trigger"] == "schedule"
        assert datetime.fromisoformat(event["scheduled_for"]) == at
        assert event["occurrence_id"] == str(OccurrenceId(ritual["id"], at))
        assert event["catch_up"] is False
        assert (await scheduler.store.backlog()) == {"scheduled_tracks": 0, "outbox": 0}


async def test_downtime_fires_one_catch_up_and_reports_the_rest_missed(infra) -> None:
    settings = infra.settings()
    scheduler = Scheduler(settings)  # not started: this test drives the firer with its own clock
    await scheduler.broker.start()
    import httpx

    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=scheduler.app), base_url="http://s"
            ) as api,
            TopicReader(settings, RITUAL_DUE, RITUAL_MISSED) as reader,
        ):
            couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
            ritual = (
                await api.post(
                    f"/v1/couples/{couple['id']}/rituals",
                    json={
                        "kind": "evening_checkin",
                        "schedule": {
                            "rrule": "FREQ=DAILY;BYHOUR=21;BYMINUTE=0",
                            "timezone": "Europe/Berlin",
                            "start": "2026-01-01T00:00:00",
                        },
                    },
                    headers=ADMIN,
                )
            ).json()
            # The scheduler was down from before 1 March 21:00 (Berlin) to 3 March 21:30.
            last_due = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
            await scheduler.store.reschedule({ritual["id"]: last_due.timestamp()})
            now = datetime(2026, 3, 3, 20, 30, tzinfo=UTC)
            firer = Firer(scheduler.store, scheduler.broker, settings, clock=now.timestamp)
            assert await firer.fire_due() == 1
            assert await firer.publish_outbox() == 2
            records = await reader.until(lambda rs: len(rs) >= 2)
            due = next(r for r in records if "kind" in r)
            missed = next(r for r in records if "count" in r)
            assert datetime.fromisoformat(due["scheduled_for"]) == datetime(
                2026, 3, 3, 20, 0, tzinfo=UTC
            )
            assert due["catch_up"] is True
            assert missed["count"] == 2
            assert [datetime.fromisoformat(t) for t in missed["scheduled_for"]] == [
                datetime(2026, 3, 1, 20, 0, tzinfo=UTC),
                datetime(2026, 3, 2, 20, 0, tzinfo=UTC),
            ]
            # and it goes on from the present, not from the backlog
            assert await scheduler.store.due_of([ritual["id"]]) == [
                datetime(2026, 3, 4, 20, 0, tzinfo=UTC).timestamp()
            ]
            # a second pass finds nothing more to do
            assert await firer.fire_due() == 0
    finally:
        await scheduler.broker.stop()
        await scheduler.redis.aclose()


async def test_stale_occurrence_beyond_grace_is_only_missed(infra) -> None:
    settings = infra.settings()
    scheduler = Scheduler(settings)
    await scheduler.broker.start()
    try:
        _couple, ritual_list = await _seed(
            scheduler.store, 1, rrule="FREQ=DAILY;BYHOUR=7;BYMINUTE=30"
        )
        ritual = ritual_list[0]
        await scheduler.store.reschedule(
            {ritual.id: datetime(2026, 5, 4, 5, 30, tzinfo=UTC).timestamp()}
        )
        now = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # 3.5 h late: past a daily ritual's ~2 h grace
        firer = Firer(scheduler.store, scheduler.broker, settings, clock=now.timestamp)
        async with TopicReader(settings, RITUAL_DUE, RITUAL_MISSED) as reader:
            await firer.fire_due()
            await firer.publish_outbox()
            await reader.until(lambda rs: len(rs) >= 1)
            await reader.quiet(1.0)
        assert len(reader.records) == 1 and reader.records[0]["count"] == 1
    finally:
        await scheduler.broker.stop()
        await scheduler.redis.aclose()


# -- several replicas --------------------------------------------------------------------
async def _seed(
    store: SchedulerStore,
    n: int,
    *,
    at: datetime | None = None,
    rrule: str | None = None,
    couples: int = 10,
) -> tuple[list[Couple], list[Ritual]]:
    """``n`` rituals spread over ``couples`` couples, written straight to the store."""
    now = datetime.now(UTC)
    made = []
    for c in range(couples):
        partners = [
            Partner(
                id=new_id("prt"),
                name=name,
                timezone=zone,
                channels=[Channel(id=new_id("chn"), kind="push", redacted="json://127.0.0.1/x")],
            )
            for name, zone in (("Sam", "Europe/Berlin"), ("Alex", "America/New_York"))
        ]
        couple = Couple(id=new_id("cpl"), name=f"couple {c}", partners=partners, created_at=now)
        await store.create_couple(
            couple,
            f"token-{couple.id}",
            {ch.id: "json://127.0.0.1/x" for p in partners for ch in p.channels},
        )
        made.append(couple)
    out = []
    for i in range(n):
        couple = made[i % couples]
        spec = (
            ScheduleSpec(at=at)
            if at
            else ScheduleSpec(rrule=rrule, timezone="Europe/Berlin", start=datetime(2026, 1, 1))
        )
        ritual = Ritual(
            id=new_id("rit"),
            couple_id=couple.id,
            kind="hug",
            title="Hug",
            schedule=spec,
            created_at=now,
        )
        plan = {}
        for track in rituals.tracks(couple, ritual):
            slot = rituals.next_slot(couple, ritual, track, now)
            plan[track.id] = slot.instant.timestamp() if slot else None
        await store.save_ritual(ritual, plan)
        out.append(ritual)
    return made, out


def _spawn(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    env = {**env, "TANDEM_API_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_port(port, timeout=60, proc=proc)
    return proc


def _store(settings: Settings) -> SchedulerStore:
    redis = make_redis(settings)
    keys = Keys(settings.redis_prefix)
    return SchedulerStore(redis, keys, Vault(redis, keys, SecretBox(settings.secret_key or "")))


async def test_three_replicas_fire_every_occurrence_exactly_once(infra) -> None:
    settings = infra.settings(scheduler_batch=50)
    store = _store(settings)
    env = infra.env(scheduler_batch=50)
    procs = [_spawn(env, free_port()) for _ in range(3)]
    try:
        at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        _, made = await _seed(store, 600, at=at)
        expected = {str(OccurrenceId(r.id, at)) for r in made}
        async with TopicReader(settings, RITUAL_DUE) as reader:
            await reader.until(lambda rs: len(rs) >= len(expected), timeout=90)
            await reader.quiet(3.0)
        counts = Counter(r["occurrence_id"] for r in reader.records)
        assert set(counts) == expected
        assert max(counts.values()) == 1, [o for o, c in counts.items() if c > 1][:5]
        assert (await store.backlog()) == {"scheduled_tracks": 0, "outbox": 0}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(30) == 0, p.stderr.read().decode()[-2000:] if p.stderr else ""
        await store.redis.aclose()


async def test_replica_killed_mid_batch_loses_nothing(infra) -> None:
    # Small batches and short leases: the herd takes many claims, and the killed replica's
    # leased work comes back within seconds.
    overrides = {"scheduler_batch": 25, "scheduler_lease_seconds": 3.0}
    settings = infra.settings(**overrides)
    store = _store(settings)
    env = infra.env(**overrides)
    victim, survivor = _spawn(env, free_port()), _spawn(env, free_port())
    try:
        at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
        _, made = await _seed(store, 3000, at=at)
        expected = {str(OccurrenceId(r.id, at)) for r in made}
        async with TopicReader(settings, RITUAL_DUE) as reader:
            await reader.until(lambda rs: len(rs) >= 50, timeout=60)  # the herd is draining
            victim.send_signal(signal.SIGKILL)
            await reader.until(lambda rs: {r["occurrence_id"] for r in rs} >= expected, timeout=120)
            await reader.quiet(2.0)
        counts = Counter(r["occurrence_id"] for r in reader.records)
        assert set(counts) == expected  # nothing lost, nothing invented
        # A record the victim handed to Kafka but had not yet deleted from the outbox is sent
        # again by the survivor; consumers dedupe on occurrence_id. Such repeats are bounded
        # by one outbox batch.
        repeats = sum(c - 1 for c in counts.values())
        assert repeats <= 2000, repeats
        assert (await store.backlog()) == {"scheduled_tracks": 0, "outbox": 0}
    finally:
        victim.kill()
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(30)
        await store.redis.aclose()
