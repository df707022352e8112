"""The scheduler's HTTP API: couples, partners, rituals, upcoming firings, answers, history.

One router per resource; :func:`create_app` only assembles them. Every ``/v1`` call needs
``Authorization: Bearer <token>``: the admin token sees everything, a couple token only its
own couple and rituals (see :mod:`.deps`).
"""

from __future__ import annotations

from collections.abc import Callable

import apprise
from fastapi import FastAPI

from services.content.decks import Catalog, load_catalog
from services.scheduler import web
from services.scheduler.api import (
    answers,
    couples,
    errors,
    feeds,
    goals,
    imports,
    nudges,
    ops,
    rituals,
    tokens,
)
from services.scheduler.api.deps import Readiness
from services.scheduler.api.fairness import RateLimits
from services.scheduler.history import NudgeHistory
from services.scheduler.keeping import Keeping
from services.scheduler.store import SchedulerStore
from shared.settings import Settings

# In this order, so the OpenAPI document lists the paths as it always has.
ROUTERS = (ops, couples, rituals, nudges, answers, goals, feeds, tokens, imports)


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
    errors.install(app, larger={imports.PATH: imports.MAX_BODY_BYTES})
    for module in ROUTERS:
        app.include_router(module.router)
    web.mount(app)  # the partners' pages under /app (no OpenAPI entries)
    return app
