"""The couple's shared goals, each for a quarter (read back at the next quarter's check-in)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Response

from services.scheduler.api.deps import GOAL_ID, CurrentCaller, Now, Store
from services.scheduler.api.fairness import Fairness, fair
from services.scheduler.api.schemas import GoalIn
from services.scheduler.goals import Goal, newest_first
from services.scheduler.keeping import quarter_of
from shared.ids import new_id

router = APIRouter(tags=["goals"], dependencies=[Depends(fair)])


@router.post("/v1/couples/{couple_id}/goals", status_code=201)
async def add_goal(
    couple_id: str,
    body: GoalIn,
    caller: CurrentCaller,
    store: Store,
    now: Now,
    fairness: Fairness,
) -> dict[str, Any]:
    couple = await caller.couple(couple_id)
    await fairness.room_for_goal(couple)
    today = now.astimezone(ZoneInfo(couple.partners[0].timezone)).date()
    goal = Goal(
        id=new_id("gol"),
        text=body.text,
        quarter=body.quarter or quarter_of(today),
        created_at=now,
    )
    await store.add_goal(couple.id, goal)
    return goal.model_dump(mode="json")


@router.get("/v1/couples/{couple_id}/goals")
async def list_goals(couple_id: str, caller: CurrentCaller, store: Store) -> dict[str, Any]:
    couple = await caller.couple(couple_id)
    goals = newest_first(await store.goals(couple.id))
    return {"goals": [g.model_dump(mode="json") for g in goals]}


@router.delete("/v1/couples/{couple_id}/goals/{goal_id}", status_code=204)
async def delete_goal(
    couple_id: str, goal_id: str, caller: CurrentCaller, store: Store
) -> Response:
    couple = await caller.couple(couple_id)
    if not GOAL_ID.fullmatch(goal_id) or not await store.delete_goal(couple.id, goal_id):
        raise HTTPException(404, "goal not found")
    return Response(status_code=204)
