"""Who is signed in, and the CSRF check every form passes.

The session is Starlette's ``SessionMiddleware``: the whole session is a cookie signed with
itsdangerous (HttpOnly, SameSite=Lax, expiring ``SESSION_SECONDS`` after the last visit),
keyed by a key derived from ``TANDEM_SECRET_KEY`` so it never equals the key that encrypts
channel URLs. It holds only ids and the CSRF token.

CSRF: the synchronizer-token pattern (OWASP's primary defence). Each session gets a random
token; every page renders it into its forms as a hidden field, and every non-GET request to
the web app must send it back (:func:`csrf_checked`, in :data:`GUARDS`, which every web
router depends on).
Because the token lives inside the signed session, a forged form from another site can
neither read nor guess it. This needs no second cookie and works without JavaScript -- the
reasons for not using ``starlette-csrf`` (it reads the token from a header only, so every
plain HTML form would need script) or ``fastapi-csrf-protect`` (a second signed cookie on
top of a session that is already signed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from services.scheduler.api.deps import AppSettings, Door, Store
from services.scheduler.api.fairness import fair
from services.scheduler.rituals import Couple, Partner

SESSION_COOKIE = "tandem_session"
SESSION_SECONDS = 14 * 86400  # signed out after two weeks without a visit
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORGED = (
    "This form did not come from Tandem's own page (its safety token is missing or out of "
    "date), so nothing was changed. Go back, reload the page and try again."
)


def session_key(secret_key: str) -> str:
    """The session-signing key, derived from (never equal to) ``TANDEM_SECRET_KEY``."""
    return hmac.new(secret_key.encode(), b"tandem web session", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


async def csrf_checked(request: Request) -> None:
    """403 (nothing done) for a non-GET request without this session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get(CSRF_FIELD)
    given = (await request.form()).get(CSRF_FIELD)
    if not isinstance(expected, str) or not isinstance(given, str):
        raise HTTPException(403, FORGED)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise HTTPException(403, FORGED)


def sign_in(request: Request, couple_id: str, partner_id: str) -> None:
    """Make this browser ``partner_id`` of ``couple_id`` (a fresh CSRF token with it)."""
    request.session.clear()
    request.session.update({"couple": couple_id, "partner": partner_id})
    csrf_token(request)


def sign_out(request: Request) -> None:
    request.session.clear()


@dataclass(frozen=True)
class Me:
    """The signed-in partner and their couple, as stored now."""

    couple: Couple
    partner: Partner

    @property
    def other(self) -> Partner | None:
        return next((p for p in self.couple.partners if p.id != self.partner.id), None)


async def me(request: Request, store: Store, door: Door) -> Me:
    """The signed-in partner; 401 when no one is (or their couple is gone, or they left
    it: leaving ends every session at once, as it voids the partner's token)."""
    couple_id, partner_id = request.session.get("couple"), request.session.get("partner")
    if isinstance(couple_id, str) and isinstance(partner_id, str):
        couple = await store.get_couple(couple_id)
        partner = couple.partner(partner_id) if couple else None
        membership = await door.access.membership(couple_id)
        left = membership is not None and partner_id in membership.left
        if couple is not None and partner is not None and not left:
            return Me(couple, partner)
    sign_out(request)
    raise HTTPException(401, "Your session has ended. Start a couple or open your invite link.")


async def counted(request: Request, settings: AppSettings, store: Store) -> None:
    """Count every form sent against its sender's rate limit (the API's own, per address):
    429 with a message once over it. Page views and the status poll are not counted."""
    if request.method not in SAFE_METHODS:
        await fair(request, settings, store)


SignedIn = Annotated[Me, Depends(me)]
# What every web router depends on: the CSRF check, then the rate limit, for every form.
GUARDS = [Depends(csrf_checked), Depends(counted)]
