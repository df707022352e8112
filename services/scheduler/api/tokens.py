"""Rotating a couple's token: a new one, and the old one stops working at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from services.scheduler.api.deps import CurrentCaller, Store
from services.scheduler.api.fairness import fair
from services.scheduler.store import new_couple_token

router = APIRouter(tags=["couples"], dependencies=[Depends(fair)])


@router.post("/v1/couples/{couple_id}/token")
async def rotate_token(couple_id: str, caller: CurrentCaller, store: Store) -> dict[str, Any]:
    """A new token for the couple (with the couple's token or the admin's); the old token
    is refused from this moment on. The new token is shown only in this answer."""
    couple = await caller.couple(couple_id)
    if caller.partner_id is not None:  # the couple token may act for either partner
        raise HTTPException(
            403,
            "a partner token cannot make a couple token; for a new partner token, POST"
            " /v1/couples/{couple_id}/partners/{partner_id}/token",
        )
    token = new_couple_token(couple.id)
    await store.rotate_token(couple.id, token)
    return {"couple_id": couple.id, "token": token}
