"""Invites: a link for the partner who has not joined yet, what it opens, and joining."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.scheduler.api.deps import CurrentCaller, Door, Now
from services.scheduler.api.fairness import fair
from services.scheduler.api.partner_schemas import MeIn
from services.scheduler.api.partners import entry_view

router = APIRouter(tags=["partners"], dependencies=[Depends(fair)])


@router.post("/v1/couples/{couple_id}/invite", status_code=201)
async def new_invite(couple_id: str, caller: CurrentCaller, door: Door, now: Now) -> dict[str, Any]:
    """A new invite link for the partner still to join (the previous link stops working);
    409 once both have joined."""
    couple = await caller.couple(couple_id)
    invite = await door.invite(couple, caller.partner_id or couple.partners[0].id, now)
    return {"url": invite.url, "token": invite.token, "expires_at": invite.expires}


@router.get("/v1/invites/{token}")
async def peek_invite(token: str, door: Door, now: Now) -> dict[str, Any]:
    """What an invite opens (no other credential): the couple's name, who invited, until
    when. 404/410 saying what to do when it is unknown, used or expired."""
    couple, invite = await door.peek(token, now)
    inviter = couple.partner(invite.inviter_id)
    return {
        "couple_name": couple.name,
        "invited_by": inviter.name if inviter else None,
        "expires_at": invite.expires,
    }


@router.post("/v1/invites/{token}/join", status_code=201)
async def join(token: str, body: MeIn, door: Door, now: Now) -> dict[str, Any]:
    """Join with the invite (once): one's own token (shown only now) and the couple."""
    return entry_view(await door.join(token, body.details(), now))
