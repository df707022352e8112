"""Partners' own routes: start a couple (no token: the first partner's way in), see who one
is, change one's own details, get a new token, leave.

A partner token (``pt_…``, from ``POST /v1/start`` or joining) opens its couple like the
couple token does -- rituals, goals, pause, transition mode -- but only its own partner's
details and channels (403 for the other's; :meth:`~.deps.Caller.own_partner`), and the
couple as it shows to that partner (the other's channels left out).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.scheduler.access import Entry
from services.scheduler.api.deps import AppSettings, CurrentCaller, Door, Now, SecretKey, Store
from services.scheduler.api.fairness import fair
from services.scheduler.api.feeds import feed_url
from services.scheduler.api.partner_schemas import PartnerPatch, StartIn
from services.scheduler.partners import view_for
from services.scheduler.rituals import Couple
from shared.settings import Settings

router = APIRouter(tags=["partners"], dependencies=[Depends(fair)])


@router.post("/v1/start", status_code=201)
async def start(body: StartIn, door: Door, now: Now) -> dict[str, Any]:
    """Start a couple (no token needed; rate limited per client address): the first
    partner's own token (shown only now) and an invite link for the other (single use,
    expiring). Nothing is scheduled until both joined and each verified a channel."""
    entry = await door.start(body.couple_name, body.details(), now)
    invite = entry.invite
    assert invite is not None
    return {
        **entry_view(entry),
        "invite": {"url": invite.url, "token": invite.token, "expires_at": invite.expires},
    }


def entry_view(entry: Entry) -> dict[str, Any]:
    """What a partner let in is shown: their id, token and the couple as they see it."""
    return {
        "partner_id": entry.partner_id,
        "token": entry.token,
        "couple": view_for(entry.couple.model_dump(mode="json"), entry.partner_id),
    }


@router.get("/v1/me")
async def me(caller: CurrentCaller, door: Door) -> dict[str, Any]:
    """Who the token is: ``admin``, ``couple`` or ``partner`` (with the couple's id and
    status, and the partner's id)."""
    if caller.who is None:
        return {"role": "admin", "couple_id": None, "partner_id": None}
    return {
        "role": "couple" if caller.partner_id is None else "partner",
        "couple_id": caller.who,
        "partner_id": caller.partner_id,
        "status": await door.status(caller.who),
    }


@router.patch("/v1/couples/{couple_id}/partners/{partner_id}")
async def patch_partner(
    couple_id: str,
    partner_id: str,
    body: PartnerPatch,
    caller: CurrentCaller,
    door: Door,
    now: Now,
    settings: AppSettings,
    secret_key: SecretKey,
    store: Store,
) -> dict[str, Any]:
    """Change one's own name, time zone and/or quiet hours (a partner token: only its own;
    the couple and admin tokens: either partner's). A new zone moves local rituals."""
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    updated = await door.update_partner(couple, partner_id, body.changes(), now)
    return await partner_view(updated, partner_id, settings, secret_key, store)


async def partner_view(
    couple: Couple, partner_id: str, settings: Settings, secret_key: str, store: Store
) -> dict[str, Any]:
    """One partner as they see themselves, with their own calendar feed."""
    generation = await store.feed_generation(couple.id)
    partner = couple.partner(partner_id)
    assert partner is not None
    return {
        **partner.model_dump(mode="json"),
        "calendar_feed": feed_url(settings.api_url, secret_key, couple.id, generation, partner_id),
    }


@router.post("/v1/couples/{couple_id}/partners/{partner_id}/token")
async def rotate_partner_token(
    couple_id: str, partner_id: str, caller: CurrentCaller, door: Door
) -> dict[str, Any]:
    """A new token for the partner, shown only now; their previous one stops working."""
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    return {"partner_id": partner_id, "token": await door.new_token(couple, partner_id)}


@router.post("/v1/couples/{couple_id}/partners/{partner_id}/leave")
async def leave(
    couple_id: str, partner_id: str, caller: CurrentCaller, door: Door, now: Now
) -> dict[str, Any]:
    """The partner leaves the couple: their channels are removed, their token stops
    working, and the couple is paused for good."""
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    await door.leave(couple, partner_id, now)
    return {"couple_id": couple.id, "partner_id": partner_id, "status": "left"}
