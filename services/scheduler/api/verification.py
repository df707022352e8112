"""A partner's own channels: add one from a form (a code is sent through it), enter the
code, send a new one, pause, resume, remove; and the helpers the forms use (what this
server offers, a fresh ntfy topic and its QR code).

Only a verified channel is used for nudges (see ``services/scheduler/verification.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from services.scheduler.access import Refused
from services.scheduler.api.deps import AppSettings, CurrentCaller, Door, Now
from services.scheduler.api.fairness import fair
from services.scheduler.api.partner_schemas import CodeIn
from services.scheduler.channel_forms import (
    ChannelForm,
    FormError,
    choose,
    ntfy_qr_svg,
    ntfy_subscribe_link,
    random_topic,
)

router = APIRouter(tags=["channels"], dependencies=[Depends(fair)])

CHANNELS = "/v1/couples/{couple_id}/partners/{partner_id}/channels"
# The form field a refused URL is reported on, per form type.
_FIELD = {"ntfy": "topic", "email": "address", "sms": "number", "signal": "number", "url": "url"}


@router.get(CHANNELS)
async def list_channels(
    couple_id: str, partner_id: str, caller: CurrentCaller, door: Door
) -> list[dict[str, Any]]:
    """The partner's own channels (pending, active, paused), in fallback order."""
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    return [r.public() for r in await door.channels(couple, partner_id)]


@router.post(CHANNELS, status_code=201)
async def add_channel(
    couple_id: str,
    partner_id: str,
    body: ChannelForm,
    caller: CurrentCaller,
    door: Door,
    now: Now,
    settings: AppSettings,
) -> dict[str, Any]:
    """Add a channel from a form (ntfy topic, e-mail address, SMS or Signal number, or any
    Apprise URL); it stays pending, unused, until the code just sent through it is
    entered at ``…/channels/{channel_id}/verify``."""
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    try:
        choice = choose(body, settings)
    except FormError as exc:
        raise Refused.at(["body", exc.field], exc.reason) from None
    record = await door.add_channel(couple, partner_id, choice, _FIELD[body.type], now)
    return {**record.public(), "code_sent": True}


@router.post(CHANNELS + "/{channel_id}/code", status_code=202)
async def send_code(
    couple_id: str, partner_id: str, channel_id: str, caller: CurrentCaller, door: Door
) -> dict[str, Any]:
    """Send a new code through a pending channel (the previous code stops working)."""
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    record = await door.channel(couple, partner_id, channel_id)
    await door.send_code(couple, record)
    return {**record.public(), "code_sent": True}


@router.post(CHANNELS + "/{channel_id}/verify")
async def verify(
    couple_id: str,
    partner_id: str,
    channel_id: str,
    body: CodeIn,
    caller: CurrentCaller,
    door: Door,
    now: Now,
) -> dict[str, Any]:
    """Enter the code sent through the channel: it becomes active (used for nudges). Once
    both partners have a verified channel, the couple's rituals are scheduled."""
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    record = await door.verify(couple, partner_id, channel_id, body.code, now)
    return {**record.public(), "couple_status": await door.status(couple.id)}


async def _set_paused(
    couple_id: str,
    partner_id: str,
    channel_id: str,
    caller: CurrentCaller,
    door: Door,
    paused: bool,
) -> dict[str, Any]:
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    return (await door.set_paused(couple, partner_id, channel_id, paused)).public()


@router.post(CHANNELS + "/{channel_id}/pause")
async def pause(
    couple_id: str, partner_id: str, channel_id: str, caller: CurrentCaller, door: Door
) -> dict[str, Any]:
    """Stop nudges through this channel (it stays verified; resume it any time)."""
    return await _set_paused(couple_id, partner_id, channel_id, caller, door, True)


@router.post(CHANNELS + "/{channel_id}/resume")
async def resume(
    couple_id: str, partner_id: str, channel_id: str, caller: CurrentCaller, door: Door
) -> dict[str, Any]:
    """Use a paused channel for nudges again."""
    return await _set_paused(couple_id, partner_id, channel_id, caller, door, False)


@router.delete(CHANNELS + "/{channel_id}", status_code=204)
async def remove(
    couple_id: str, partner_id: str, channel_id: str, caller: CurrentCaller, door: Door
) -> Response:
    """Remove one of the partner's channels."""
    couple = await caller.couple(couple_id)
    caller.own_partner(couple, partner_id)
    await door.remove_channel(couple, partner_id, channel_id)
    return Response(status_code=204)


@router.get("/v1/channel-forms")
async def channel_forms(settings: AppSettings) -> dict[str, Any]:
    """Which channel forms this server offers (a gateway configured for each), and a fresh
    ntfy topic to suggest with its subscribe link."""
    topic = random_topic()
    return {
        "ntfy": {
            "server": settings.ntfy_server,
            "suggested_topic": topic,
            "subscribe_link": ntfy_subscribe_link(settings.ntfy_server, topic),
        },
        "email": settings.smtp_relay is not None,
        "sms": settings.sms_gateway is not None,
        "signal": settings.signal_gateway is not None,
        "url": True,
    }


@router.get("/v1/channel-forms/ntfy-qr.svg", response_class=Response)
async def ntfy_qr(
    settings: AppSettings, topic: Annotated[str, Query(min_length=1, max_length=64)]
) -> Response:
    """A QR code (SVG) that subscribes the ntfy phone app to ``topic`` on this server's
    ntfy server."""
    try:
        svg = ntfy_qr_svg(settings.ntfy_server, topic)
    except FormError as exc:
        raise Refused.at(["query", exc.field], exc.reason) from None
    return Response(svg, media_type="image/svg+xml")
