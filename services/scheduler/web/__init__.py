"""The partners' web app: server-rendered pages under :data:`PREFIX`, served by the scheduler.

:func:`create_web_app` builds a sub-application mounted by the API's app factory. It shares
the API's ``app.state`` (store, history, keeping, settings, decks), so the pages call the
same domain functions the ``/v1`` routes call; it has its own session middleware (a signed,
HttpOnly, SameSite=Lax cookie), CSRF check on every form (:mod:`.session`), static CSS and
HTML error pages. Being a mounted app, none of it appears in the API's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Route

from services.scheduler.access import Refused
from services.scheduler.web import channels, rhythm, rituals, start
from services.scheduler.web.render import MOUNT_NAME, page, sentence
from services.scheduler.web.session import SESSION_COOKIE, SESSION_SECONDS, session_key
from shared.settings import Settings

PREFIX = "/app"
STATIC = Path(__file__).resolve().parent / "static"
ROUTERS = (start, channels, rituals, rhythm)


def mount(api: FastAPI) -> None:
    """Serve the web app under :data:`PREFIX` of ``api``, sharing its state, and the short
    invite links ``/join/<token>`` (what an invite link names) as redirects to its join page."""
    api.mount(PREFIX, create_web_app(api.state), name=MOUNT_NAME)
    api.mount("/join", Starlette(routes=[Route("/{token}", _to_join_page)]))


async def _to_join_page(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/join/{request.path_params['token']}", status_code=307)


def create_web_app(state: State) -> FastAPI:
    """The web app over the API's ``state`` (see the module docstring)."""
    settings: Settings = state.settings
    web = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    web.state = state
    web.add_middleware(
        SessionMiddleware,
        secret_key=session_key(settings.require_secret_key()),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,
        path=PREFIX,
        same_site="lax",
        # Secure cookies wherever the app is reached over HTTPS (TANDEM_PUBLIC_URL).
        https_only=settings.api_url.startswith("https://"),
    )
    web.middleware("http")(_protective_headers)
    web.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in ROUTERS:
        web.include_router(module.router)
    web.add_exception_handler(HTTPException, _refused)
    web.add_exception_handler(Refused, _refused)
    return web


# Only the project's own scripts, styles and forms; never inside another site's frame; no
# Referer (an invite link's token is in the join page's URL).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


async def _protective_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers.update(HEADERS)
    return response


async def _refused(request: Request, exc: Exception) -> Response:
    """Every refusal as a page a person can read (the status code kept)."""
    if isinstance(exc, Refused):
        status, text = exc.status, exc.message
    else:
        assert isinstance(exc, HTTPException)
        status, text = exc.status_code, str(exc.detail)
    title = _TITLES.get(status, "That did not work")
    return page(request, "message.html", {"title": title, "text": sentence(text)}, status)


_TITLES = {
    400: "That did not work",
    401: "Please start or join first",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible right now",
    410: "That link no longer works",
    422: "Please check the form",
    429: "Too many tries",
}
