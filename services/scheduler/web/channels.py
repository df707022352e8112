"""A partner's own channels: add one with a helper form (an ntfy topic with its QR code, an
e-mail address, an SMS or Signal number, or any Apprise URL), verify it with the code sent
through it, pause, resume or remove it. Only the signed-in partner's own channels are
shown or reachable: another partner's channel id is "not found", and nothing changes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from services.scheduler.access import Refused
from services.scheduler.api.deps import AppSettings, Door, Now
from services.scheduler.channel_forms import (
    ChannelForm,
    FormError,
    choose,
    ntfy_qr_svg,
    ntfy_subscribe_link,
    random_topic,
)
from services.scheduler.web.door import DetailsError, details, zone_names
from services.scheduler.web.render import page, sentence, to
from services.scheduler.web.session import GUARDS, SignedIn
from shared.settings import Settings

router = APIRouter(dependencies=GUARDS)

Field = Annotated[str, Form(max_length=2048)]
# What a refused form says on the page rather than as an error page: the form's own problems.
SHOWN_ON_PAGE = frozenset({409, 422, 429})


def shown(redacted: str) -> str:
    """A channel's redacted URL as its card shows it: without the query's settings."""
    return redacted.split("?", 1)[0]


# The form field each helper form's value is in (what a refusal names).
FIELDS = {"ntfy": "topic", "email": "address", "sms": "number", "signal": "number", "url": "url"}
LABELS = {"pending": "waiting for its code", "active": "verified", "paused": "paused"}
# The API's QR route (api/verification.py), on this origin as the page's CSP wants.
QR_PATH = "/v1/channel-forms/ntfy-qr.svg"


def offered(settings: Settings) -> dict[str, bool]:
    """Which helper forms this deployment can turn into channels (gateways configured)."""
    return {
        "email": bool(settings.smtp_relay),
        "sms": bool(settings.sms_gateway),
        "signal": bool(settings.signal_gateway),
    }


@router.get("/channels", response_class=HTMLResponse, name="channels_page")
async def channels_page(
    request: Request, me: SignedIn, door: Door, settings: AppSettings
) -> HTMLResponse:
    topic = request.session.get("topic")
    if not isinstance(topic, str):
        topic = request.session["topic"] = random_topic()
    records = await door.channels(me.couple, me.partner.id)
    context = {
        "title": "My channels",
        "me": me,
        "records": records,
        "labels": LABELS,
        "shown": shown,
        "offered": offered(settings),
        "topic": topic,
        "qr": Markup(ntfy_qr_svg(settings.ntfy_server, topic)),  # segno's own SVG markup
        "subscribe": ntfy_subscribe_link(settings.ntfy_server, topic),
        # For ntfy-qr.js, which redraws both as the topic is edited.
        "qr_src": QR_PATH,
        "subscribe_template": ntfy_subscribe_link(settings.ntfy_server, "__topic__"),
        "ntfy_server": settings.ntfy_server,
        "hold": await door.hold(me.couple.id),
        "zones": zone_names(),
    }
    return page(request, "channels.html", context)


@router.post("/channels", name="add_channel")
async def add_channel(
    request: Request,
    me: SignedIn,
    door: Door,
    settings: AppSettings,
    now: Now,
    type: Annotated[Literal["ntfy", "email", "sms", "signal", "url"], Form()],
    topic: Field = "",
    address: Field = "",
    number: Field = "",
    url: Field = "",
    kind: Annotated[Literal["push", "sms", "email"], Form()] = "push",
) -> RedirectResponse:
    """A new channel from a helper form; its code is sent through it at once."""
    given = {"topic": topic, "address": address, "number": number, "url": url}
    try:
        form = ChannelForm.model_validate(
            {"type": type, "kind": kind, **{k: v.strip() for k, v in given.items() if v.strip()}}
        )
        choice = choose(form, settings)
        await door.add_channel(me.couple, me.partner.id, choice, FIELDS[type], now)
    except (FormError, Refused, ValueError) as exc:
        return _problem(request, exc)
    if type == "ntfy":
        request.session.pop("topic", None)
    where = {"ntfy": f"your ntfy topic {topic}", "email": address, "url": "that URL"}
    said = f"We sent a code to {where.get(type, number)}. Enter it below to verify this channel."
    return to(request, "channels_page", notice=said)


@router.post("/channels/{channel_id}/verify", name="verify_channel")
async def verify_channel(
    request: Request,
    channel_id: str,
    me: SignedIn,
    door: Door,
    now: Now,
    code: Annotated[str, Form(max_length=32)],
) -> RedirectResponse:
    try:
        await door.verify(me.couple, me.partner.id, channel_id, code, now)
    except Refused as exc:
        return _problem(request, exc)
    said = "Verified: your nudges reach you there."
    if not await door.hold(me.couple.id):
        said += " You are both set: your rituals are scheduled."
    return to(request, "channels_page", notice=said)


@router.post("/channels/{channel_id}/code", name="resend_code")
async def resend_code(
    request: Request, channel_id: str, me: SignedIn, door: Door
) -> RedirectResponse:
    record = next(
        (r for r in await door.channels(me.couple, me.partner.id) if r.id == channel_id), None
    )
    if record is None:
        raise Refused(404, "channel not found")
    try:
        await door.send_code(me.couple, record)
    except Refused as exc:
        return _problem(request, exc)
    return to(request, "channels_page", notice="A new code is on its way.")


@router.post("/channels/{channel_id}/{change}", name="change_channel")
async def change_channel(
    request: Request,
    channel_id: str,
    change: Literal["pause", "resume", "remove"],
    me: SignedIn,
    door: Door,
) -> RedirectResponse:
    try:
        if change == "remove":
            await door.remove_channel(me.couple, me.partner.id, channel_id)
        else:
            await door.set_paused(me.couple, me.partner.id, channel_id, change == "pause")
    except Refused as exc:
        return _problem(request, exc)
    said = {"pause": "Paused: nudges stop using it.", "resume": "Resumed.", "remove": "Removed."}
    return to(request, "channels_page", notice=said[change])


@router.post("/me", name="update_me")
async def update_me(
    request: Request,
    me: SignedIn,
    door: Door,
    now: Now,
    name: Annotated[str, Form(max_length=200)],
    timezone: Annotated[str, Form(max_length=200)],
    quiet_start: Annotated[str, Form(max_length=10)] = "",
    quiet_end: Annotated[str, Form(max_length=10)] = "",
) -> RedirectResponse:
    """The signed-in partner's own name, time zone and quiet hours (a new zone moves their
    rituals kept "each at our own local time")."""
    try:
        given = details(name, timezone, quiet_start, quiet_end)
    except DetailsError as exc:
        return to(request, "channels_page", notice=str(exc), error=True)
    changes: dict[str, object] = {
        "name": given.name,
        "timezone": given.timezone,
        "quiet_hours": given.quiet_hours,
    }
    await door.update_partner(me.couple, me.partner.id, changes, now)
    return to(request, "channels_page", notice="Saved your details.")


def _problem(request: Request, exc: Exception) -> RedirectResponse:
    """A form's problem shown on the channels page; anything else (a channel that is not
    the partner's: 404) stays an error page."""
    if isinstance(exc, Refused) and exc.status not in SHOWN_ON_PAGE:
        raise exc
    if isinstance(exc, FormError):
        said = exc.reason
    elif isinstance(exc, Refused):
        said = exc.message
    else:
        said = "Check the form: a field is too long or not one we offer."
    return to(request, "channels_page", notice=sentence(said), error=True)
