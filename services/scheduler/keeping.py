"""Keeping rituals: partners' answers, the couple's streaks, goals and the weekly summary.

The API calls :meth:`Keeping.answer` for an ack or a signed link; the firing loop calls
:meth:`Keeping.extras` to give a relationship check-in last quarter's goals and a weekly
summary its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.scheduler import answers, occurrences, recurrence, rituals
from services.scheduler.firing import outgoing_due
from services.scheduler.goals import texts_of_quarter
from services.scheduler.history import NudgeHistory
from services.scheduler.rituals import Couple, Ritual
from services.scheduler.store import SchedulerStore
from shared.events import RitualKept, WeeklySummary
from shared.ids import OccurrenceId, slot_key
from shared.links import SNOOZE_MINUTES

STREAK_WINDOW = 400  # slots looked back for a streak
ANSWER_WINDOW = timedelta(days=14)  # how old an occurrence may be to still be answered


class AnswerError(Exception):
    """An answer that cannot be taken; ``status`` is the HTTP status to give."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Answered:
    occurrence_id: str
    partner_id: str
    action: str
    completion: answers.Completion
    streak: int
    refire: str | None = None  # the snooze's re-fire occurrence id
    celebrated: str | None = None  # the "you both did it" occurrence id


def quarter_of(day: date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def previous_quarter(day: date) -> str:
    year, q = day.year, (day.month - 1) // 3 + 1
    return f"{year - 1}-Q4" if q == 1 else f"{year}-Q{q - 1}"


class Keeping:
    def __init__(self, store: SchedulerStore, history: NudgeHistory) -> None:
        self.store = store
        self.history = history

    # -- answers ------------------------------------------------------------------------
    def _track_for(self, couple: Couple, ritual: Ritual, partner_id: str) -> rituals.Track:
        return next(t for t in rituals.tracks(couple, ritual) if t.partner_id in (None, partner_id))

    async def answer(
        self,
        couple: Couple,
        ritual: Ritual,
        ref: OccurrenceId,
        partner_id: str,
        action: str,
        minutes: int | None,
        *,
        now: datetime,
    ) -> Answered:
        """Record ``partner_id``'s answer to an occurrence; a snooze re-fires it once for
        them, and the second "done" of a slot may send the couple a "you both did it"."""
        if couple.partner(partner_id) is None:
            raise AnswerError(422, "partner_id is not a partner of this couple")
        if ref.partner_id is not None and ref.partner_id != partner_id:
            raise AnswerError(403, "this occurrence was sent to the other partner")
        if ref.instant > now + timedelta(minutes=1):
            raise AnswerError(409, "this occurrence has not happened yet")
        if ref.instant < now - ANSWER_WINDOW:
            raise AnswerError(410, "this occurrence is too old to answer")
        track = self._track_for(couple, ritual, partner_id)
        slot = rituals.slot_at(couple, ritual, track, ref.instant)
        key = slot_key(slot.wall_time)
        acks = await self.store.record_answer(ritual.id, key, partner_id, action)
        await self.history.record_answer(couple.id, str(ref.origin), partner_id, action)
        state = answers.completion(acks, [p.id for p in couple.partners])
        refire = celebrated = None
        if action == "snooze":
            refire = await self._snooze(
                couple, ritual, slot, ref, partner_id, minutes or SNOOZE_MINUTES, key, now
            )
        if state == "both" and await self.store.mark_kept(ritual.id, key, slot.instant.timestamp()):
            if ritual.celebrate:
                celebrated = await self._celebrate(couple, ritual, slot, now)
        return Answered(
            str(ref.origin),
            partner_id,
            action,
            state,
            await self.streak(couple, ritual, now),
            refire,
            celebrated,
        )

    async def _snooze(
        self,
        couple: Couple,
        ritual: Ritual,
        slot: recurrence.Slot,
        ref: OccurrenceId,
        partner_id: str,
        minutes: int,
        key: str,
        now: datetime,
    ) -> str:
        if ref.derivation is not None or not await self.store.claim_snooze(
            ritual.id, key, partner_id
        ):
            raise AnswerError(409, "already snoozed once")
        partner = couple.partner(partner_id)
        assert partner is not None
        at = (now + timedelta(minutes=minutes)).replace(microsecond=0)
        event = occurrences.snooze_due(couple, ritual, slot, ref, partner, at)
        await self.store.enqueue(at.timestamp(), [outgoing_due(event)])
        return event.occurrence_id

    async def _celebrate(
        self, couple: Couple, ritual: Ritual, slot: recurrence.Slot, now: datetime
    ) -> str:
        event = occurrences.celebration_due(
            couple,
            ritual,
            slot,
            at=now.replace(microsecond=0),
            streak=await self.streak(couple, ritual, now),
        )
        await self.store.enqueue(now.timestamp(), [outgoing_due(event)])
        return event.occurrence_id

    # -- streaks and summaries ----------------------------------------------------------
    async def streak(self, couple: Couple, ritual: Ritual, now: datetime) -> int:
        """Consecutive slots of ``ritual`` that both partners kept (see :mod:`answers`)."""
        keys, kept = await self._recent(couple, ritual, now, None)
        return answers.streak(reversed(keys), kept)

    async def _recent(
        self, couple: Couple, ritual: Ritual, now: datetime, since: datetime | None
    ) -> tuple[list[str], set[str]]:
        if ritual.schedule.rrule is None:
            return [], set()
        schedule = rituals.schedule_of(couple, ritual)
        track = rituals.tracks(couple, ritual)[0]
        start = since or now - recurrence.cadence(schedule) * STREAK_WINDOW
        slots = recurrence.slots_between(schedule, track.zone, start, now)
        kept = await self.store.kept_since(ritual.id, start.timestamp())
        return [slot_key(s.wall_time) for s in slots], kept

    async def extras(
        self, couple: Couple, ritual: Ritual, wall_date: date, now: datetime
    ) -> dict[str, Any]:
        """What a firing of ``ritual`` carries beyond the ritual itself."""
        if ritual.kind == "relationship_checkin":
            goals = await self.store.goals(couple.id)
            return {"goals": texts_of_quarter(goals, previous_quarter(wall_date))}
        if ritual.kind == "weekly_summary":
            return {"summary": await self.summary(couple, now)}
        return {}

    async def summary(self, couple: Couple, now: datetime) -> WeeklySummary:
        """The week so far (Monday to now, in the first partner's zone)."""
        zone = ZoneInfo(couple.partners[0].timezone)
        local = now.astimezone(zone)
        monday = (local - timedelta(days=local.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        kept_list = []
        next_date: datetime | None = None
        next_planner: str | None = None
        for ritual in await self.store.list_rituals(couple.id):
            if ritual.kind == "weekly_summary":
                continue
            keys, kept = await self._recent(couple, ritual, now, monday.astimezone(UTC))
            if keys:
                kept_list.append(
                    RitualKept(
                        ritual_id=ritual.id,
                        title=ritual.title,
                        kept=len(set(keys) & kept),
                        total=len(keys),
                        streak=await self.streak(couple, ritual, now),
                    )
                )
            if ritual.kind == "date_night":
                track = rituals.tracks(couple, ritual)[0]
                upcoming = rituals.next_slot(couple, ritual, track, now)
                if upcoming and (next_date is None or upcoming.instant < next_date):
                    next_date = upcoming.instant
                    next_planner = rituals.planner(couple, ritual, upcoming.ordinal)
        return WeeklySummary(
            week_start=monday.date(),
            rituals=kept_list,
            next_date_night=next_date,
            next_planner=next_planner,
        )
