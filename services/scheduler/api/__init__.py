"""The scheduler's HTTP API: couples, partners, rituals, upcoming firings, answers, history.

One router per resource; :func:`create_app` only assembles them. Every ``/v1`` call needs
``Authorization: Bearer <token>``: the admin token sees everything, a couple token only its
own couple and rituals, a partner token that couple with only its own partner's details and
channels (see :mod:`.deps`) -- except starting a couple and using an invite, and the signed
links (``/a/``, ``/s/``, calendar feeds).
"""

from __future__ import annotations

from collections.abc import Callable

import apprise
from fastapi import FastAPI

from services.content.decks import Catalog, load_catalog
from services.notifier.channels import Channels
from services.scheduler import web
from services.scheduler.access import Access, Refused
from services.scheduler.access_store import AccessStore
from services.scheduler.api import (
    answers,
    couples,
    errors,
    feeds,
    goals,
    imports,
    invites,
    nudges,
    ops,
    partners,
    rituals,
    stop,
    tokens,
    verification,
)
from services.scheduler.api.deps import Readiness
from services.scheduler.api.fairness import RateLimits
from services.scheduler.api.partner_schemas import answer_refused
from services.scheduler.history import NudgeHistory
from services.scheduler.keeping import Keeping
from services.scheduler.rituals import Channel
from services.scheduler.store import SchedulerStore
from shared.egress import policy as egress_policy
from shared.events import ChannelKind
from shared.settings import Settings

# In this order, so the OpenAPI document lists the paths as it always has.
ROUTERS = (ops, couples, rituals, nudges, answers, goals, feeds, tokens, imports)
# Partners' own door (issue #13), after them.
DOOR_ROUTERS = (partners, invites, verification, stop)


def create_app(
    settings: Settings,
    store: SchedulerStore,
    history: NudgeHistory,
    keeping: Keeping,
    on_enqueue: Callable[[], None] = lambda: None,
    readiness: Readiness | None = None,
    catalog: Catalog | None = None,
) -> FastAPI:
    """The HTTP API over ``store``; ``on_enqueue`` is told when a manual trigger or an
    answer wrote to the outbox, so the publisher need not wait for its next tick.
    ``catalog`` is the decks rituals may name (default: loaded as the content service
    loads them, shipped plus ``TANDEM_DECKS_DIR``; a broken deck stops start-up)."""
    settings.require_admin_token()
    settings.require_secret_key()
    app = FastAPI(
        title="Tandem scheduler",
        version="1",
        description="Couples, partners and rituals; nudges at the right instant.",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.history = history
    app.state.keeping = keeping
    app.state.on_enqueue = on_enqueue
    app.state.readiness = readiness
    app.state.catalog = catalog if catalog is not None else load_catalog(settings.decks_dir)
    app.state.rate_limits = RateLimits.over(store.redis, settings)
    app.state.apprise_asset = apprise.AppriseAsset(
        plugin_paths=[str(settings.plugins_dir)] if settings.plugins_dir else []
    )
    app.state.access_store = AccessStore(store)
    app.state.door = door(settings, store, app.state.access_store, app.state.apprise_asset)
    errors.install(app, larger={imports.PATH: imports.MAX_BODY_BYTES})
    app.add_exception_handler(Refused, answer_refused)
    for module in (*ROUTERS, *DOOR_ROUTERS):
        app.include_router(module.router)
    web.mount(app)  # the partners' pages under /app (no OpenAPI entries)
    return app


def door(
    settings: Settings, store: SchedulerStore, access: AccessStore, asset: apprise.AppriseAsset
) -> Access:
    """Partners' own door over ``store``: channels checked as ``POST /v1/couples`` checks
    them, codes sent with the notifier's own channel code (same timeouts, egress guard)."""
    policy = egress_policy(settings.channel_allow)

    async def check(url: str, kind: ChannelKind, loc: list[str | int]) -> Channel:
        try:
            return await couples.check_channel(url, kind, loc, asset, policy)
        except errors.Invalid as exc:
            raise Refused.at(exc.loc, exc.reason) from None

    sender = Channels(
        connect_timeout=settings.delivery_connect_timeout,
        read_timeout=settings.delivery_read_timeout,
        plugins_dir=settings.plugins_dir,
        egress=policy,
    )
    return Access(store, access, settings, check, sender)
