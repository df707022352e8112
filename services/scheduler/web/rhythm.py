""" "Our rhythm": what fires next in each partner's local time, streaks, the last weeks of
nudges with each partner's answers, transition mode, pausing (until a date, or until
resumed), shared goals and the signed-in partner's own calendar link."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from services.scheduler import planning
from services.scheduler.api.deps import (
    GOAL_ID,
    AppSettings,
    Door,
    History,
    Keeper,
    Now,
    SecretKey,
    Store,
)
from services.scheduler.api.fairness import Fair
from services.scheduler.api.feeds import feed_url
from services.scheduler.api.schemas import GoalIn
from services.scheduler.goals import Goal, newest_first
from services.scheduler.keeping import quarter_of
from services.scheduler.web import vacation, views
from services.scheduler.web.render import page, sentence, to
from services.scheduler.web.session import GUARDS, SignedIn
from shared.ids import new_id

router = APIRouter(dependencies=GUARDS)

HISTORY_WEEKS = 4
HISTORY_LIMIT = 100


@router.get("/rhythm", response_class=HTMLResponse, name="rhythm_page")
async def rhythm_page(
    request: Request,
    me: SignedIn,
    store: Store,
    history: History,
    keeping: Keeper,
    settings: AppSettings,
    secret_key: SecretKey,
    door: Door,
    now: Now,
) -> HTMLResponse:
    couple = me.couple
    upcoming = []
    for ritual in await store.list_rituals(couple.id):
        coming = await planning.upcoming(store, couple, ritual, 2)
        upcoming.append(
            {
                "ritual": ritual,
                "next": views.next_for_each(couple, coming),
                "streak": await keeping.streak(couple, ritual, now),
            }
        )
    since = now - timedelta(weeks=HISTORY_WEEKS)
    recent = [
        n
        for n in await history.recent(couple.id, HISTORY_LIMIT)
        if datetime.fromisoformat(n["scheduled_for"]) >= since
    ]
    generation = await store.feed_generation(couple.id)
    context: dict[str, Any] = {
        "title": "Our rhythm",
        "me": me,
        "upcoming": upcoming,
        "history": views.history_rows(couple, recent, me.partner.timezone),
        "weeks": HISTORY_WEEKS,
        "resume": vacation.resume_at(couple, now),
        "hold": await door.hold(couple.id),
        "goals": newest_first(await store.goals(couple.id)),
        "calendar": feed_url(settings.api_url, secret_key, couple.id, generation, me.partner.id),
        "tomorrow": (now.astimezone(ZoneInfo(couple.partners[0].timezone)) + timedelta(days=1))
        .date()
        .isoformat(),
    }
    if context["resume"]:
        context["resume_text"] = views.local_time(context["resume"], me.partner.timezone)
    return page(request, "rhythm.html", context)


@router.post("/rhythm/transition", name="set_transition")
async def set_transition(
    request: Request, me: SignedIn, door: Door, now: Now, on: Annotated[bool, Form()]
) -> RedirectResponse:
    """Transition mode: "life is busy, keep it to two minutes" (short nudges)."""
    await door.update_couple(me.couple, {"transition_mode": on}, now)
    said = "Transition mode is on: nudges stay short." if on else "Transition mode is off."
    return to(request, "rhythm_page", notice=said)


@router.post("/rhythm/pause", name="pause")
async def pause(
    request: Request,
    me: SignedIn,
    door: Door,
    now: Now,
    until: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Pause until a date (resuming by itself that morning) or, with no date, until resumed."""
    if not until:
        await door.update_couple(me.couple, {"paused": True}, now)
        return to(request, "rhythm_page", notice="Paused until you resume.")
    try:
        day = date.fromisoformat(until)
        at = vacation.until(me.couple, day, now)
    except ValueError as exc:
        said = str(exc) if "Pick" in str(exc) else "Give the date as YYYY-MM-DD."
        return to(request, "rhythm_page", notice=said, error=True)
    await door.update_couple(me.couple, {"resume_at": at}, now)
    return to(request, "rhythm_page", notice=f"Paused until {day:%a %-d %b}; we resume then.")


@router.post("/rhythm/resume", name="resume")
async def resume(request: Request, me: SignedIn, door: Door, now: Now) -> RedirectResponse:
    """End any pause now: every ritual fires next from now (nothing skipped is sent) --
    unless the couple is still waiting for a partner or a verified channel."""
    hold = await door.hold(me.couple.id)
    if hold:
        return to(request, "rhythm_page", notice=sentence(hold), error=True)
    await door.update_couple(me.couple, {"paused": False, "resume_at": None}, now)
    return to(request, "rhythm_page", notice="Resumed.")


@router.post("/rhythm/goals", name="add_goal")
async def add_goal(
    request: Request, me: SignedIn, store: Store, now: Now, text: Annotated[str, Form()]
) -> RedirectResponse:
    """A shared goal for this quarter (read back at the next quarterly check-in)."""
    try:
        body = GoalIn(text=text)
        await Fair(request.app.state.settings, store).room_for_goal(me.couple)
    except ValidationError:
        said = "Write the goal in a few words (up to 200 characters)."
        return to(request, "rhythm_page", notice=said, error=True)
    except HTTPException as exc:
        return to(request, "rhythm_page", notice=str(exc.detail), error=True)
    today = now.astimezone(ZoneInfo(me.couple.partners[0].timezone)).date()
    goal = Goal(id=new_id("gol"), text=body.text, quarter=quarter_of(today), created_at=now)
    await store.add_goal(me.couple.id, goal)
    return to(request, "rhythm_page", notice="Goal added.")


@router.post("/rhythm/goals/{goal_id}/reached", name="goal_reached")
async def goal_reached(
    request: Request, goal_id: str, me: SignedIn, store: Store, now: Now
) -> RedirectResponse:
    found = next((g for g in await store.goals(me.couple.id) if g.id == goal_id), None)
    if not GOAL_ID.fullmatch(goal_id) or found is None:
        raise HTTPException(404, "There is no such goal.")
    await store.add_goal(me.couple.id, found.model_copy(update={"reached_at": now}))
    return to(request, "rhythm_page", notice=f"Reached: “{found.text}”. Well done, you two.")
