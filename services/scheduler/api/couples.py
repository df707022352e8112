"""Couples and their partners: created by the admin, then seen and changed with the couple's
own token."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import apprise
from apprise.manager_plugins import NotificationManager
from apprise.utils.parse import GET_SCHEMA_RE
from fastapi import APIRouter, Depends, HTTPException, Response

from services.scheduler import planning
from services.scheduler.api.deps import (
    AccessData,
    AppriseAsset,
    AppSettings,
    CurrentCaller,
    Door,
    Now,
    SecretKey,
    Store,
)
from services.scheduler.api.errors import Invalid
from services.scheduler.api.fairness import Fair, Fairness, fair
from services.scheduler.api.feeds import feed_url
from services.scheduler.api.schemas import CoupleIn, CouplePatch, PartnerIn
from services.scheduler.partners import view_for
from services.scheduler.rituals import Channel, Couple, Partner
from services.scheduler.store import new_couple_token
from shared.egress import EgressPolicy
from shared.egress import policy as egress_policy
from shared.events import ChannelKind, QuietHours
from shared.ids import new_id
from shared.redaction import redact, remember

router = APIRouter(tags=["couples"], dependencies=[Depends(fair)])

# Apprise's plugin registry (one per process: the plugins of TANDEM_PLUGINS_DIR join it when
# the API's AppriseAsset is made).
_PLUGINS = NotificationManager()


@router.post("/v1/couples", status_code=201)
async def create_couple(
    body: CoupleIn,
    caller: CurrentCaller,
    asset: AppriseAsset,
    store: Store,
    now: Now,
    fairness: Fairness,
    settings: AppSettings,
) -> dict[str, Any]:
    if caller.who is not None:
        raise HTTPException(403, "only the admin token creates couples")
    couple, token, urls = await build_couple(
        body, fairness, asset, egress_policy(settings.channel_allow), now
    )
    await store.create_couple(couple, token, urls)
    return {**couple.model_dump(mode="json"), "token": token}


async def build_couple(
    body: CoupleIn,
    fairness: Fair,
    asset: apprise.AppriseAsset,
    policy: EgressPolicy,
    now: datetime,
) -> tuple[Couple, str, dict[str, str]]:
    """The couple ``body`` describes, a new token for it and its channels' URLs (channel id
    -> URL, kept encrypted apart from the couple) -- nothing stored yet. Raises
    :class:`Invalid` (``loc`` starting with ``body``) for what the caps, Apprise or the
    egress policy refuse. Shared by ``POST /v1/couples`` and the bulk import."""
    fairness.channels_fit(body)
    urls: dict[str, str] = {}
    partners = [
        await _partner(p, ["body", "partners", i], asset, policy, urls)
        for i, p in enumerate(body.partners)
    ]
    couple = Couple(id=new_id("cpl"), name=body.name, partners=partners, created_at=now)
    return couple, new_couple_token(couple.id), urls


async def _partner(
    given: PartnerIn,
    loc: list[str | int],
    asset: apprise.AppriseAsset,
    policy: EgressPolicy,
    urls: dict[str, str],
) -> Partner:
    """The partner ``given`` describes, its channels' URLs added to ``urls``."""
    channels = []
    for j, c in enumerate(given.channels):
        channel = await check_channel(c.url, c.kind, [*loc, "channels", j, "url"], asset, policy)
        urls[channel.id] = c.url
        channels.append(channel)
    return Partner(
        id=new_id("prt"),
        name=given.name,
        timezone=given.timezone,
        channels=channels,
        quiet_hours=QuietHours(**given.quiet_hours.model_dump()) if given.quiet_hours else None,
    )


async def check_channel(
    url: str,
    kind: ChannelKind,
    loc: list[str | int],
    asset: apprise.AppriseAsset,
    policy: EgressPolicy,
) -> Channel:
    """A channel for an Apprise URL this deployment can load and the egress policy allows
    (:mod:`shared.egress`: 422 naming the field otherwise); the URL itself is only shown
    redacted (:func:`shared.redaction.redact`: scheme, host and masked path and query).
    Couples stored before keep the ``redacted`` string they were given."""
    remember(url)  # before Apprise sees it: Apprise logs URLs, the log filter masks these
    service = load(url, asset)
    refused = await policy.check_channel(url, service)  # a local schema, loadable or not
    if refused:
        raise Invalid(loc, refused)
    if service is None or isinstance(service, bool):
        raise Invalid(loc, "not an Apprise URL Tandem can load (unknown scheme or bad parameters)")
    return Channel(id=new_id("chn"), kind=kind, redacted=redact(service))


def load(url: str, asset: apprise.AppriseAsset) -> Any:
    """Apprise's service for ``url``, exactly as ``Apprise.instantiate(url, asset=asset)``
    loads it (the plugin's own ``parse_url``, then the plugin built from its result), or None
    when Apprise cannot load it -- about four times faster: ``instantiate`` formats its trace
    and debug lines (the URL re-rendered twice) whether they are logged or not, ~0.14 ms of
    ~0.18 ms a URL. A schema without a plugin goes through ``instantiate`` itself, which
    also recognises services' native URLs (``https://discord.com/api/webhooks/...``)."""
    escaped = url.replace("/#", "/%23")  # as apprise.plugins.url_to_dict does
    found = GET_SCHEMA_RE.match(escaped)
    if found is None or found.group("schema").lower() not in _PLUGINS:
        return apprise.Apprise.instantiate(url, asset=asset)
    results = _PLUGINS[found.group("schema").lower()].parse_url(escaped)
    if not results or results.get("schema") not in _PLUGINS:
        return None
    plugin = _PLUGINS[results["schema"]]
    if not plugin.enabled:
        return None
    try:
        return plugin(**{**results, "tag": set(), "asset": asset})
    except Exception:  # what instantiate does too: arguments the plugin refuses
        return None


@router.get("/v1/couples/{couple_id}")
async def get_couple(
    couple_id: str,
    caller: CurrentCaller,
    settings: AppSettings,
    secret_key: SecretKey,
    store: Store,
    door: Door,
) -> dict[str, Any]:
    couple = await caller.couple(couple_id)
    generation = await store.feed_generation(couple.id)
    feed = feed_url(settings.api_url, secret_key, couple.id, generation)
    view = {**couple.model_dump(mode="json"), "calendar_feed": feed}
    for partner in view["partners"]:  # each partner's own feed, rotated with the couple's
        partner["calendar_feed"] = feed_url(
            settings.api_url, secret_key, couple.id, generation, partner["id"]
        )
    # A partner token sees the other partner without their channels (issue #13).
    return {**view_for(view, caller.partner_id), "status": await door.status(couple.id)}


@router.patch("/v1/couples/{couple_id}")
async def patch_couple(
    couple_id: str, body: CouplePatch, caller: CurrentCaller, store: Store, now: Now, door: Door
) -> dict[str, Any]:
    couple = await caller.couple(couple_id)
    held = await door.hold(couple.id) if body.paused is False else None
    if held:  # a started couple waits for both partners' verified channels (issue #13)
        raise HTTPException(409, held)
    # Applied to the couple as stored, safe against a concurrent change (issue #13).
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    updated = await door.update_couple(couple, changes, now)
    return updated.model_dump(mode="json")


@router.delete("/v1/couples/{couple_id}", status_code=204)
async def delete_couple(
    couple_id: str, caller: CurrentCaller, store: Store, access: AccessData
) -> Response:
    couple = await caller.couple(couple_id)
    their_rituals = await store.list_rituals(couple.id)
    tracks = [t for r in their_rituals for t in planning.track_ids(couple, r)]
    await store.delete_couple(couple, their_rituals, tracks)
    await access.forget_couple(couple.id, [p.id for p in couple.partners])
    return Response(status_code=204)
