"""A couple's rituals: their schedules, what fires next, and a test nudge on demand."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response

from services.content.decks import DECKLESS_KINDS, Catalog
from services.scheduler import planning, rituals
from services.scheduler.api.deps import CurrentCaller, Decks, Keeper, Now, OnEnqueue, Store
from services.scheduler.api.errors import Invalid
from services.scheduler.api.fairness import Fairness, fair
from services.scheduler.api.schemas import RitualIn, RitualPatch
from services.scheduler.keeping import Keeping
from services.scheduler.recurrence import ScheduleError
from services.scheduler.rituals import Couple, Ritual, ScheduleSpec
from services.scheduler.store import SchedulerStore
from shared.ids import new_id

router = APIRouter(tags=["rituals"], dependencies=[Depends(fair)])


@router.post("/v1/couples/{couple_id}/rituals", status_code=201)
async def create_ritual(
    couple_id: str,
    body: RitualIn,
    caller: CurrentCaller,
    store: Store,
    keeping: Keeper,
    now: Now,
    decks: Decks,
    fairness: Fairness,
) -> dict[str, Any]:
    couple = await caller.couple(couple_id)
    check_deck(decks, body.kind, body.deck)
    await fairness.room_for_ritual(couple)
    ritual = await build_ritual(couple, body, now)
    # Like PATCH: a paused couple (or a started one still waiting, issue #13) schedules
    # nothing; resuming plans every ritual from then.
    await store.save_ritual(ritual, {} if couple.paused else planning.plan(couple, ritual, now))
    return await _view(store, keeping, couple, ritual, now)


async def build_ritual(couple: Couple, body: RitualIn, now: datetime) -> Ritual:
    """The ritual ``body`` describes for ``couple``, its schedule checked (:class:`Invalid`
    with ``loc`` starting with ``body`` otherwise) -- nothing stored yet. The deck is
    checked before, with :func:`check_deck`."""
    ritual = new_ritual(couple, body, now)
    await check_schedule(couple, ritual, now)
    return ritual


def new_ritual(couple: Couple, body: RitualIn, now: datetime) -> Ritual:
    """The ritual ``body`` describes for ``couple``, not yet checked (see
    :func:`build_ritual`; the bulk import checks alike schedules once)."""
    defaults = rituals.KIND_DEFAULTS[body.kind]
    return Ritual(
        id=new_id("rit"),
        couple_id=couple.id,
        kind=body.kind,
        title=body.title or defaults.title,
        schedule=(
            planning.complete_schedule(
                body.kind, couple, ScheduleSpec(**body.schedule.model_dump()), now
            )
            if body.schedule
            else planning.default_schedule(body.kind, couple, now)
        ),
        delivery=body.delivery,
        rotation=body.rotation if "rotation" in body.model_fields_set else defaults.rotation,
        deck=body.deck,
        quiet_hours_policy=body.quiet_hours_policy,
        celebrate=body.celebrate,
        celebrate_sms=body.celebrate_sms,
        created_at=now,
    )


@router.get("/v1/couples/{couple_id}/rituals")
async def list_rituals(
    couple_id: str, caller: CurrentCaller, store: Store, keeping: Keeper, now: Now
) -> dict[str, Any]:
    couple = await caller.couple(couple_id)
    return {
        "rituals": [
            await _view(store, keeping, couple, r, now) for r in await store.list_rituals(couple.id)
        ]
    }


@router.get("/v1/rituals/{ritual_id}")
async def get_ritual(
    ritual_id: str, caller: CurrentCaller, store: Store, keeping: Keeper, now: Now
) -> dict[str, Any]:
    ritual, couple = await caller.ritual(ritual_id)
    return await _view(store, keeping, couple, ritual, now)


@router.patch("/v1/rituals/{ritual_id}")
async def patch_ritual(
    ritual_id: str,
    body: RitualPatch,
    caller: CurrentCaller,
    store: Store,
    keeping: Keeper,
    now: Now,
    decks: Decks,
) -> dict[str, Any]:
    ritual, couple = await caller.ritual(ritual_id)
    if "deck" in body.model_fields_set:
        check_deck(decks, ritual.kind, body.deck)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"schedule"})
    if body.schedule is not None:
        given = ScheduleSpec(**body.schedule.model_dump())
        changes["schedule"] = planning.complete_schedule(ritual.kind, couple, given, now)
    updated = Ritual.model_validate({**ritual.model_dump(), **changes})
    await check_schedule(couple, updated, now)
    gone = set(planning.track_ids(couple, ritual)) - set(planning.track_ids(couple, updated))
    schedule = {} if couple.paused else planning.plan(couple, updated, now)
    await store.save_ritual(updated, schedule, sorted(gone))
    return await _view(store, keeping, couple, updated, now)


@router.delete("/v1/rituals/{ritual_id}", status_code=204)
async def delete_ritual(ritual_id: str, caller: CurrentCaller, store: Store) -> Response:
    ritual, couple = await caller.ritual(ritual_id)
    await store.delete_ritual(ritual, planning.track_ids(couple, ritual))
    return Response(status_code=204)


@router.get("/v1/rituals/{ritual_id}/upcoming")
async def upcoming(
    ritual_id: str,
    caller: CurrentCaller,
    store: Store,
    count: Annotated[int, Query(ge=1, le=100)] = 5,
) -> dict[str, Any]:
    ritual, couple = await caller.ritual(ritual_id)
    return {"occurrences": await planning.upcoming(store, couple, ritual, count)}


# How long a trigger's Idempotency-Key is remembered.
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a trigger safely: the same key (per caller and ritual) within "
        "24 hours answers what the first request answered and queues nothing new.",
    ),
]


@router.post("/v1/rituals/{ritual_id}/trigger", status_code=202)
async def trigger(
    ritual_id: str,
    caller: CurrentCaller,
    store: Store,
    on_enqueue: OnEnqueue,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """A test nudge now: a new occurrence on every call, unless an ``Idempotency-Key``
    repeats one of the last 24 hours (then the first call's answer, and nothing new)."""
    ritual, couple = await caller.ritual(ritual_id)
    scope = caller.who or "admin"  # a key is the caller's own: the couple's, or the admin's
    if idempotency_key is not None:
        earlier = await store.idempotent_answer(scope, ritual.id, idempotency_key)
        if earlier is not None:
            return _recorded(earlier)
    if couple.paused:
        raise HTTPException(409, "the couple is paused")
    events = planning.manual_trigger(couple, ritual, now)
    ids = [e.id for e in events]
    answer = {"occurrence_id": ids[0], "occurrence_ids": ids}
    if idempotency_key is None:
        await store.enqueue(planning.URGENT_VISIBLE_AT, events)
    else:
        earlier = await store.enqueue_once(
            scope,
            ritual.id,
            idempotency_key,
            json.dumps(answer),
            IDEMPOTENCY_TTL_SECONDS,
            planning.URGENT_VISIBLE_AT,
            events,
        )
        if earlier is not None:  # a concurrent request with the same key came first
            return _recorded(earlier)
    on_enqueue()
    return answer


def _recorded(raw: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(raw)
    return answer


def check_deck(catalog: Catalog, kind: str, deck_id: str | None) -> None:
    """422 unless the content service can draw ``kind``'s nudges from ``deck_id`` (None: the
    kind's default deck)."""
    if deck_id is None:
        return
    if kind in DECKLESS_KINDS:
        raise Invalid(["body", "deck"], f"{kind} nudges are not drawn from a deck: leave it out")
    deck = catalog.get(deck_id)
    if deck is not None and deck.suits(kind):
        return
    fitting = sorted(i for i, d in catalog.decks.items() if d.suits(kind))
    listed = ", ".join(fitting[:5]) + (", …" if len(fitting) > 5 else "")
    said = f"no deck {deck_id!r}" if deck is None else f"deck {deck_id!r} is not for {kind}"
    raise Invalid(["body", "deck"], f"{said}; decks for {kind}: {listed}")


async def check_schedule(couple: Couple, ritual: Ritual, now: datetime) -> None:
    """422 unless ``ritual``'s schedule can be accepted (see :func:`planning.check`)."""
    try:
        await planning.check(couple, ritual, now)
    except ScheduleError as exc:
        raise Invalid.of_schedule(exc) from None


async def _view(
    store: SchedulerStore, keeping: Keeping, couple: Couple, ritual: Ritual, now: datetime
) -> dict[str, Any]:
    """The ritual as answered: with its next firing and the couple's streak."""
    following = await planning.upcoming(store, couple, ritual, 1)
    return {
        **ritual.model_dump(mode="json"),
        "next": following[0] if following else None,
        "streak": await keeping.streak(couple, ritual, now),
    }
