"""Rendering the web app's pages: Jinja2 templates (autoescaped) with what every page needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from services.scheduler.web.session import CSRF_FIELD, csrf_token

# The web app's mount name: its routes are named "web:<route>" from the API app's router,
# so a page route never resolves to an API route of the same name.
MOUNT_NAME = "web"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "web"
templates = Jinja2Templates(directory=TEMPLATES)


def page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """``name`` rendered with ``context``, the session's CSRF token (``csrf``) and whether
    someone is signed in (``signed_in``, for the navigation)."""
    full = {
        "notice": take_notice(request),
        "csrf": csrf_token(request),
        "csrf_field": CSRF_FIELD,
        "signed_in": "partner" in request.session,
        "inviting": "invite" in request.session,  # the partner who started: their invite
        **context,
    }
    return templates.TemplateResponse(request, name, full, status_code=status_code)


def to(
    request: Request,
    name: str,
    *,
    notice: str | None = None,
    error: bool = False,
    query: str = "",
    **params: Any,
) -> RedirectResponse:
    """A 303 to the web app's route ``name`` (POST-redirect-GET), with a one-time notice
    (``error``: shown as a problem to fix) and an optional query string."""
    if notice:
        request.session["notice"] = {"text": notice, "error": error}
    url = str(request.url_for(f"{MOUNT_NAME}:{name}", **params)) + (f"?{query}" if query else "")
    return RedirectResponse(url, status_code=303)


def take_notice(request: Request) -> dict[str, Any] | None:
    """The notice left by the last redirect (shown once): ``text`` and ``error``."""
    notice = request.session.pop("notice", None)
    return notice if isinstance(notice, dict) else None


def sentence(text: str) -> str:
    """``text`` as a sentence on a page: a capital first letter."""
    return text[:1].upper() + text[1:]
