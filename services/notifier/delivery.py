"""The use case: deliver one nudge to some of a couple's partners.

One entry point, :meth:`Delivery.run`, serves the Kafka handler (a fresh ``nudge.ready``)
and the delay-queue drain (a retry or a held nudge) alike. For each partner it:

1. holds the partner if they are in quiet hours (policy in :mod:`.quiet_hours`);
2. at send time checks the couple still exists (else drops, with a log line) and is not
   paused (else reports ``nudge.failed`` final, reason ``paused``);
3. takes the partner's in-flight lease (or learns it was already sent -> nothing to do);
4. tries the partner's channels in order, falling back on a definite failure;
5. records the delivery in Redis, *then* publishes ``nudge.delivered`` -- or, if every
   channel failed, schedules the next attempt with backoff, and after
   ``delivery_max_attempts`` dead-letters it to ``nudge.ready.dlq`` and publishes
   ``nudge.failed`` final.

If ``run`` itself raises something that is not transient (a bug, a value it cannot handle,
such as quiet hours stored with a UTC offset), the same bound as for Kafka records applies
(``TANDEM_HANDLER_MAX_ATTEMPTS``): the Kafka handler's record is dead-lettered by the
consumer policy (:mod:`shared.kafka`), and a delay-queue job by :meth:`Delivery.crashed`.

What each channel shows -- the long body on e-mail, the action links as ntfy buttons or as
lines of text (all three on e-mail and push, at most "done" on SMS) -- is :mod:`.render`'s.

Partners of a ``together`` nudge go through steps 2-4 side by side (asyncio.gather, with
the Redis preparation done for both, in one round trip, before either send starts; each
send in its own thread) so they buzz together. Many nudges run at once (different couples
from the keyed consumer, and delay-queue jobs; at most :data:`MAX_RUNS`). Receipts are
handed to the producer without waiting for the broker; a run waits for all of its
acknowledgements together before it returns (so before its record is committed or its job
acked).

Timeouts. Apprise's TIMEOUT means we stopped waiting, not that the provider refused; the
message may have landed. We count it as a failed attempt and retry the SAME channel after
backoff, without falling back within the attempt. Rationale: a missed ritual nudge is the
worse failure for this product, so we do retry; but retrying the same channel (rather than
immediately buzzing a second device) keeps any duplicate to one phone, and the backoff
gives a slow provider time to recover. A rare duplicate on a provider timeout is accepted.

Guarantee: at least once per partner, with duplicates confined to two narrow windows --
the provider accepted but we timed out (above), or the process died between the provider
accepting and the ``sent`` mark in Redis (one Redis round trip after the HTTP response) --
for each send in flight at that moment, so at most as many as run at once.
Everything else (a redelivered record, a second replica, a replayed dead letter, the same
nudge published twice) is absorbed by the ledger in :mod:`.store`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from services.notifier import metrics
from services.notifier.channels import Channels, Outcome, SendResult
from services.notifier.quiet_hours import group_by_release, release_times
from services.notifier.render import Rendered, has_buttons, render
from services.notifier.store import Claim, ClaimedJob, Job, NotifierStore
from shared.backoff import pause, retry_delay
from shared.events import (
    ChannelRef,
    DeadLetter,
    DeliveryAttempt,
    Message,
    NudgeDelivered,
    NudgeFailed,
    NudgeReady,
    Recipient,
)
from shared.kafka import DEAD_LETTERS, describe, traceback_tail
from shared.settings import Settings
from shared.topics import NUDGE_DELIVERED, NUDGE_FAILED, NUDGE_READY, dlq
from shared.vault import Vault

log = logging.getLogger("tandem.notifier")

# (event, topic, key) -> the broker's acknowledgement, still to come: publishing hands the
# record to the producer's batch and returns without waiting for the broker.
Publish = Callable[[BaseModel, str, str], Awaitable[Awaitable[object]]]

# The acknowledgements owed by the current run (see Delivery._receipts_sent).
_PENDING: ContextVar[list[Awaitable[object]] | None] = ContextVar("notifier_pending", default=None)

SERVICE = "notifier"

# Deliveries (Kafka records and delay-queue jobs together) in progress at once, per
# process. Each holds at most two Redis connections at a time (its partners side by
# side), so this keeps the notifier well inside its Redis pool (redis-py's default of 100
# connections, beyond which a command fails instead of waiting); the sends themselves
# are bounded further, per provider host and overall, in channels.py (at most
# TANDEM_DELIVERY_CONCURRENCY, itself at most 64: what these runs' two partners fill).
MAX_RUNS = 32
# Urgent deliveries (a test nudge, a snooze) have places of their own (inside the same Redis
# pool), so one never queues behind a herd's: the herd's consumer keeps up to
# TANDEM_CONSUMER_CONCURRENCY (64) calls in flight for MAX_RUNS places.
URGENT_RUNS = 4


@dataclass
class _Ready:
    """A partner whose lease we hold, about to be sent to."""

    recipient: Recipient
    token: str


@dataclass
class _Result:
    delivered: NudgeDelivered | None = None
    retry: Job | None = None
    retry_due: datetime | None = None


@dataclass
class Delivery:
    settings: Settings
    store: NotifierStore
    vault: Vault
    channels: Channels
    publish: Publish
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rng: random.Random = field(default_factory=random.Random)
    runs: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_RUNS))
    urgent_runs: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(URGENT_RUNS))

    # -- entry points ------------------------------------------------------------------
    async def handle(self, nudge: NudgeReady, *, partition: int | None, offset: int | None) -> None:
        """Deliver a fresh ``nudge.ready`` to every recipient (or schedule it). Returns once
        every partner's outcome is recorded (sent, scheduled in Redis, or dead-lettered),
        so the caller may commit the record."""
        job = Job(
            nudge=nudge,
            partners=[r.id for r in nudge.recipients],
            partition=partition,
            offset=offset,
            reason="hold",
        )
        await self.run(job)

    async def run(self, job: Job, claimed: ClaimedJob | None = None) -> None:
        """Carry ``job`` one step: send what is due, (re)schedule what is not. When
        ``claimed`` (from the delay queue) the job is acked or rescheduled in place.
        Returns once every event it published is acknowledged by the broker."""
        runs = self.urgent_runs if job.nudge.urgent else self.runs
        async with runs, self._receipts_sent():
            done = await self._run(job, claimed)
        # Only on a clean finish, receipts included: if anything raised, a claimed job
        # stays claimed and comes due again when its lease ends (and a Kafka record is
        # redelivered).
        if claimed is not None and done:
            await self.store.ack(claimed)

    @asynccontextmanager
    async def _receipts_sent(self) -> AsyncIterator[None]:
        """Collect the acknowledgements of what is published inside, and wait for them
        all, together, on the way out -- receipts go out without a broker round trip each,
        yet nothing returns (and so no record is committed, no job acked) before every
        receipt it owes is safely in Kafka. Nested uses share the outermost's list."""
        if _PENDING.get() is not None:
            yield
            return
        pending: list[Awaitable[object]] = []
        token = _PENDING.set(pending)
        try:
            yield
        finally:
            _PENDING.reset(token)
            # Even on an error: a record handed to the producer is not taken back.
            outcome = await asyncio.gather(*pending, return_exceptions=True)
        failed = next((r for r in outcome if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed

    async def _emit(self, event: BaseModel, topic: str, key: str) -> None:
        """Publish ``event``; its acknowledgement is awaited by the enclosing run."""
        ack = await self.publish(event, topic, key)
        pending = _PENDING.get()
        if pending is None:
            await ack
        else:
            pending.append(ack)

    async def _run(self, job: Job, claimed: ClaimedJob | None) -> bool:
        """:meth:`run`'s step; True if a claimed job is finished (to be acked), False if
        it was rescheduled in place."""
        nudge = job.nudge
        # What the vault holds for the couple, in the pipeline every delivery under way
        # shares: its channels still encrypted (each send decrypts only its own URL, and
        # only for as long as the send), and whether it is paused.
        channels, paused = await self.store.batched(
            lambda pipe: self.vault.read(pipe, nudge.couple_id)
        )
        if not channels:
            log.warning(
                "couple %s no longer exists; dropping nudge %s",
                nudge.couple_id,
                nudge.occurrence_id,
                extra=_ids(nudge),
            )
            return True
        recipients = [r for r in nudge.recipients if r.id in job.partners]
        now = self.clock()
        times = release_times(
            now,
            recipients,
            together=nudge.delivery == "together",
            policy=nudge.quiet_hours_policy,
        )
        send_now, held = group_by_release(times)
        rescheduled = False
        for until, partner_ids in held.items():
            metrics.HELD.inc(len(partner_ids))
            log.info(
                "holding nudge %s for %s until %s (quiet hours)",
                nudge.occurrence_id,
                ",".join(partner_ids),
                until.isoformat(),
                extra=_ids(nudge),
            )
            hold = job.model_copy(update={"partners": partner_ids, "reason": "hold"})
            rescheduled |= await self._schedule(hold, until, claimed)
        results = await self._deliver(nudge, send_now, job, channels, paused=bool(paused))
        for result in results:
            if result.retry is not None and result.retry_due is not None:
                rescheduled |= await self._schedule(result.retry, result.retry_due, claimed)
        return not rescheduled

    async def crashed(self, claimed: ClaimedJob, exc: BaseException) -> None:
        """The delay-queue job ``claimed`` raised ``exc``, which is not transient (the
        drain asks :func:`shared.kafka.is_transient`). Before the
        ``handler_max_attempts``-th time: put it back after a short growing pause, its
        count (``Job.crashes``) kept with it in Redis, so the count survives a restart and
        a takeover by another replica. Then: end it the way a nudge that could not be
        delivered ends (:meth:`_attempt_failed`), because that is what it is and both
        paths should read the same to an operator and to the scheduler's history --

        - a :class:`DeadLetter` to ``nudge.ready.dlq`` whose payload is the nudge itself
          (not the job), so ``tandem dlq replay`` re-drives it as a fresh ``nudge.ready``
          once the cause is fixed; the reason carries the exception (``describe``, URLs
          and numbers masked) and ``errors`` where it was raised (frame locations only);
        - ``nudge.failed`` final for each of the job's partners not already reached, so
          the history stops showing them as pending;
        - the job acked, so it never comes back.

        If any of that raises (the broker or Redis is down), the job stays claimed and
        comes back when its lease ends, and this runs again."""
        job = claimed.job
        nudge = job.nudge
        crashes = job.crashes + 1
        limit = self.settings.handler_max_attempts
        if crashes < limit:
            delay = pause(crashes, cap=self.settings.delivery_backoff_max_seconds)
            log.warning(
                "delayed job %s failed (attempt %d of %d): %s; retrying in %.1fs",
                job.id,
                crashes,
                limit,
                describe(exc),
                delay,
                exc_info=exc,
                extra=_ids(nudge),
            )
            due = self.clock() + timedelta(seconds=delay)
            await self._schedule(job.model_copy(update={"crashes": crashes}), due, claimed)
            return
        reason = f"delay-queue job {job.id} ({job.reason}) raised {crashes} times: {describe(exc)}"
        async with self._receipts_sent():
            await self._give_up(job, exc, reason)
        await self.store.ack(claimed)
        log.error(
            "delayed job %s dead-lettered after %d attempts: %s",
            job.id,
            crashes,
            describe(exc),
            extra=_ids(nudge),
        )

    async def _give_up(self, job: Job, exc: BaseException, reason: str) -> None:
        """:meth:`crashed`'s end: the dead letter, ``nudge.failed`` for the unreached."""
        nudge = job.nudge
        await self._dead_letter(nudge, job, reason, traceback_tail(exc), kind="handler_error")
        for partner_id in job.partners:
            if await self.store.sent(nudge.occurrence_id, partner_id):
                continue  # reached before the error: nothing failed for them
            metrics.FAILED.labels(final="true").inc()
            await self._failed(
                nudge, partner_id, f"error: {type(exc).__name__}", final=True, attempts=job.errors
            )

    # -- scheduling --------------------------------------------------------------------
    async def _schedule(self, job: Job, due: datetime, claimed: ClaimedJob | None) -> bool:
        """Put ``job`` on the delay queue; True if it replaced the claimed job in place."""
        due_ms = int(due.timestamp() * 1000)
        if claimed is not None and job.id == claimed.job.id:
            await self.store.reschedule(claimed, job, due_ms)
            return True
        await self.store.enqueue(job, due_ms)
        return False

    # -- sending -----------------------------------------------------------------------
    async def _deliver(
        self, nudge: NudgeReady, partner_ids: list[str], job: Job, vault: str, *, paused: bool
    ) -> list[_Result]:
        """Send to ``partner_ids`` now, side by side; ``vault``: the couple's encrypted
        channels (:meth:`shared.vault.Vault.read`)."""
        if not partner_ids:
            return []
        by_id = {r.id: r for r in nudge.recipients}
        # Redis checks for every partner first, in one round trip, so neither send waits
        # on the other's: the sends below start within microseconds of each other.
        prepared = await self._prepare(nudge, [by_id[pid] for pid in partner_ids], job, paused)
        ready = [p for p in prepared if isinstance(p, _Ready)]
        done = [p for p in prepared if isinstance(p, _Result)]
        sent = await asyncio.gather(*(self._send(nudge, r, job, vault) for r in ready))
        delivered = [s.delivered for s in sent if s.delivered is not None]
        if len(ready) >= 2 and len(delivered) == len(ready):
            skew = metrics.partner_skew(delivered)
            if skew is not None:
                metrics.SKEW.observe(skew)
        return done + list(sent)

    async def _prepare(
        self, nudge: NudgeReady, recipients: list[Recipient], job: Job, paused: bool
    ) -> list[_Ready | _Result]:
        """Per recipient: ready to send (their lease taken), or settled already."""
        if paused:
            log.info(
                "couple %s is paused; not sending %s",
                nudge.couple_id,
                nudge.occurrence_id,
                extra=_ids(nudge),
            )
            for recipient in recipients:
                metrics.FAILED.labels(final="true").inc()
                await self._failed(nudge, recipient.id, "paused", final=True, attempts=job.errors)
            return [_Result() for _ in recipients]
        claims = await self.store.claim_sends(
            nudge.occurrence_id, {r.id: self._lease_seconds(r) for r in recipients}
        )
        return [await self._claimed(nudge, r, job, claims[r.id]) for r in recipients]

    async def _claimed(
        self, nudge: NudgeReady, recipient: Recipient, job: Job, claim: Claim
    ) -> _Ready | _Result:
        if claim.state == "sent":
            # Already delivered (a redelivered record, a duplicate publish, a replay). Re-
            # publish the stored event -- same event_id, so consumers dedupe it -- in case
            # we died between recording the delivery and publishing it.
            await self._emit(
                NudgeDelivered.model_validate_json(claim.sent), NUDGE_DELIVERED, nudge.couple_id
            )
            return _Result()
        if claim.state == "busy":
            # Someone is sending this right now. Look again when their lease would have run
            # out: if they finished, the ledger says so; if they died, we take over.
            log.info(
                "nudge %s for %s is in flight elsewhere; rechecking",
                nudge.occurrence_id,
                recipient.id,
            )
            recheck = job.model_copy(update={"partners": [recipient.id], "reason": "recheck"})
            due = self.clock() + timedelta(milliseconds=claim.busy_ms + 250)
            return _Result(retry=recheck, retry_due=due)
        return _Ready(recipient, claim.token)

    def _lease_seconds(self, recipient: Recipient) -> float:
        # Long enough for the slowest possible attempt (every channel hitting its hard
        # timeout) plus margin, so a live sender never loses its lease mid-attempt; short
        # enough that a dead sender's partner is retried within seconds to a minute.
        return max(1, len(recipient.channels)) * self.channels.longest_send + 5.0

    async def _send(self, nudge: NudgeReady, ready: _Ready, job: Job, vault: str) -> _Result:
        """Try the partner's channels in order, from where the job left off: the first that
        takes the nudge delivers it, a failed one falls back to the next, and one whose
        outcome is unknown (it may have landed) ends the attempt so that it is retried
        rather than doubled on another channel. ``vault``: the couple's encrypted channels."""
        recipient = ready.recipient
        # Attempt state is per partner; only single-partner jobs (retries) carry it.
        single = len(job.partners) == 1
        attempt = job.attempt if single else 1
        errors = list(job.errors) if single else []
        start = job.from_channel if single else 0
        message = next((m for m in nudge.messages if m.partner_id == recipient.id), None)
        retry_from = 0
        channels = recipient.channels
        for index in range(min(start, len(channels)), len(channels)):
            channel = channels[index]
            result = await self._send_on(nudge, message, channel, vault)
            if result is None:
                errors.append(self._attempt(attempt, channel, "channel not in vault"))
                continue
            if result.ok:
                return _Result(delivered=await self._delivered(nudge, ready, channel, attempt))
            errors.append(self._attempt(attempt, channel, result.error))
            log.warning(
                "attempt %d of %s for %s via channel %s (%s) failed: %s",
                attempt,
                nudge.occurrence_id,
                recipient.id,
                channel.id,
                channel.kind,
                result.error,
                extra=_ids(nudge),
            )
            if result.outcome is Outcome.UNKNOWN:
                retry_from = index  # may have landed: retry this channel, don't fall back
                break
            if index + 1 < len(channels):
                metrics.FALLBACKS.inc()
        if not channels:
            errors.append(self._attempt(attempt, None, "no channels"))
        await self.store.release(nudge.occurrence_id, recipient.id, ready.token)
        return await self._attempt_failed(nudge, recipient.id, job, attempt, errors, retry_from)

    async def _send_on(
        self, nudge: NudgeReady, message: Message | None, channel: ChannelRef, vault: str
    ) -> SendResult | None:
        """One send of ``nudge`` (``message``: its partner's own words, if any) through
        ``channel``; None if the channel is no longer in the couple's ``vault``. The plain
        URL lives no longer than this call."""
        url = self.vault.open(vault, channel.id)
        if url is None:
            return None
        # Per channel: e-mail reads the long body; action links become ntfy buttons or
        # lines of text where they fit (the rules, and why, are in render.py).
        shown = (
            render(message, channel.kind, buttons=has_buttons(url))
            if message
            else Rendered(nudge.title, nudge.title)
        )
        result = await self.channels.send(
            url,
            title=shown.title,
            body=shown.body,
            buttons=shown.buttons,
            channel=(nudge.couple_id, channel.id),
            urgent=nudge.urgent,
        )
        metrics.ATTEMPTS.labels(channel.kind, result.outcome).inc()
        return result

    def _attempt(self, attempt: int, channel: ChannelRef | None, error: str) -> DeliveryAttempt:
        """One failed try, for the attempt record (``channel`` None: there was none)."""
        return DeliveryAttempt(
            attempt=attempt,
            channel_id=channel.id if channel else "-",
            channel=channel.redacted if channel else "-",
            error=error,
            at=self.clock(),
        )

    async def _delivered(
        self, nudge: NudgeReady, ready: _Ready, channel: ChannelRef, attempt: int
    ) -> NudgeDelivered:
        delivered_at = self.clock()
        event = NudgeDelivered(
            occurrence_id=nudge.occurrence_id,
            couple_id=nudge.couple_id,
            ritual_id=nudge.ritual_id,
            partner_id=ready.recipient.id,
            channel_id=channel.id,
            channel_kind=channel.kind,
            channel=channel.redacted,
            attempt=attempt,
            scheduled_for=nudge.scheduled_for,
            delivered_at=delivered_at,
            latency_ms=(delivered_at - nudge.scheduled_for).total_seconds() * 1000,
            prompt_id=nudge.prompt.prompt_id,
        )
        # Ledger first: once this returns, nothing will send this partner's copy again.
        # Publishing first would widen the duplicate window by a Kafka round trip.
        await self.store.mark_sent(
            nudge.occurrence_id, ready.recipient.id, ready.token, event.model_dump_json()
        )
        await self._emit(event, NUDGE_DELIVERED, nudge.couple_id)
        metrics.DELIVERED.labels(channel_kind=channel.kind).inc()
        metrics.LATENCY.observe(max(0.0, event.latency_ms / 1000))
        log.info(
            "delivered %s to %s via channel %s (%s), attempt %d, %.0f ms after schedule",
            nudge.occurrence_id,
            ready.recipient.id,
            channel.id,
            channel.kind,
            attempt,
            event.latency_ms,
            extra=_ids(nudge),
        )
        return event

    async def _attempt_failed(
        self,
        nudge: NudgeReady,
        partner_id: str,
        job: Job,
        attempt: int,
        errors: list[DeliveryAttempt],
        retry_from: int,
    ) -> _Result:
        final = attempt >= self.settings.delivery_max_attempts
        metrics.FAILED.labels(final=str(final).lower()).inc()
        if final:
            await self._dead_letter(
                nudge,
                job,
                f"partner {partner_id}: not delivered after {attempt} attempts",
                [f"attempt {e.attempt} via {e.channel_id}: {e.error}" for e in errors],
                kind="undeliverable",
            )
            await self._failed(
                nudge, partner_id, "max attempts reached", final=True, attempts=errors
            )
            log.error(
                "nudge %s for %s dead-lettered after %d attempts",
                nudge.occurrence_id,
                partner_id,
                attempt,
                extra=_ids(nudge),
            )
            return _Result()
        delay = retry_delay(
            attempt,
            base=self.settings.delivery_backoff_seconds,
            cap=self.settings.delivery_backoff_max_seconds,
            rng=self.rng,
        )
        await self._failed(
            nudge,
            partner_id,
            errors[-1].error if errors else "failed",
            final=False,
            attempts=errors,
        )
        metrics.RETRIES.inc()
        retry = job.model_copy(
            update={
                "partners": [partner_id],
                "attempt": attempt + 1,
                "from_channel": retry_from,
                "errors": errors,
                "reason": "retry",
            }
        )
        return _Result(retry=retry, retry_due=self.clock() + timedelta(seconds=delay))

    async def _dead_letter(
        self, nudge: NudgeReady, job: Job, reason: str, errors: list[str], *, kind: str
    ) -> None:
        """Put ``nudge`` on ``nudge.ready.dlq`` as it was consumed (``tandem dlq replay``
        re-drives it), with why; ``kind`` labels the dead-letter counter."""
        letter = DeadLetter(
            source_topic=NUDGE_READY,
            partition=job.partition,
            offset=job.offset,
            key=nudge.couple_id,
            payload=nudge.model_dump_json(),
            reason=reason,
            service=SERVICE,
            errors=errors,
        )
        await self._emit(letter, dlq(NUDGE_READY), nudge.couple_id)
        DEAD_LETTERS.labels(dlq(NUDGE_READY), SERVICE, kind).inc()

    async def _failed(
        self,
        nudge: NudgeReady,
        partner_id: str,
        reason: str,
        *,
        final: bool,
        attempts: list[DeliveryAttempt],
    ) -> None:
        event = NudgeFailed(
            occurrence_id=nudge.occurrence_id,
            couple_id=nudge.couple_id,
            ritual_id=nudge.ritual_id,
            partner_id=partner_id,
            reason=reason,
            final=final,
            attempts=attempts,
        )
        await self._emit(event, NUDGE_FAILED, nudge.couple_id)


def _ids(nudge: NudgeReady) -> dict[str, str]:
    """The ids every delivery log line carries (``extra=``), for finding one nudge's story."""
    return {"occurrence_id": nudge.occurrence_id, "couple_id": nudge.couple_id}
