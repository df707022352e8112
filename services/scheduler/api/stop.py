"""Stop links: ``/s/<token>`` from every nudge (and e-mail's ``List-Unsubscribe``), working
without logging in (the token is signed, ``shared.links.stop_link``).

``GET`` shows the partner's verified channels with a "pause" button each, and "leave the
couple"; only ``POST`` acts (a form's ``do=pause`` with ``channel``, or ``do=leave``), so a
mail scanner or link preview opening the link changes nothing. An RFC 8058 one-click POST
(body ``List-Unsubscribe=One-Click``) pauses the channel the link names. HTML for a
browser, JSON otherwise.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from services.scheduler.access import Refused
from services.scheduler.api.answers import templates
from services.scheduler.api.deps import Door, Now, SecretKeys
from services.scheduler.api.fairness import fair
from shared import links

router = APIRouter(tags=["stop"], dependencies=[Depends(fair)])

# Form bodies are tiny; parse_qs suffices (no multipart parser needed).
_FORM_FIELDS = 4


def _grant(secret_keys: list[str], token: str) -> links.StopGrant:
    """The stop grant, or :class:`Refused`: 410 once expired, 403 forged, 400 garbled."""
    try:
        return links.verify_stop(secret_keys, token)
    except links.LinkError as exc:
        status = 410 if "expired" in str(exc) else 403 if "signature" in str(exc) else 400
        raise Refused(status, str(exc)) from None


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _said(request: Request, status: int, title: str, text: str, body: dict[str, Any]) -> Response:
    if _wants_html(request):
        context = {"title": title, "text": text}
        return templates.TemplateResponse(request, "page.html", context, status_code=status)
    return JSONResponse(body, status_code=status)


@router.get("/s/{token}", response_class=HTMLResponse)
async def stop_page(token: str, request: Request, secret_keys: SecretKeys, door: Door) -> Response:
    """What the stop link can do: pause one of the partner's channels, or leave."""
    try:
        couple, records = await door.stop_target(_grant(secret_keys, token))
    except Refused as exc:
        return _said(
            request, exc.status, "That link did not work", exc.message, {"detail": exc.message}
        )
    channels = [r.public() for r in records]
    if not _wants_html(request):
        return JSONResponse({"couple": couple.name, "channels": channels})
    context = {
        "title": "Stop Tandem nudges",
        "text": f"Pause a channel, or leave {couple.name}.",
        "channels": channels,
    }
    return templates.TemplateResponse(request, "stop.html", context)


@router.post("/s/{token}")
async def stop(
    token: str, request: Request, secret_keys: SecretKeys, door: Door, now: Now
) -> Response:
    """Act on a stop link: ``do=leave``, or ``do=pause`` (with ``channel``, else the
    channel the link names, else all of the partner's), or a one-click unsubscribe."""
    form = parse_qs((await request.body()).decode(errors="replace"), max_num_fields=_FORM_FIELDS)
    do = form.get("do", ["pause"])[0]
    if do not in ("pause", "leave"):
        return _said(
            request,
            422,
            "That did not work",
            "do must be pause or leave",
            {
                "detail": [
                    {
                        "loc": ["body", "do"],
                        "msg": "do must be pause or leave",
                        "type": "value_error",
                    }
                ]
            },
        )
    try:
        said = await door.stop(
            _grant(secret_keys, token), do == "leave", form.get("channel", [None])[0], now
        )
    except Refused as exc:
        return _said(
            request, exc.status, "That link did not work", exc.message, {"detail": exc.message}
        )
    return _said(request, 200, "Done", said, {"done": do, "detail": said})
