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
from datetime import datetime
from typing import Any

import apprise
from fastapi import APIRouter, Depends, HTTPException
from pydantic import ValidationError

from services.content.decks import Catalog
from services.scheduler import planning, rituals
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
# Couples per Redis round trip.
WRITE_CHUNK = 250
# Items built at once (each may wait on DNS for its channels' hosts).
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
    gate = asyncio.Semaphore(CONCURRENCY)
    checked = Checked()

    async def one(index: int, item: Any) -> NewCouple | Refused:
        async with gate:
            try:
                return await _build(index, item, fairness, asset, policy, decks, now, checked)
            except Refused as refused:
                return refused

    built = await asyncio.gather(*(one(i, item) for i, item in enumerate(body.couples)))
    fine = [b for b in built if isinstance(b, NewCouple)]
    for start in range(0, len(fine), WRITE_CHUNK):
        await store.create_couples(fine[start : start + WRITE_CHUNK])
    results: list[dict[str, Any]] = []
    for index, b in enumerate(built):
        if isinstance(b, NewCouple):
            results.append({"index": index, "id": b.couple.id, "token": b.token})
        else:
            results.append({"index": index, "errors": b.errors})
    created = len(fine)
    return {"created": created, "refused": len(built) - created, "results": results}


async def _build(
    index: int,
    item: Any,
    fairness: Fair,
    asset: apprise.AppriseAsset,
    policy: EgressPolicy,
    decks: Catalog,
    now: datetime,
    checked: Checked,
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
            await checked(couple, ritual, now)
        except Invalid as exc:  # its loc starts with "body": the ritual's own fields follow
            raise Refused([_error([index, "rituals", j, *exc.loc[1:]], exc.reason)]) from None
        built.append((ritual, planning.plan(couple, ritual, now)))
    return NewCouple(couple, token, urls, built)


class Checked:
    """:func:`check_schedule` once per distinct schedule of one import: its verdict depends
    only on the schedule as evaluated (``rituals.schedule_of``), the zones of the ritual's
    tracks and ``now`` (one per request), and a migration repeats a few schedules many
    times."""

    def __init__(self) -> None:
        self.verdicts: dict[object, Invalid | None] = {}

    async def __call__(self, couple: Couple, ritual: Ritual, now: datetime) -> None:
        key = (
            rituals.schedule_of(couple, ritual),
            tuple(t.zone for t in rituals.tracks(couple, ritual)),
        )
        if key not in self.verdicts:
            try:
                await check_schedule(couple, ritual, now)
                self.verdicts[key] = None
            except Invalid as exc:
                self.verdicts[key] = exc
        verdict = self.verdicts[key]
        if verdict is not None:
            raise Invalid(verdict.loc, verdict.reason)


def _error(loc: Loc, msg: str) -> Error:
    return {"loc": loc, "msg": msg, "type": "value_error"}
