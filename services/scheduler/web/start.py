"""Starting a couple (partner A), the invite link to share, joining from it (partner B),
and signing out. The operations are :class:`~services.scheduler.access.Access`'s."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.scheduler.api.deps import Door, Now
from services.scheduler.partners import Status
from services.scheduler.web.door import DetailsError, details, zone_names
from services.scheduler.web.render import page, to
from services.scheduler.web.session import GUARDS, SignedIn, sign_in, sign_out

router = APIRouter(dependencies=GUARDS)

Text = Annotated[str, Form(max_length=200)]


@router.get("/", response_class=HTMLResponse, name="start_page")
async def start_page(request: Request) -> Response:
    """Who is new starts here; who is signed in goes on to their rituals."""
    if "partner" in request.session:
        return to(request, "rituals_page")
    context = {"title": "Start together", "zones": zone_names()}
    return page(request, "start.html", context)


@router.post("/start", name="start")
async def start(
    request: Request,
    door: Door,
    now: Now,
    name: Text,
    timezone: Text,
    couple_name: Text = "",
) -> Response:
    """Partner A starts the couple: signed in, and on to the invite link to share."""
    try:
        me = details(name, timezone)
    except DetailsError as exc:
        return to(request, "start_page", notice=str(exc), error=True)
    entry = await door.start(couple_name.strip()[:80] or f"{me.name} & partner", me, now)
    sign_in(request, entry.couple.id, entry.partner_id)
    if entry.invite is not None:
        request.session["invite"] = entry.invite.url
    return to(request, "invite_page")


@router.get("/invite", response_class=HTMLResponse, name="invite_page")
async def invite_page(request: Request, me: SignedIn, door: Door) -> HTMLResponse:
    """The invite link to send the other partner, and where the couple stands."""
    state = await door.status(me.couple.id)
    if state is not Status.WAITING_FOR_PARTNER:
        request.session.pop("invite", None)  # used: the navigation stops offering it
    context = {
        "title": "Invite your partner",
        "me": me,
        "link": request.session.get("invite") if state is Status.WAITING_FOR_PARTNER else None,
        "state": state.value,
        "hold": await door.hold(me.couple.id),
    }
    return page(request, "invite.html", context)


@router.post("/invite", name="new_invite")
async def new_invite(request: Request, me: SignedIn, door: Door, now: Now) -> RedirectResponse:
    """A new invite link (the previous one stops working)."""
    issued = await door.invite(me.couple, me.partner.id, now)
    request.session["invite"] = issued.url
    return to(request, "invite_page", notice="Here is a new link; the old one no longer works.")


@router.get("/join/{token}", response_class=HTMLResponse, name="join_page")
async def join_page(request: Request, token: str, door: Door, now: Now) -> HTMLResponse:
    """Partner B opens the invite: whose couple it is, and a form for their own details
    (opening it uses nothing). A used, expired or unknown invite is refused here."""
    couple, invite = await door.peek(token, now)
    inviter = couple.partner(invite.inviter_id)
    context = {
        "title": "Join your partner",
        "couple": couple,
        "inviter": inviter.name if inviter else "Your partner",
        "token": token,
        "zones": zone_names(),
    }
    return page(request, "join.html", context)


@router.post("/join/{token}", name="join")
async def join(
    request: Request, token: str, door: Door, now: Now, name: Text, timezone: Text
) -> Response:
    """Partner B joins with their own details (the invite works once): signed in, and on
    to adding a channel."""
    try:
        me = details(name, timezone)
    except DetailsError as exc:
        return to(request, "join_page", notice=str(exc), error=True, token=token)
    entry = await door.join(token, me, now)
    sign_in(request, entry.couple.id, entry.partner_id)
    return to(
        request,
        "channels_page",
        notice=f"Welcome, {me.name}! Add the phone or address your nudges should reach.",
    )


@router.post("/logout", name="logout")
async def logout(request: Request) -> RedirectResponse:
    sign_out(request)
    return to(request, "start_page", notice="You are signed out.")
