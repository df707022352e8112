"""The couple's rituals as a calendar feed (iCalendar), for phone calendars."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from services.scheduler import calendar_feed
from services.scheduler.api.deps import AppSettings, Caller, Now, SecretKey, Store, principal
from services.scheduler.api.fairness import fair

router = APIRouter(tags=["couples"], dependencies=[Depends(fair)])


def feed_token(secret_key: str, couple_id: str) -> str:
    """The secret ``feed`` parameter of a couple's calendar URL."""
    # Derived, not stored: the feed URL is a capability only the secret key can mint.
    mac = hmac.new(secret_key.encode(), f"feed:{couple_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def feed_url(api_url: str, secret_key: str, couple_id: str) -> str:
    """The couple's calendar URL, that works without a token."""
    token = feed_token(secret_key, couple_id)
    return f"{api_url}/v1/couples/{couple_id}/calendar.ics?feed={token}"


@router.get("/v1/couples/{couple_id}/calendar.ics")
async def calendar(
    couple_id: str,
    request: Request,
    settings: AppSettings,
    secret_key: SecretKey,
    store: Store,
    now: Now,
    feed: str | None = None,
) -> Response:
    """The couple's rituals for phone calendars: with the couple's token, or with the
    secret ``feed`` parameter of the couple's ``calendar_feed`` URL."""
    if feed is None:
        who = await principal(request, settings, store)
    elif hmac.compare_digest(feed, feed_token(secret_key, couple_id)):
        who = couple_id  # the feed grants its couple's own view
    else:
        raise HTTPException(401, "wrong calendar feed token")
    couple = await Caller(store, who).couple(couple_id)
    body = calendar_feed.feed(couple, await store.list_rituals(couple.id), now=now)
    return Response(body, media_type="text/calendar; charset=utf-8")
