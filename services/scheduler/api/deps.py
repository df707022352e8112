"""What the routes depend on, each read from ``request.app.state`` (which
:func:`services.scheduler.api.create_app` fills), so a test can mount one router on a bare
app and provide its own, or replace any of them with ``app.dependency_overrides``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import apprise
from fastapi import Depends, HTTPException, Request

from services.content.decks import Catalog, load_catalog
from services.scheduler.access import Access
from services.scheduler.access_store import AccessStore
from services.scheduler.history import NudgeHistory
from services.scheduler.keeping import Keeping
from services.scheduler.partners import PartnerGrant
from services.scheduler.rituals import Couple, Ritual
from services.scheduler.store import SchedulerStore
from shared.ids import OccurrenceId, id_pattern
from shared.settings import Settings

Readiness = Callable[[], Awaitable[dict[str, Any]]]

# The ids a path may name, as ``shared.ids`` makes them: anything else is a 404 before any
# Redis call (and never reaches the key layout).
COUPLE_ID = id_pattern("cpl")
RITUAL_ID = id_pattern("rit")
GOAL_ID = id_pattern("gol")
PARTNER_ID = id_pattern("prt")


def settings(request: Request) -> Settings:
    found: Settings = request.app.state.settings
    return found


def secret_key(settings: Annotated[Settings, Depends(settings)]) -> str:
    """The key that signs action links and calendar feed URLs."""
    return settings.require_secret_key()


def secret_keys(settings: Annotated[Settings, Depends(settings)]) -> list[str]:
    """The keys that may have signed a link or feed URL: the current one first, then
    ``TANDEM_OLD_SECRET_KEYS`` (while a key rotation is under way)."""
    return settings.secret_keys()


def store(request: Request) -> SchedulerStore:
    found: SchedulerStore = request.app.state.store
    return found


def access_store(request: Request) -> AccessStore:
    """Partners' tokens, invites, channels and codes (``services.scheduler.access_store``)."""
    found: AccessStore = request.app.state.access_store
    return found


def door(request: Request) -> Access:
    """Partners' own door as operations (start, invite, join, channels, leave)."""
    found: Access = request.app.state.door
    return found


def history(request: Request) -> NudgeHistory:
    found: NudgeHistory = request.app.state.history
    return found


def keeping(request: Request) -> Keeping:
    found: Keeping = request.app.state.keeping
    return found


def apprise_asset(request: Request) -> apprise.AppriseAsset:
    """Where Apprise finds the deployment's plugins (for checking channel URLs)."""
    found: apprise.AppriseAsset = request.app.state.apprise_asset
    return found


def catalog(request: Request) -> Catalog:
    """The decks the content service knows (shipped plus ``TANDEM_DECKS_DIR``), loaded once."""
    found: Catalog | None = getattr(request.app.state, "catalog", None)
    if found is None:
        found = request.app.state.catalog = load_catalog(settings(request).decks_dir)
    return found


def on_enqueue(request: Request) -> Callable[[], None]:
    """Tells the outbox publisher something new is waiting (a trigger, a snooze)."""
    found: Callable[[], None] = request.app.state.on_enqueue
    return found


def readiness(request: Request) -> Readiness | None:
    found: Readiness | None = request.app.state.readiness
    return found


def now() -> datetime:
    """The instant a request is handled at (override it for a fixed clock)."""
    return datetime.now(UTC)


AppSettings = Annotated[Settings, Depends(settings)]
SecretKey = Annotated[str, Depends(secret_key)]
SecretKeys = Annotated[list[str], Depends(secret_keys)]
Store = Annotated[SchedulerStore, Depends(store)]
AccessData = Annotated[AccessStore, Depends(access_store)]
Door = Annotated[Access, Depends(door)]
History = Annotated[NudgeHistory, Depends(history)]
Keeper = Annotated[Keeping, Depends(keeping)]
Decks = Annotated[Catalog, Depends(catalog)]
AppriseAsset = Annotated[apprise.AppriseAsset, Depends(apprise_asset)]
OnEnqueue = Annotated[Callable[[], None], Depends(on_enqueue)]
ReadinessCheck = Annotated[Readiness | None, Depends(readiness)]
Now = Annotated[datetime, Depends(now)]


# -- who calls, and what they may see ------------------------------------------------------
async def principal(
    request: Request, settings: AppSettings, store: Store, access: AccessData
) -> str | None:
    """None for the admin; the couple id for a couple token or a partner token; 401 for
    anything else. A partner token also leaves its :class:`PartnerGrant` on
    ``request.state.partner`` (read by :func:`caller`), so this keeps its shape for the
    routes and tests that use it alone."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    admin = settings.admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return None
    couple_id = await store.couple_for_token(token)
    if couple_id is not None:
        return couple_id
    grant = await access.grant_for_token(token)
    if grant is None:
        raise HTTPException(401, "unknown token", {"WWW-Authenticate": "Bearer"})
    request.state.partner = grant
    return grant.couple_id


Principal = Annotated[str | None, Depends(principal)]


@dataclass(frozen=True)
class Caller:
    """The store as one caller may see it: ``who`` is None for the admin (everything), or
    the id of the one couple it may see; ``partner_id`` is set for a partner token (that
    partner of that couple: the couple's rituals, goals, pause and transition mode, but
    only their own details and channels -- see :meth:`own_partner`)."""

    store: SchedulerStore
    who: str | None
    partner_id: str | None = None

    def own_partner(self, couple: Couple, partner_id: str) -> None:
        """Allow acting on ``partner_id``'s own details and channels: 404 if the couple has
        no such partner, 403 when a partner token names the other partner (the couple and
        admin tokens may act for either)."""
        if couple.partner(partner_id) is None:
            raise HTTPException(404, "partner not found")
        if self.partner_id is not None and self.partner_id != partner_id:
            raise HTTPException(
                403, "a partner manages only their own details and channels; sign in as them"
            )

    async def couple(self, couple_id: str) -> Couple:
        """The couple, or 404 -- the same for an id of no shape, of no couple or of another
        couple, so that a couple token cannot probe which ids exist."""
        if not COUPLE_ID.fullmatch(couple_id) or self.who not in (None, couple_id):
            raise HTTPException(404, "couple not found")
        couple = await self.store.get_couple(couple_id)
        if couple is None:
            raise HTTPException(404, "couple not found")
        return couple

    async def ritual(self, ritual_id: str) -> tuple[Ritual, Couple]:
        """The ritual with its couple, or 404 (the same for another couple's ritual)."""
        if not RITUAL_ID.fullmatch(ritual_id):
            raise HTTPException(404, "ritual not found")
        ritual = await self.store.get_ritual(ritual_id)
        if ritual is None or self.who not in (None, ritual.couple_id):
            raise HTTPException(404, "ritual not found")
        couple = await self.store.get_couple(ritual.couple_id)
        if couple is None:
            raise HTTPException(404, "ritual not found")
        return ritual, couple

    async def occurrence(self, occurrence_id: str) -> tuple[OccurrenceId, Couple]:
        """The occurrence's parts with its couple, or 404 (the same for another couple's)."""
        ref = occurrence_ref(occurrence_id)
        ritual = await self.store.get_ritual(ref.ritual_id)
        if ritual is None or self.who not in (None, ritual.couple_id):
            raise HTTPException(404, "occurrence not found")
        couple = await self.store.get_couple(ritual.couple_id)
        if couple is None:
            raise HTTPException(404, "occurrence not found")
        return ref, couple


def occurrence_ref(occurrence_id: str) -> OccurrenceId:
    """The parts of an occurrence id; 404 for an id of no occurrence's shape."""
    try:
        ref = OccurrenceId.parse(occurrence_id)
    except ValueError:
        raise HTTPException(404, "occurrence not found") from None
    partner_ok = ref.partner_id is None or PARTNER_ID.fullmatch(ref.partner_id)
    if not RITUAL_ID.fullmatch(ref.ritual_id) or not partner_ok:
        raise HTTPException(404, "occurrence not found")
    return ref


def caller(request: Request, store: Store, who: Principal) -> Caller:
    grant: PartnerGrant | None = getattr(request.state, "partner", None)
    return Caller(store, who, grant.partner_id if grant else None)


CurrentCaller = Annotated[Caller, Depends(caller)]
