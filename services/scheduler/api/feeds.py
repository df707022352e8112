"""The couple's rituals as a calendar feed (iCalendar), for phone calendars.

The feed URL carries a token that is derived, not stored: an HMAC over the couple id and
the couple's feed *generation*, keyed by a feed key of its own (HKDF of
``TANDEM_SECRET_KEY`` with the label ``tandem-feed``, so the token never doubles as anything
else the secret protects). Rotating the feed (``POST /v1/couples/{id}/calendar-feed``) gives
the couple a new generation, so a new URL, and the old one stops working at once. During a
key rotation, tokens derived from ``TANDEM_OLD_SECRET_KEYS`` are still accepted.

Each partner has a feed of their own (``/v1/couples/{id}/partners/{partner_id}/calendar.ics``:
what fires for them, a "local" ritual at their own wall-clock time in their zone), with a
token derived the same way with the partner id in the MAC: it opens that partner's feed
only, not the couple's nor the other partner's. It uses the couple's feed generation, so
rotating the couple's feed rotates both partners' feeds too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import APIRouter, Depends, HTTPException, Request, Response

from services.scheduler import calendar_feed
from services.scheduler.api.deps import (
    COUPLE_ID,
    PARTNER_ID,
    AppSettings,
    Caller,
    CurrentCaller,
    Now,
    SecretKeys,
    Store,
    access_store,
    principal,
)
from services.scheduler.api.fairness import fair

router = APIRouter(tags=["couples"], dependencies=[Depends(fair)])

FEED_LABEL = b"tandem-feed"


def feed_key(secret_key: str) -> bytes:
    """The key calendar feed tokens are derived with: HKDF-SHA256 of the secret key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=FEED_LABEL).derive(
        secret_key.encode()
    )


def feed_token(
    secret_key: str, couple_id: str, generation: str, partner_id: str | None = None
) -> str:
    """The secret ``feed`` parameter of a couple's calendar URL (or, with ``partner_id``, of
    that partner's own), for one feed generation. A generation never holds a ":", so the
    couple's message and a partner's never coincide."""
    message = (
        f"{couple_id}:{generation}"
        if partner_id is None
        else (f"{couple_id}:{partner_id}:{generation}")
    )
    mac = hmac.new(feed_key(secret_key), message.encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def feed_url(
    api_url: str, secret_key: str, couple_id: str, generation: str, partner_id: str | None = None
) -> str:
    """The couple's calendar URL (or a partner's own), that works without a token."""
    token = feed_token(secret_key, couple_id, generation, partner_id)
    path = f"/v1/couples/{couple_id}"
    if partner_id is not None:
        path += f"/partners/{partner_id}"
    return f"{api_url}{path}/calendar.ics?feed={token}"


def feed_matches(
    feed: str,
    keys: Sequence[str],
    couple_id: str,
    generation: str,
    partner_id: str | None = None,
) -> bool:
    """Whether ``feed`` is the couple's (or the partner's) current feed token under any of
    ``keys``."""
    return any(
        hmac.compare_digest(feed, feed_token(key, couple_id, generation, partner_id))
        for key in keys
    )


@router.get("/v1/couples/{couple_id}/calendar.ics")
async def calendar(
    couple_id: str,
    request: Request,
    settings: AppSettings,
    secret_keys: SecretKeys,
    store: Store,
    now: Now,
    feed: str | None = None,
) -> Response:
    """The couple's rituals for phone calendars: with the couple's token, or with the
    secret ``feed`` parameter of the couple's ``calendar_feed`` URL."""
    if not COUPLE_ID.fullmatch(couple_id):
        raise HTTPException(404, "couple not found")
    return await _serve(couple_id, None, request, settings, secret_keys, store, now, feed)


@router.get("/v1/couples/{couple_id}/partners/{partner_id}/calendar.ics")
async def partner_calendar(
    couple_id: str,
    partner_id: str,
    request: Request,
    settings: AppSettings,
    secret_keys: SecretKeys,
    store: Store,
    now: Now,
    feed: str | None = None,
) -> Response:
    """One partner's rituals for their phone calendar: a "local" ritual at their own
    wall-clock time in their zone, a "together" one at the couple's instant. With the
    couple's token, or with the secret ``feed`` parameter of the partner's ``calendar_feed``
    URL (rotated with the couple's feed)."""
    if not COUPLE_ID.fullmatch(couple_id) or not PARTNER_ID.fullmatch(partner_id):
        raise HTTPException(404, "partner not found")
    return await _serve(couple_id, partner_id, request, settings, secret_keys, store, now, feed)


async def _serve(
    couple_id: str,
    partner_id: str | None,
    request: Request,
    settings: AppSettings,
    secret_keys: Sequence[str],
    store: Store,
    now: Now,
    feed: str | None,
) -> Response:
    if feed is None:
        who = await principal(request, settings, store, access_store(request))
    elif feed_matches(
        feed, secret_keys, couple_id, await store.feed_generation(couple_id), partner_id
    ):
        who = couple_id  # the feed grants its couple's own view
    else:
        raise HTTPException(401, "wrong calendar feed token")
    couple = await Caller(store, who).couple(couple_id)
    partner = None
    if partner_id is not None:
        partner = couple.partner(partner_id)
        if partner is None:
            raise HTTPException(404, "partner not found")
    ritual_list = await store.list_rituals(couple.id)
    body = calendar_feed.feed(couple, ritual_list, now=now, partner=partner)
    return Response(body, media_type="text/calendar; charset=utf-8")


@router.post("/v1/couples/{couple_id}/calendar-feed")
async def rotate_feed(
    couple_id: str, caller: CurrentCaller, settings: AppSettings, store: Store
) -> dict[str, Any]:
    """A new calendar feed URL for the couple, and for each partner; the old ones stop
    working at once."""
    couple = await caller.couple(couple_id)
    generation = await store.rotate_feed(couple.id)
    key = settings.require_secret_key()
    return {
        "calendar_feed": feed_url(settings.api_url, key, couple.id, generation),
        "partners": [
            {
                "id": p.id,
                "calendar_feed": feed_url(settings.api_url, key, couple.id, generation, p.id),
            }
            for p in couple.partners
        ],
    }
