"""The rituals page: the catalogue as cards, the couple's chosen rituals with their time,
days, delivery and deck, and "send a test nudge to both phones" with live confirmation
(the page polls :func:`test_status`, built on the nudge history's delivery receipts)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError

from services.content.decks import DECKLESS_KINDS, Catalog
from services.scheduler import planning
from services.scheduler.api.deps import Caller, Decks, Door, History, Keeper, Now, OnEnqueue, Store
from services.scheduler.api.errors import Invalid
from services.scheduler.api.fairness import Fair
from services.scheduler.api.rituals import build_ritual, check_deck, check_schedule
from services.scheduler.api.schemas import RitualIn
from services.scheduler.keeping import Keeping
from services.scheduler.rituals import Ritual, ScheduleSpec
from services.scheduler.store import SchedulerStore
from services.scheduler.web import schedule_form, views
from services.scheduler.web.catalogue import BY_KEY, CARDS
from services.scheduler.web.render import page, sentence, to
from services.scheduler.web.session import GUARDS, Me, SignedIn

router = APIRouter(dependencies=GUARDS)

Days = Annotated[list[str] | None, Form()]
Delivery = Annotated[Literal["together", "local"], Form()]
_OCCURRENCES = re.compile(r"^[A-Za-z0-9_:/.@~\-]{1,200}$")


@router.get("/rituals", response_class=HTMLResponse, name="rituals_page")
async def rituals_page(
    request: Request,
    me: SignedIn,
    store: Store,
    keeping: Keeper,
    decks: Decks,
    now: Now,
    test: Annotated[str, Query(max_length=1000)] = "",
) -> HTMLResponse:
    """The catalogue and the couple's rituals; ``test`` names a test nudge's occurrences
    whose delivery the page follows."""
    mine = [
        await _chosen(store, keeping, decks, me, r, now)
        for r in await store.list_rituals(me.couple.id)
    ]
    cards = [
        {
            "card": c,
            "rule": (rule := schedule_form.view(c.default_rule)),
            "days": schedule_form.describe(rule) or c.cadence,
            "taken": _taken(c.kind, mine),
        }
        for c in CARDS
    ]
    context = {
        "title": "Our rituals",
        "me": me,
        "cards": cards,
        "mine": mine,
        "day_names": schedule_form.DAY_NAMES,
        "test_ids": [t for t in test.split(",") if _OCCURRENCES.fullmatch(t)],
    }
    return page(request, "rituals.html", context)


def _taken(kind: str, mine: list[dict[str, Any]]) -> bool:
    return any(m["ritual"].kind == kind for m in mine)


async def _chosen(
    store: SchedulerStore, keeping: Keeping, decks: Catalog, me: Me, ritual: Ritual, now: datetime
) -> dict[str, Any]:
    """One of the couple's rituals as its card shows it."""
    coming = await planning.upcoming(store, me.couple, ritual, 2)
    fitting = (
        []
        if ritual.kind in DECKLESS_KINDS
        else [d for d in decks.decks.values() if d.suits(ritual.kind)]
    )
    return {
        "ritual": ritual,
        "rule": schedule_form.view(ritual.schedule.rrule or ""),
        "next": views.next_for_each(me.couple, coming),
        "streak": await keeping.streak(me.couple, ritual, now),
        "decks": [(d.id, d.title) for d in fitting],
    }


@router.post("/rituals", name="add_ritual")
async def add_ritual(
    request: Request,
    me: SignedIn,
    store: Store,
    decks: Decks,
    now: Now,
    card: Annotated[str, Form()],
    time: Annotated[str, Form()],
    delivery: Delivery = "together",
    days: Days = None,
) -> RedirectResponse:
    chosen = BY_KEY.get(card)
    if chosen is None:
        raise HTTPException(404, "There is no such ritual in the catalogue.")
    try:
        rrule = schedule_form.edited(chosen.default_rule, time, days or [])
        body = RitualIn(
            kind=chosen.kind,  # type: ignore[arg-type]
            title=chosen.title,
            schedule={"rrule": rrule, "timezone": me.couple.partners[0].timezone},  # type: ignore[arg-type]
            delivery=delivery,
            deck=chosen.deck,
            rotation="alternate" if chosen.kind == "date_night" else None,
        )
        check_deck(decks, body.kind, body.deck)
        await Fair(request.app.state.settings, store).room_for_ritual(me.couple)
        ritual = await build_ritual(me.couple, body, now)
    except (schedule_form.FormError, ValidationError, Invalid, HTTPException) as exc:
        return to(request, "rituals_page", notice=_problem(exc), error=True)
    await store.save_ritual(
        ritual, {} if me.couple.paused else planning.plan(me.couple, ritual, now)
    )
    return to(request, "rituals_page", notice=f"Added “{ritual.title}”.")


def _problem(exc: Exception) -> str:
    """What went wrong with a form, in words for the person who filled it in."""
    if isinstance(exc, Invalid):
        return exc.reason
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return str(exc)


async def _ritual_of(me: Me, store: SchedulerStore, ritual_id: str) -> Ritual:
    ritual, _ = await Caller(store, me.couple.id).ritual(ritual_id)
    return ritual


@router.post("/rituals/{ritual_id}", name="edit_ritual")
async def edit_ritual(
    request: Request,
    ritual_id: str,
    me: SignedIn,
    store: Store,
    decks: Decks,
    now: Now,
    time: Annotated[str, Form()],
    delivery: Delivery = "together",
    deck: Annotated[str, Form()] = "",
    days: Days = None,
) -> RedirectResponse:
    ritual = await _ritual_of(me, store, ritual_id)
    try:
        rrule = schedule_form.edited(ritual.schedule.rrule or "", time, days or [])
        check_deck(decks, ritual.kind, deck or None)
        schedule = ritual.schedule.model_copy(update={"rrule": rrule})
        updated = ritual.model_copy(
            update={
                "schedule": ScheduleSpec.model_validate(schedule.model_dump()),
                "delivery": delivery,
                "deck": deck or None,
            }
        )
        await check_schedule(me.couple, updated, now)
    except (schedule_form.FormError, Invalid, HTTPException) as exc:
        return to(request, "rituals_page", notice=_problem(exc), error=True)
    gone = set(planning.track_ids(me.couple, ritual)) - set(planning.track_ids(me.couple, updated))
    plan = {} if me.couple.paused else planning.plan(me.couple, updated, now)
    await store.save_ritual(updated, plan, sorted(gone))
    return to(request, "rituals_page", notice=f"Saved “{updated.title}”.")


@router.post("/rituals/{ritual_id}/remove", name="remove_ritual")
async def remove_ritual(
    request: Request, ritual_id: str, me: SignedIn, store: Store
) -> RedirectResponse:
    ritual = await _ritual_of(me, store, ritual_id)
    await store.delete_ritual(ritual, planning.track_ids(me.couple, ritual))
    return to(request, "rituals_page", notice=f"Removed “{ritual.title}”.")


@router.post("/rituals/{ritual_id}/test", name="test_ritual")
async def test_ritual(
    request: Request,
    ritual_id: str,
    me: SignedIn,
    store: Store,
    door: Door,
    now: Now,
    on_enqueue: OnEnqueue,
) -> RedirectResponse:
    """A test nudge of this ritual to both phones now (what the API's trigger does)."""
    ritual = await _ritual_of(me, store, ritual_id)
    if me.couple.paused:
        hold = await door.hold(me.couple.id)
        said = sentence(hold) if hold else "You are paused: resume on “Our rhythm” first."
        return to(request, "rituals_page", notice=said, error=True)
    events = planning.manual_trigger(me.couple, ritual, now)
    await store.enqueue(now.timestamp(), events)
    on_enqueue()
    ids = ",".join(e.id for e in events)
    return to(request, "rituals_page", notice="Test nudge sent.", query=f"test={ids}")


@router.get("/rituals-status.json", name="test_status")
async def test_status(
    me: SignedIn,
    history: History,
    ids: Annotated[str, Query(max_length=1000)] = "",
) -> JSONResponse:
    """Whether each partner's phone got the nudges ``ids`` (comma-separated occurrence ids
    of this couple): polled by the rituals page after a test nudge."""
    wanted = [i for i in ids.split(",") if _OCCURRENCES.fullmatch(i)]
    nudges = await history.recent(me.couple.id, 50)
    return JSONResponse(views.delivery_status(me.couple, nudges, wanted))
