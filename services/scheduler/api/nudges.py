"""The couple's recent nudges and what became of them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.scheduler.api.deps import CurrentCaller, History
from services.scheduler.api.fairness import fair
from services.scheduler.partners import history_for

router = APIRouter(tags=["history"], dependencies=[Depends(fair)])


@router.get("/v1/couples/{couple_id}/nudges")
async def nudges(
    couple_id: str,
    caller: CurrentCaller,
    history: History,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    couple = await caller.couple(couple_id)
    # A partner token does not see the other partner's channels (issue #13).
    return {"nudges": history_for(await history.recent(couple.id, limit), caller.partner_id)}
