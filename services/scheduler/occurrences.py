"""What a firing says: the one constructor of ``ritual.due`` for each reason a ritual fires.

* :func:`scheduled_due` -- a slot of the rule came due (the firing loop); a weekly summary's
  firing is :func:`summary_due`, everything else :func:`ritual_due`;
* :func:`manual_due` -- "send us a test nudge now" (the API);
* :func:`snooze_due` -- the one re-fire a partner's snooze causes, for that partner only;
* :func:`celebration_due` -- "you both did it", after both partners marked a slot done.

Each builds its :class:`~shared.events.RitualDue` in one validated call (never by patching
another event), from the couple and ritual as stored. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from services.scheduler import recurrence, rituals
from services.scheduler.rituals import Couple, Partner, Ritual, Track
from shared.events import (
    PartnerInfo,
    Purpose,
    Recipient,
    RitualDue,
    Trigger,
    WeeklySummary,
)
from shared.ids import OccurrenceId, celebration_id


def purpose_of(ritual: Ritual) -> Purpose:
    """What a (scheduled or manual) firing of ``ritual`` is: its weekly summary, or itself."""
    return "summary" if ritual.kind == "weekly_summary" else "ritual"


def _due(
    couple: Couple,
    ritual: Ritual,
    slot: recurrence.Slot,
    *,
    occurrence_id: str,
    recipients: Sequence[Recipient],
    purpose: Purpose,
    trigger: Trigger = "schedule",
    scheduled_for: datetime | None = None,
    catch_up: bool = False,
    origin_occurrence_id: str | None = None,
    goals: Sequence[str] = (),
    streak: int = 0,
    summary: WeeklySummary | None = None,
) -> RitualDue:
    return RitualDue(
        occurrence_id=occurrence_id,
        couple_id=couple.id,
        couple_name=couple.name,
        ritual_id=ritual.id,
        kind=ritual.kind,
        title=ritual.title,
        deck=ritual.deck,
        delivery=ritual.delivery,
        scheduled_for=slot.instant if scheduled_for is None else scheduled_for,
        wall_time=slot.wall_time,
        ordinal=slot.ordinal,
        partners=[PartnerInfo(id=p.id, name=p.name, timezone=p.timezone) for p in couple.partners],
        recipients=list(recipients),
        planner=rituals.planner(couple, ritual, slot.ordinal),
        transition_mode=couple.transition_mode,
        quiet_hours_policy=ritual.quiet_hours_policy,
        catch_up=catch_up,
        trigger=trigger,
        purpose=purpose,
        origin_occurrence_id=origin_occurrence_id,
        goals=list(goals),
        streak=streak,
        summary=summary,
    )


def _recipients(couple: Couple, track: Track) -> list[Recipient]:
    """Who a firing of ``track`` is for: both partners, or the track's one ("local")."""
    return [p.recipient() for p in couple.partners if track.partner_id in (None, p.id)]


def ritual_due(
    couple: Couple,
    ritual: Ritual,
    track: Track,
    slot: recurrence.Slot,
    *,
    catch_up: bool = False,
    goals: Sequence[str] = (),
) -> RitualDue:
    """A slot of a ritual's rule came due (``goals``: a check-in's goals of last quarter)."""
    return _due(
        couple,
        ritual,
        slot,
        occurrence_id=rituals.occurrence_of(track, slot.instant),
        recipients=_recipients(couple, track),
        purpose="ritual",
        catch_up=catch_up,
        goals=goals,
    )


def summary_due(
    couple: Couple,
    ritual: Ritual,
    track: Track,
    slot: recurrence.Slot,
    *,
    catch_up: bool = False,
    numbers: WeeklySummary | None = None,
) -> RitualDue:
    """A slot of the weekly summary came due, with the week's ``numbers``."""
    return _due(
        couple,
        ritual,
        slot,
        occurrence_id=rituals.occurrence_of(track, slot.instant),
        recipients=_recipients(couple, track),
        purpose="summary",
        catch_up=catch_up,
        summary=numbers,
    )


def scheduled_due(
    couple: Couple,
    ritual: Ritual,
    track: Track,
    slot: recurrence.Slot,
    *,
    catch_up: bool = False,
    goals: Sequence[str] = (),
    numbers: WeeklySummary | None = None,
) -> RitualDue:
    """The firing loop's event for ``slot``: :func:`summary_due` or :func:`ritual_due` by kind."""
    if purpose_of(ritual) == "summary":
        if goals:
            raise ValueError("a weekly summary carries no goals")
        return summary_due(couple, ritual, track, slot, catch_up=catch_up, numbers=numbers)
    if numbers is not None:
        raise ValueError(f"a {ritual.kind} carries no weekly summary")
    return ritual_due(couple, ritual, track, slot, catch_up=catch_up, goals=goals)


def manual_due(
    couple: Couple, ritual: Ritual, track: Track, now: datetime, nonce: str
) -> RitualDue:
    """A "send us a test nudge now": a firing of ``track`` at this second (see
    :func:`rituals.slot_at` for its slot), an occurrence of its own however many triggers
    share the second: its id carries the trigger's ``nonce`` (:func:`shared.ids.manual_nonce`)."""
    slot = rituals.slot_at(couple, ritual, track, now.astimezone(UTC).replace(microsecond=0))
    occurrence = OccurrenceId(track.ritual_id, slot.instant, track.partner_id, manual=nonce)
    return _due(
        couple,
        ritual,
        slot,
        occurrence_id=str(occurrence),
        recipients=_recipients(couple, track),
        purpose=purpose_of(ritual),
        trigger="manual",
    )


def snooze_due(
    couple: Couple,
    ritual: Ritual,
    slot: recurrence.Slot,
    origin: OccurrenceId,
    partner: Partner,
    at: datetime,
) -> RitualDue:
    """The re-fire at ``at`` of ``origin`` (in ``slot``) that ``partner``'s snooze causes:
    for them only, under an id of its own that names its origin."""
    return _due(
        couple,
        ritual,
        slot,
        occurrence_id=str(origin.snoozed(partner.id)),
        recipients=[partner.recipient()],
        purpose=purpose_of(ritual),
        trigger="snooze",
        scheduled_for=at,
        origin_occurrence_id=str(origin.origin),
    )


def celebration_due(
    couple: Couple, ritual: Ritual, slot: recurrence.Slot, at: datetime, streak: int
) -> RitualDue:
    """ "You both did it" for ``slot``, sent at ``at`` to both partners, on every channel
    but SMS unless the ritual asks for SMS too (a partner left with no channel is left
    out)."""
    recipients = [
        Recipient(
            **{
                **r.model_dump(),
                "channels": [c for c in r.channels if ritual.celebrate_sms or c.kind != "sms"],
            }
        )
        for r in (p.recipient() for p in couple.partners)
    ]
    return _due(
        couple,
        ritual,
        slot,
        occurrence_id=celebration_id(ritual.id, slot.wall_time),
        recipients=[r for r in recipients if r.channels],
        purpose="celebration",
        scheduled_for=at,
        streak=streak,
    )
