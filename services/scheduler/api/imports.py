"""Bulk import for operators migrating from another system: ``POST /v1/couples/import``.

Each item is a ``CoupleIn`` with, optionally, its ``RitualIn`` rituals, and is checked
exactly as ``POST /v1/couples`` and ``POST /v1/couples/{id}/rituals`` check them (the same
schemas and the same building code: caps, Apprise, the egress policy, the deck, the
schedule). Items are all-or-nothing: an item with any error is refused alone, with its
errors' ``loc`` starting with its index; the others are written in batched pipelines (one
MULTI/EXEC per :data:`WRITE_CHUNK` couples). The answer is 200 with one result per item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import apprise
from fastapi import APIRouter, Depends, HTTPException
from pydantic import ValidationError

from services.content.decks import Catalog
from services.scheduler import planning
from services.scheduler.api.couples import build_couple
from services.scheduler.api.deps import AppriseAsset, AppSettings, CurrentCaller, Decks, Now, Store
from services.scheduler.api.errors import Invalid, friendly
from services.scheduler.api.fairness import Fair, Fairness, fair
from services.scheduler.api.rituals import check_deck, check_schedule, new_ritual
from services.scheduler.api.schemas import ImportedCouple, ImportIn
from services.scheduler.rituals import Couple, Ritual
from services.scheduler.store import NewCouple
from shared.egress import EgressPolicy
from shared.egress import policy as egress_policy

router = APIRouter(tags=["couples"], dependencies=[Depends(fair)])

PATH = "/v1/couples/import"
# The body limit of this route alone (every other keeps errors.MAX_BODY_BYTES): room for
# IMPORT_MAX_COUPLES couples of a few rituals each.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Couples per Redis round trip (one MULTI/EXEC), written while the next ones are built.
WRITE_CHUNK = 250
# Items built at once (each may wait on DNS for its channels' hosts); the event loop gets
# its turn between such groups.
CONCURRENCY = 32

Loc = list[str | int]
Error = dict[str, Any]


class Refused(Exception):
    def __init__(self, errors: list[Error]) -> None:
        self.errors = errors


@router.post(PATH)
async def import_couples(
    body: ImportIn,
    caller: CurrentCaller,
    asset: AppriseAsset,
    store: Store,
    now: Now,
    decks: Decks,
    fairness: Fairness,
    settings: AppSettings,
) -> dict[str, Any]:
    """Create up to 1,000 couples (:data:`IMPORT_MAX_COUPLES`) with their rituals in one
    request (admin only). Answers one result per item, in order: ``{index, id, token}`` for
    a couple created, ``{index, errors}`` for one refused."""
    if caller.who is not None:
        raise HTTPException(403, "only the admin token imports couples")
    policy = egress_policy(settings.channel_allow)
    schedules = Schedules()
    built: list[NewCouple | Refused] = []
    writes: list[asyncio.Task[None]] = []
    for start in range(0, len(body.couples), WRITE_CHUNK):
        chunk = await _build_chunk(
            body.couples[start : start + WRITE_CHUNK],
            start,
            lambda i, item: _build(i, item, fairness, asset, policy, decks, now, schedules),
        )
        built += chunk
        # Written while the next chunk is built: Redis works on its own core meanwhile.
        fine = [b for b in chunk if isinstance(b, NewCouple)]
        writes.append(asyncio.create_task(store.create_couples(fine)))
    await asyncio.gather(*writes)
    results: list[dict[str, Any]] = []
    for index, b in enumerate(built):
        if isinstance(b, NewCouple):
            results.append({"index": index, "id": b.couple.id, "token": b.token})
        else:
            results.append({"index": index, "errors": b.errors})
    created = sum(isinstance(b, NewCouple) for b in built)
    return {"created": created, "refused": len(built) - created, "results": results}


async def _build_chunk(
    items: list[Any], offset: int, build: Callable[[int, Any], Awaitable[NewCouple]]
) -> list[NewCouple | Refused]:
    """``build`` of each item (index ``offset + i``), or why it was refused, in order.

    Building is CPU work (Apprise parsing channel URLs, schedules evaluated, models made)
    that only waits when a channel's host must be resolved: run a whole request's items in
    one go and the event loop -- every other request of this replica, a test nudge among
    them -- waits for it. So :data:`CONCURRENCY` items at a time, giving the loop back
    between groups (a group costs a few milliseconds)."""
    out: list[NewCouple | Refused] = []
    for start in range(0, len(items), CONCURRENCY):
        group = items[start : start + CONCURRENCY]
        out += await asyncio.gather(
            *(_refused_or(build(offset + start + j, item)) for j, item in enumerate(group))
        )
        await asyncio.sleep(0)
    return out


async def _refused_or(building: Awaitable[NewCouple]) -> NewCouple | Refused:
    try:
        return await building
    except Refused as refused:
        return refused


async def _build(
    index: int,
    item: Any,
    fairness: Fair,
    asset: apprise.AppriseAsset,
    policy: EgressPolicy,
    decks: Catalog,
    now: datetime,
    schedules: Schedules,
) -> NewCouple:
    """Item ``index`` built as the single-couple routes build it, or :class:`Refused`."""
    try:
        given = ImportedCouple.model_validate(item)
    except ValidationError as exc:
        raise Refused(
            [
                {"loc": [index, *e["loc"]], "msg": friendly(e, ImportedCouple), "type": e["type"]}
                for e in exc.errors()
            ]
        ) from None
    cap = fairness.settings.max_rituals_per_couple
    if len(given.rituals) > cap:
        raise Refused([_error([index, "rituals"], f"a couple may have at most {cap} rituals")])
    try:
        couple, token, urls = await build_couple(given, fairness, asset, policy, now)
    except Invalid as exc:
        raise Refused([_error([index, *exc.loc[1:]], exc.reason)]) from None
    built = []
    for j, body in enumerate(given.rituals):
        try:
            check_deck(decks, body.kind, body.deck)
            ritual = new_ritual(couple, body, now)
            schedule = await schedules.plan(couple, ritual, now)
        except Invalid as exc:  # its loc starts with "body": the ritual's own fields follow
            raise Refused([_error([index, "rituals", j, *exc.loc[1:]], exc.reason)]) from None
        built.append((ritual, schedule))
    return NewCouple(couple, token, urls, built)


class Schedules:
    """:func:`check_schedule` and the first firings (:func:`planning.next_instants`) once
    per distinct schedule of one import: both depend only on :func:`planning.schedule_key`
    and ``now`` (one per request), and a migration repeats a few schedules many times (every
    default evening check-in of one zone is the same rule from the same local midnight)."""

    def __init__(self) -> None:
        self.known: dict[object, Invalid | list[float | None]] = {}

    async def plan(self, couple: Couple, ritual: Ritual, now: datetime) -> planning.Plan:
        """Raise :class:`Invalid` as :func:`check_schedule` would, else ``ritual``'s plan."""
        key = planning.schedule_key(couple, ritual)
        if key not in self.known:
            try:
                await check_schedule(couple, ritual, now)
                self.known[key] = planning.next_instants(couple, ritual, now)
            except Invalid as exc:
                self.known[key] = exc
        found = self.known[key]
        if isinstance(found, Invalid):
            raise Invalid(found.loc, found.reason)
        tracks = planning.track_ids(couple, ritual)
        return dict(zip(tracks, found, strict=True))


def _error(loc: Loc, msg: str) -> Error:
    return {"loc": loc, "msg": msg, "type": "value_error"}
