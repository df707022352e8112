"""The firing loop every scheduler replica runs: claim due tracks, decide, commit, publish.

All replicas are active; they share the work through the leases in
:mod:`services.scheduler.store`, so there is no leader to elect and nothing to fail over.

The loop sleeps until the earliest due instant of any bucket, or until woken: by a save in
this process (the store's listener), by one in another process (Redis pub/sub), or by a
herd still being drained. ``scheduler_tick_seconds`` only bounds that sleep, for leases that
run out and wake-ups that were lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from services.scheduler import metrics, occurrences, recurrence, rituals
from services.scheduler.store import Outgoing, SchedulerStore, TrackCommit
from shared import backoff
from shared.events import RitualDue, RitualMissed
from shared.kafka import publisher
from shared.settings import Settings
from shared.timeslice import TimeSlice
from shared.topics import RITUAL_DUE, RITUAL_DUE_URGENT, RITUAL_MISSED, lane

log = logging.getLogger("tandem.scheduler.firing")

OUTBOX_BATCH = 2000
# What an express publish leases (see Firer.wake): the head of each bucket, where a trigger
# or a snooze sits (scored first), and no more.
EXPRESS_BATCH = 1
# From this many records per outbox batch on, they skip FastStream (see Firer._send).
DIRECT_SEND_FROM = 64
_HEADERS_FS = {"content-type": "application/json"}
_HEADERS = [("content-type", b"application/json")]
# Kinds whose firings carry more than the ritual: last quarter's goals, the week's numbers.
ENRICHED_KINDS = frozenset({"relationship_checkin", "weekly_summary"})
Extras = Callable[[rituals.Couple, rituals.Ritual, date, datetime], Awaitable[dict[str, Any]]]


def outgoing_due(event: RitualDue) -> Outgoing:
    """The outbox entry of ``event``: on ``ritual.due``, or its urgent twin for a test
    nudge or a snooze (``RitualDue.urgent``), which is consumed apart from any herd."""
    topic = lane(RITUAL_DUE, urgent=event.urgent)
    return Outgoing(event.occurrence_id, topic, event.couple_id, event.model_dump_json())


def _missed(
    couple: rituals.Couple,
    ritual: rituals.Ritual,
    track: rituals.Track,
    missed: list[recurrence.Slot],
    window: timedelta,
) -> Outgoing:
    """The ``ritual.missed`` report of slots too old to send (the last 100 named), logged
    and counted: an outage cost this couple nudges, and an operator should see it."""
    event = RitualMissed(
        couple_id=couple.id,
        ritual_id=ritual.id,
        occurrence_ids=[rituals.occurrence_of(track, m.instant) for m in missed[-100:]],
        scheduled_for=[m.instant for m in missed[-100:]],
        count=len(missed),
    )
    metrics.MISSED.inc(len(missed))
    log.warning(
        "ritual %s missed %d occurrence(s) older than its %s grace window",
        ritual.id,
        len(missed),
        window,
        extra={
            "couple_id": couple.id,
            "ritual_id": ritual.id,
            "occurrence_id": event.occurrence_ids[-1],
        },
    )
    return Outgoing(event.event_id, RITUAL_MISSED, couple.id, event.model_dump_json())


def _raw_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The aiokafka producer under a connected FastStream broker, or None (not connected,
    or a FastStream whose internals moved: then everything goes through FastStream)."""
    state = getattr(broker.config.producer, "_producer", None)
    producer = getattr(state, "producer", None)
    return producer if isinstance(producer, AIOKafkaProducer) else None


class Firer:
    def __init__(
        self,
        store: SchedulerStore,
        broker: KafkaBroker,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        extras: Extras | None = None,
    ) -> None:
        self.extras = extras
        self.store = store
        self.broker = broker
        # One declared publisher per outbox topic (the same ones for every Firer of this
        # broker), so the AsyncAPI document lists what the firing loop really sends.
        self.publishers = {
            t: publisher(broker, t, service="scheduler")
            for t in (RITUAL_DUE, RITUAL_DUE_URGENT, RITUAL_MISSED)
        }
        self.settings = settings
        self.clock = clock
        self._outbox_ready = asyncio.Event()
        self._rescheduled = asyncio.Event()
        self._publishing = False  # the publish loop is sending a batch
        self._express: asyncio.Task[None] | None = None
        store.on_scheduled(self._on_scheduled)

    def _on_scheduled(self, earliest: float) -> None:
        """A track was (re)scheduled: wake the firing loop so it sleeps until that due
        instant rather than until its fallback tick."""
        self._rescheduled.set()

    def wake(self) -> None:
        """Tell the publisher the outbox has something new (a trigger, a snooze). If it is
        sending a herd's batch (until every acknowledgement is in: hundreds of milliseconds
        on a busy machine), the new entry does not wait for it: an express publish sends
        the head of each bucket beside it (leases keep the two from sending one entry
        twice, as between replicas)."""
        self._outbox_ready.set()
        if self._publishing and (self._express is None or self._express.done()):
            self._express = asyncio.create_task(self._publish_express())

    async def _publish_express(self) -> None:
        try:
            await self.publish_outbox(EXPRESS_BATCH)
        except Exception:  # what it leased comes back when its lease ends
            log.warning("express publish failed; the publish loop will send it", exc_info=True)

    # -- one step each ------------------------------------------------------------------
    async def fire_due(self) -> int:
        """Claim one batch of due tracks, write their events to the outbox and advance them.
        Returns how many tracks were claimed."""
        now = self.clock()
        claimed = await self.store.claim(
            now, now + self.settings.scheduler_lease_seconds, self.settings.scheduler_batch
        )
        if not claimed:
            return 0
        ritual_map = await self.store.get_rituals(rituals.ritual_of_track(t) for t, _ in claimed)
        couples = await self.store.get_couples(r.couple_id for r in ritual_map.values())
        now_dt = datetime.fromtimestamp(now, UTC)
        commits = []
        # A herd's batch is hundreds of milliseconds of work: the API answering a test
        # nudge and the outbox publisher get in between (shared/timeslice.py).
        timeslice = TimeSlice()
        for track_id, due_raw in claimed:
            await timeslice.share()
            ritual = ritual_map.get(rituals.ritual_of_track(track_id))
            couple = couples.get(ritual.couple_id) if ritual else None
            try:
                extra: dict[str, Any] = {}
                if self.extras and ritual and couple and ritual.kind in ENRICHED_KINDS:
                    zone = ZoneInfo(rituals.schedule_zone(couple, ritual))
                    extra = await self.extras(
                        couple, ritual, now_dt.astimezone(zone).date(), now_dt
                    )
                commits.append(self._decide(track_id, due_raw, couple, ritual, now_dt, extra))
            except Exception:
                # Leave it leased: it is retried when the lease runs out, and logged loudly
                # meanwhile, rather than silently dropped from the schedule.
                log.exception("cannot fire track %s", track_id)
        committed = await self.store.commit(now, commits)
        metrics.TAKEN_OVER.inc(len(commits) - committed)
        if committed:
            self._outbox_ready.set()
        return len(claimed)

    def _decide(
        self,
        track_id: str,
        due_raw: str,
        couple: rituals.Couple | None,
        ritual: rituals.Ritual | None,
        now: datetime,
        extra: dict[str, Any] | None = None,
    ) -> TrackCommit:
        if couple is None or ritual is None or couple.paused:
            return TrackCommit(track_id, due_raw, None, ())
        track = next((t for t in rituals.tracks(couple, ritual) if t.id == track_id), None)
        if track is None:  # delivery mode changed since this track was scheduled
            return TrackCommit(track_id, due_raw, None, ())
        s = self.settings
        window = rituals.grace(
            couple,
            ritual,
            fraction=s.grace_fraction,
            minimum=s.grace_min_seconds,
            maximum=s.grace_max_seconds,
        )
        due_at = datetime.fromtimestamp(float(due_raw), UTC)
        firing = rituals.fire(couple, ritual, track, due_at, now, window)
        events = []
        if firing.slot is not None:
            extra = extra or {}
            due = occurrences.scheduled_due(
                couple,
                ritual,
                track,
                firing.slot,
                catch_up=firing.catch_up,
                goals=extra.get("goals", ()),
                numbers=extra.get("summary"),
            )
            events.append(outgoing_due(due))
        if firing.missed:
            events.append(_missed(couple, ritual, track, firing.missed, window))
        next_due = firing.next_instant.timestamp() if firing.next_instant else None
        return TrackCommit(track_id, due_raw, next_due, events)

    async def publish_outbox(self, limit: int = OUTBOX_BATCH) -> int:
        """Send one batch (up to ``limit``) of outbox records to Kafka; delete each only
        after Kafka acknowledged it. Returns how many were acknowledged."""
        now = self.clock()
        entries = await self.store.lease_outbox(
            now, now + self.settings.scheduler_lease_seconds, limit
        )
        if not entries:
            return 0
        # Pipelined: hand every record to the producer, then wait for all the acks. The
        # outbox holds each event's JSON as committed; it is sent as is, not re-encoded.
        futures = await self._send(entries)
        results = await asyncio.gather(*futures, return_exceptions=True)
        acked = [
            e for e, r in zip(entries, results, strict=True) if not isinstance(r, BaseException)
        ]
        await self.store.ack_outbox(acked)
        if len(acked) < len(entries):
            error = next(r for r in results if isinstance(r, BaseException))
            log.warning(
                "%d record(s) not acknowledged, retried later: %r", len(entries) - len(acked), error
            )
        done = time.time()
        timeslice = TimeSlice()
        for e in acked:
            await timeslice.share()
            if e.topic in (RITUAL_DUE, RITUAL_DUE_URGENT):
                record = json.loads(e.value)
                metrics.FIRED.labels(record.get("trigger", "schedule")).inc()
                scheduled = datetime.fromisoformat(record["scheduled_for"]).timestamp()
                metrics.LATENESS.observe(max(0.0, done - scheduled))
                # DEBUG: a herd fires 100,000 of these in a minute; the counters say how many.
                log.debug(
                    "fired %s",
                    record["occurrence_id"],
                    extra={"occurrence_id": record["occurrence_id"], "couple_id": e.key},
                )
        return len(acked)

    async def _send(self, entries: list[Outgoing]) -> list[asyncio.Future[Any]]:
        """Hand ``entries`` to the producer without waiting for acknowledgements; returns
        one future per entry. A few go through the declared FastStream publishers (a
        traced span each); a herd-sized batch goes straight to the aiokafka producer
        underneath, where a span and middleware per record cost more than the sending."""
        producer = _raw_producer(self.broker)
        if producer is None or len(entries) < DIRECT_SEND_FROM:
            return [
                await self.publishers[e.topic].publish(
                    e.value.encode(), key=e.key.encode(), headers=_HEADERS_FS, no_confirm=True
                )
                for e in entries
            ]
        timeslice = TimeSlice()
        futures = []
        for e in entries:
            await timeslice.share()
            value, key = e.value.encode(), e.key.encode()
            futures.append(await producer.send(e.topic, value, key=key, headers=_HEADERS))
        return futures

    # -- loops --------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Fire and publish until ``stop`` is set."""
        try:
            await asyncio.gather(
                self._fire_loop(stop), self._publish_loop(stop), self._listen_loop(stop)
            )
        finally:
            if self._express is not None:  # an express publish under way ends first
                await asyncio.gather(self._express, return_exceptions=True)

    async def _fire_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            # cleared before looking, so a save that lands while we look still wakes us
            self._rescheduled.clear()
            try:
                claimed = await self.fire_due()
                failures = 0
                if claimed:
                    # A herd is due: claim on while the publisher sends what was committed.
                    await asyncio.sleep(0)
                    continue
                pause = await self._until_next_due()
            except Exception:
                failures += 1
                pause = backoff.pause(failures, cap=10.0)
                log.exception("firing failed; retrying in %.1fs", pause)
            await _wait_any(pause, stop, self._rescheduled)

    async def _until_next_due(self) -> float:
        # Wake exactly when the earliest track is due (or its lease runs out), but at least
        # every tick in case a wake-up was lost.
        head = await self.store.next_visible()
        tick = self.settings.scheduler_tick_seconds
        return tick if head is None else max(0.0, min(tick, head - self.clock()))

    async def _publish_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            self._outbox_ready.clear()
            try:
                self._publishing = True
                try:
                    sent = await self.publish_outbox()
                finally:
                    self._publishing = False
                failures = 0
                if sent:
                    continue
                pause = await self._until_next_outbox()
            except Exception:
                failures += 1
                pause = backoff.pause(failures, cap=10.0)
                log.exception("publishing failed; retrying in %.1fs", pause)
            await _wait_any(pause, stop, self._outbox_ready)

    async def _until_next_outbox(self) -> float:
        head = await self.store.next_outbox()
        tick = self.settings.scheduler_tick_seconds
        return tick if head is None else max(0.0, min(tick, head - self.clock()))

    async def _listen_loop(self, stop: asyncio.Event) -> None:
        """Wake on saves made by other processes (Redis pub/sub); reconnects after a
        failure. Without it the loop still wakes at every known due instant and tick."""
        failures = 0
        while not stop.is_set():
            try:
                async with self.store.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.store.wake_channel())
                    failures = 0
                    while not stop.is_set():
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None:
                            self._rescheduled.set()
            except Exception:
                failures += 1
                pause = backoff.pause(failures, cap=10.0)
                log.warning("wake-up channel lost; retrying in %.1fs", pause, exc_info=True)
                await _wait_any(pause, stop)


async def _wait_any(seconds: float, *events: asyncio.Event) -> None:
    """Sleep ``seconds`` or until one of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
