"""Partners answering a nudge: the API's ack (with a token), and the signed action links of
a nudge (no other credential). Opening a link changes nothing; only its POST acts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

from services.scheduler.api.deps import (
    CurrentCaller,
    Keeper,
    Now,
    OnEnqueue,
    SecretKeys,
    Store,
    occurrence_ref,
)
from services.scheduler.api.errors import Invalid
from services.scheduler.api.fairness import fair
from services.scheduler.api.schemas import AckIn
from services.scheduler.keeping import AnswerError, Keeping
from services.scheduler.rituals import Couple
from services.scheduler.store import SchedulerStore
from shared import links

router = APIRouter(tags=["answers"], dependencies=[Depends(fair)])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")

BUTTON_LABELS = {
    "done": "Mark it done",
    "snooze": "Snooze {minutes} minutes",
    "skip": "Skip this one",
}
ANSWERED = {
    "done": "Marked done.",
    "snooze": "Snoozed: we'll remind you again soon.",
    "skip": "Skipped this one.",
}


@dataclass(frozen=True)
class Answering:
    """Takes partners' answers within one request, and wakes the outbox publisher when an
    answer queued a nudge (a snooze's re-fire, a "you both did it")."""

    store: SchedulerStore
    keeping: Keeping
    on_enqueue: Callable[[], None]
    now: datetime

    async def take(
        self,
        couple: Couple,
        occurrence_id: str,
        partner_id: str | None,
        action: str,
        minutes: int | None,
    ) -> dict[str, Any]:
        """Record a partner's answer to one of ``couple``'s occurrences (see
        :meth:`Keeping.answer`); 404 for an occurrence that is not the couple's."""
        ref = occurrence_ref(occurrence_id)
        ritual = await self.store.get_ritual(ref.ritual_id)
        if ritual is None or ritual.couple_id != couple.id:
            raise HTTPException(404, "occurrence not found")
        partner_id = partner_id or ref.partner_id
        if partner_id is None:
            raise Invalid(["body", "partner_id"], "say which partner answers")
        try:
            done = await self.keeping.answer(
                couple, ritual, ref, partner_id, action, minutes, now=self.now
            )
        except AnswerError as exc:
            raise HTTPException(exc.status, exc.reason) from None
        if done.refire or done.celebrated:
            self.on_enqueue()
        return dataclasses.asdict(done)


def answering(store: Store, keeping: Keeper, on_enqueue: OnEnqueue, now: Now) -> Answering:
    return Answering(store, keeping, on_enqueue, now)


Answers = Annotated[Answering, Depends(answering)]


@router.post("/v1/occurrences/{occurrence_id:path}/ack")
async def ack(
    occurrence_id: str, body: AckIn, caller: CurrentCaller, answers: Answers
) -> dict[str, Any]:
    """Answer a nudge: done, snooze (re-fires once for that partner) or skip."""
    _, couple = await caller.occurrence(occurrence_id)
    partner_id = body.partner_id or caller.partner_id  # a partner token answers as itself
    if caller.partner_id is not None and partner_id != caller.partner_id:
        raise HTTPException(403, "a partner answers only for themselves; leave out partner_id")
    return await answers.take(couple, occurrence_id, partner_id, body.action, body.minutes)


@router.post("/a/{token}")
async def link_post(
    token: str, request: Request, secret_keys: SecretKeys, store: Store, answers: Answers
) -> Response:
    """A signed action link acted on (its page's button, or a notification's action
    button): no other credential. HTML for a browser, JSON otherwise."""
    browser = "text/html" in request.headers.get("accept", "")
    try:
        grant = _granted(secret_keys, token)
        couple = await store.get_couple(grant.couple_id)
        if couple is None:
            raise HTTPException(404, "couple not found")
        done = await answers.take(
            couple, grant.occurrence_id, grant.partner_id, grant.action, grant.minutes
        )
    except HTTPException as exc:
        if not browser:
            raise
        return _refused(request, exc)
    if not browser:
        return JSONResponse(done)
    said = ANSWERED[done["action"]]
    if done["completion"] == "both":
        said += f" You both did it ({done['streak']} in a row)."
    return templates.TemplateResponse(request, "page.html", {"title": "Tandem", "text": said})


@router.get("/a/{token}", response_class=HTMLResponse)
async def link_get(token: str, request: Request, secret_keys: SecretKeys) -> HTMLResponse:
    """A signed action link opened from a nudge: a page with one button. Opening it
    changes nothing, so a chat app's link preview cannot mark a ritual done."""
    try:
        grant = _granted(secret_keys, token)
    except HTTPException as exc:
        return _refused(request, exc)
    label = BUTTON_LABELS[grant.action].format(minutes=grant.minutes or links.SNOOZE_MINUTES)
    context = {"title": "Tandem", "text": "", "label": label}
    return templates.TemplateResponse(request, "action.html", context)


def _refused(request: Request, exc: HTTPException) -> HTMLResponse:
    context = {"title": "That link did not work", "text": str(exc.detail)}
    return templates.TemplateResponse(request, "page.html", context, status_code=exc.status_code)


def _granted(secret_keys: list[str], token: str) -> links.Grant:
    """What a signed link grants (signed by the current key or an old one still
    configured): 410 once expired, 403 when forged, 400 when garbled."""
    try:
        return links.verify(secret_keys, token)
    except links.LinkError as exc:
        status = 410 if "expired" in str(exc) else 403 if "signature" in str(exc) else 400
        raise HTTPException(status, str(exc)) from None
