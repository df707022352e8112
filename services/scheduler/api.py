"""The scheduler's HTTP API: couples, partners, rituals, upcoming firings, history.

Handlers are thin: validate (pydantic and the recurrence domain), call the store, answer.
Every ``/v1`` call needs ``Authorization: Bearer <token>``: the admin token sees everything,
a couple token only its own couple and rituals.
"""

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import html
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import apprise
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.scheduler import answers, calendar_feed, recurrence, rituals
from services.scheduler.firing import outgoing_due
from services.scheduler.goals import Goal, newest_first
from services.scheduler.history import NudgeHistory
from services.scheduler.keeping import AnswerError, Keeping, quarter_of
from services.scheduler.rituals import Channel, Couple, Partner, Ritual, ScheduleSpec
from services.scheduler.store import SchedulerStore
from shared import links
from shared.events import (
    ChannelKind,
    DeliveryMode,
    QuietHours,
    QuietHoursPolicy,
    RitualKind,
    Rotation,
)
from shared.ids import new_id
from shared.links import Action
from shared.redaction import redact
from shared.settings import Settings

MAX_BODY_BYTES = 64 * 1024
_EPSILON = timedelta(seconds=1)
VALIDATE_SECONDS = 5.0


# -- request bodies ----------------------------------------------------------------------
class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelIn(Body):
    url: str = Field(min_length=3, max_length=2048, description="Any Apprise URL")
    kind: ChannelKind


class QuietHoursIn(Body):
    start: time
    end: time


class PartnerIn(Body):
    name: str = Field(min_length=1, max_length=40)
    timezone: str
    channels: list[ChannelIn] = Field(min_length=1, max_length=5, description="In fallback order")
    quiet_hours: QuietHoursIn | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _known_zone(value)


class CoupleIn(Body):
    name: str = Field(min_length=1, max_length=80)
    partners: list[PartnerIn] = Field(min_length=2, max_length=2, description="Exactly two")


class CouplePatch(Body):
    name: str | None = Field(default=None, min_length=1, max_length=80)
    paused: bool | None = None
    transition_mode: bool | None = None


class ScheduleIn(Body):
    rrule: str | None = Field(default=None, max_length=512)
    timezone: str | None = None
    start: datetime | None = None
    at: AwareDatetime | None = None
    exdates: list[datetime] = Field(default_factory=list, max_length=500)
    grace_seconds: float | None = Field(default=None, ge=0, le=30 * 86400)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _known_zone(value)

    @field_validator("start")
    @classmethod
    def _naive_start(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("start is a local wall-clock time: give it without an offset")
        return value


class RitualIn(Body):
    kind: RitualKind
    title: str | None = Field(default=None, min_length=1, max_length=60)
    schedule: ScheduleIn | None = None
    delivery: DeliveryMode = "together"
    rotation: Rotation | None = None
    deck: str | None = Field(default=None, min_length=1, max_length=64)
    quiet_hours_policy: QuietHoursPolicy = "hold_both"
    celebrate: bool = False
    celebrate_sms: bool = False


class AckIn(Body):
    action: Action
    minutes: int | None = Field(default=None, ge=1, le=240, description="snooze length")
    partner_id: str | None = Field(
        default=None, description="who answers; required unless the occurrence is one partner's"
    )


class GoalIn(Body):
    text: str = Field(min_length=1, max_length=200)
    quarter: str | None = Field(
        default=None, pattern=r"^\d{4}-Q[1-4]$", description="e.g. 2026-Q4; default: this one"
    )


class RitualPatch(Body):
    title: str | None = Field(default=None, min_length=1, max_length=60)
    schedule: ScheduleIn | None = None
    delivery: DeliveryMode | None = None
    rotation: Rotation | None = None
    deck: str | None = Field(default=None, min_length=1, max_length=64)
    quiet_hours_policy: QuietHoursPolicy | None = None
    celebrate: bool | None = None
    celebrate_sms: bool | None = None


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Europe/Berlin')") from None
    return value


class Invalid(Exception):
    """A body that parsed but makes no sense: answered 422 like pydantic's own errors."""

    def __init__(self, loc: list[str | int], reason: str) -> None:
        self.loc = loc
        self.reason = reason


# -- the app -----------------------------------------------------------------------------
def create_app(
    settings: Settings,
    store: SchedulerStore,
    history: NudgeHistory,
    keeping: Keeping,
    on_enqueue: Callable[[], None] = lambda: None,
    readiness: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> FastAPI:
    """The HTTP API over ``store``; ``on_enqueue`` is told when a manual trigger wrote to
    the outbox, so the publisher need not wait for its next tick."""
    if not settings.admin_token:
        raise ValueError("TANDEM_ADMIN_TOKEN must be set for the scheduler API")
    if not settings.secret_key:
        raise ValueError("TANDEM_SECRET_KEY must be set (make one with `tandem keygen`)")
    admin_token = settings.admin_token
    secret_key = settings.secret_key
    asset = apprise.AppriseAsset(
        plugin_paths=[str(settings.plugins_dir)] if settings.plugins_dir else []
    )
    app = FastAPI(
        title="Tandem scheduler",
        version="1",
        description="Couples, partners and rituals; nudges at the right instant.",
    )

    @app.middleware("http")
    async def _limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["body"],
                            "msg": f"body over {MAX_BODY_BYTES} bytes",
                            "type": "too_large",
                        }
                    ]
                },
                status_code=413,
            )
        return await call_next(request)

    @app.exception_handler(Invalid)
    async def _invalid(_: Request, exc: Invalid) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"loc": exc.loc, "msg": exc.reason, "type": "value_error"}]},
            status_code=422,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    # -- auth --------------------------------------------------------------------------
    async def principal(request: Request) -> str | None:
        """None for the admin; the couple id for a couple token."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        if hmac.compare_digest(token.encode(), admin_token.encode()):
            return None
        couple_id = await store.couple_for_token(token)
        if couple_id is None:
            raise HTTPException(401, "unknown token", {"WWW-Authenticate": "Bearer"})
        return couple_id

    Principal = Annotated[str | None, Depends(principal)]

    async def couple_for(couple_id: str, who: str | None) -> Couple:
        # A couple token asking for another couple gets the same 404 as a missing one, so
        # tokens cannot probe which ids exist.
        if who is not None and who != couple_id:
            raise HTTPException(404, "couple not found")
        couple = await store.get_couple(couple_id)
        if couple is None:
            raise HTTPException(404, "couple not found")
        return couple

    async def ritual_for(ritual_id: str, who: str | None) -> tuple[Ritual, Couple]:
        ritual = await store.get_ritual(ritual_id)
        if ritual is None or (who is not None and who != ritual.couple_id):
            raise HTTPException(404, "ritual not found")
        couple = await couple_for(ritual.couple_id, None)
        return ritual, couple

    # -- helpers -----------------------------------------------------------------------
    def channel(url: str, kind: ChannelKind, loc: list[str | int]) -> Channel:
        service = apprise.Apprise.instantiate(url, asset=asset)
        if service is None or isinstance(service, bool):
            raise Invalid(
                loc, "not an Apprise URL Tandem can load (unknown scheme or bad parameters)"
            )
        return Channel(id=new_id("chn"), kind=kind, redacted=redact(service))

    def schedule_spec(kind: str, given: ScheduleIn | None, couple: Couple) -> ScheduleSpec:
        if given is None:
            defaults = rituals.KIND_DEFAULTS[kind]
            zone = couple.partners[0].timezone
            today = (
                datetime.now(UTC)
                .astimezone(ZoneInfo(zone))
                .replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
            )
            return ScheduleSpec(rrule=defaults.rrule, timezone=zone, start=today)
        return ScheduleSpec(**given.model_dump())

    async def check(couple: Couple, ritual: Ritual) -> None:
        # A contrived rule that never fires can keep dateutil searching for seconds: do it
        # off the event loop, and give up on rules that take too long to evaluate.
        validate = functools.partial(
            recurrence.validate, rituals.schedule_of(couple, ritual), now=datetime.now(UTC)
        )
        try:
            await asyncio.wait_for(asyncio.to_thread(validate), VALIDATE_SECONDS)
        except recurrence.ScheduleError as exc:
            raise Invalid(["body", *exc.field.split(".")], exc.reason) from None
        except TimeoutError:
            raise Invalid(
                ["body", "schedule", "rrule"], "rule too costly to evaluate; simplify it"
            ) from None

    def plan(couple: Couple, ritual: Ritual) -> dict[str, float | None]:
        now = datetime.now(UTC)
        out: dict[str, float | None] = {}
        for track in rituals.tracks(couple, ritual):
            slot = rituals.next_slot(couple, ritual, track, now)
            out[track.id] = slot.instant.timestamp() if slot else None
        return out

    def track_ids(couple: Couple, ritual: Ritual) -> list[str]:
        return [t.id for t in rituals.tracks(couple, ritual)]

    # -- routes ------------------------------------------------------------------------
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        report = await readiness() if readiness else {"ready": True}
        return JSONResponse(report, status_code=200 if report.get("ready") else 503)

    @app.post("/v1/couples", status_code=201, tags=["couples"])
    async def create_couple(body: CoupleIn, who: Principal) -> dict[str, Any]:
        if who is not None:
            raise HTTPException(403, "only the admin token creates couples")
        urls: dict[str, str] = {}
        partners = []
        for i, p in enumerate(body.partners):
            channels = []
            for j, c in enumerate(p.channels):
                ch = channel(c.url, c.kind, ["body", "partners", i, "channels", j, "url"])
                urls[ch.id] = c.url
                channels.append(ch)
            quiet = QuietHours(**p.quiet_hours.model_dump()) if p.quiet_hours else None
            partners.append(
                Partner(
                    id=new_id("prt"),
                    name=p.name,
                    timezone=p.timezone,
                    channels=channels,
                    quiet_hours=quiet,
                )
            )
        couple = Couple(
            id=new_id("cpl"), name=body.name, partners=partners, created_at=datetime.now(UTC)
        )
        token = f"ct_{secrets.token_urlsafe(24)}"
        await store.create_couple(couple, token, urls)
        return {**couple.model_dump(mode="json"), "token": token}

    def feed_token(couple_id: str) -> str:
        # Derived, not stored: the feed URL is a capability only the secret key can mint.
        mac = hmac.new(secret_key.encode(), f"feed:{couple_id}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    @app.get("/v1/couples/{couple_id}", tags=["couples"])
    async def get_couple(couple_id: str, who: Principal) -> dict[str, Any]:
        couple = await couple_for(couple_id, who)
        feed = (
            f"{settings.api_url}/v1/couples/{couple.id}/calendar.ics?feed={feed_token(couple.id)}"
        )
        return {**couple.model_dump(mode="json"), "calendar_feed": feed}

    @app.patch("/v1/couples/{couple_id}", tags=["couples"])
    async def patch_couple(couple_id: str, body: CouplePatch, who: Principal) -> dict[str, Any]:
        couple = await couple_for(couple_id, who)
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        updated = couple.model_copy(update=changes)
        await store.save_couple(updated)
        if couple.paused != updated.paused:
            rs = await store.list_rituals(couple.id)
            ids = [t for r in rs for t in track_ids(updated, r)]
            if updated.paused:
                await store.reschedule({}, ids)
            else:  # resume continues from now: no burst of what the pause skipped
                schedule: dict[str, float | None] = {}
                for r in rs:
                    schedule.update(plan(updated, r))
                await store.reschedule(schedule)
        return updated.model_dump(mode="json")

    @app.delete("/v1/couples/{couple_id}", status_code=204, tags=["couples"])
    async def delete_couple(couple_id: str, who: Principal) -> Response:
        couple = await couple_for(couple_id, who)
        rs = await store.list_rituals(couple.id)
        await store.delete_couple(couple, rs, [t for r in rs for t in track_ids(couple, r)])
        return Response(status_code=204)

    @app.post("/v1/couples/{couple_id}/rituals", status_code=201, tags=["rituals"])
    async def create_ritual(couple_id: str, body: RitualIn, who: Principal) -> dict[str, Any]:
        couple = await couple_for(couple_id, who)
        defaults = rituals.KIND_DEFAULTS[body.kind]
        ritual = Ritual(
            id=new_id("rit"),
            couple_id=couple.id,
            kind=body.kind,
            title=body.title or defaults.title,
            schedule=schedule_spec(body.kind, body.schedule, couple),
            delivery=body.delivery,
            rotation=body.rotation if "rotation" in body.model_fields_set else defaults.rotation,
            deck=body.deck,
            quiet_hours_policy=body.quiet_hours_policy,
            celebrate=body.celebrate,
            celebrate_sms=body.celebrate_sms,
            created_at=datetime.now(UTC),
        )
        await check(couple, ritual)
        await store.save_ritual(ritual, plan(couple, ritual))
        return await ritual_view(couple, ritual)

    @app.get("/v1/couples/{couple_id}/rituals", tags=["rituals"])
    async def list_rituals(couple_id: str, who: Principal) -> dict[str, Any]:
        couple = await couple_for(couple_id, who)
        return {
            "rituals": [await ritual_view(couple, r) for r in await store.list_rituals(couple.id)]
        }

    @app.get("/v1/rituals/{ritual_id}", tags=["rituals"])
    async def get_ritual(ritual_id: str, who: Principal) -> dict[str, Any]:
        ritual, couple = await ritual_for(ritual_id, who)
        return await ritual_view(couple, ritual)

    @app.patch("/v1/rituals/{ritual_id}", tags=["rituals"])
    async def patch_ritual(ritual_id: str, body: RitualPatch, who: Principal) -> dict[str, Any]:
        ritual, couple = await ritual_for(ritual_id, who)
        changes: dict[str, Any] = {
            k: v for k, v in body.model_dump(exclude_unset=True).items() if k != "schedule"
        }
        if body.schedule is not None:
            changes["schedule"] = ScheduleSpec(**body.schedule.model_dump())
        updated = Ritual.model_validate({**ritual.model_dump(), **changes})
        await check(couple, updated)
        old = set(track_ids(couple, ritual)) - set(track_ids(couple, updated))
        await store.save_ritual(
            updated, {} if couple.paused else plan(couple, updated), sorted(old)
        )
        return await ritual_view(couple, updated)

    @app.delete("/v1/rituals/{ritual_id}", status_code=204, tags=["rituals"])
    async def delete_ritual(ritual_id: str, who: Principal) -> Response:
        ritual, couple = await ritual_for(ritual_id, who)
        await store.delete_ritual(ritual, track_ids(couple, ritual))
        return Response(status_code=204)

    @app.get("/v1/rituals/{ritual_id}/upcoming", tags=["rituals"])
    async def upcoming(
        ritual_id: str, who: Principal, count: Annotated[int, Query(ge=1, le=100)] = 5
    ) -> dict[str, Any]:
        ritual, couple = await ritual_for(ritual_id, who)
        return {"occurrences": await upcoming_of(couple, ritual, count)}

    @app.post("/v1/rituals/{ritual_id}/trigger", status_code=202, tags=["rituals"])
    async def trigger(ritual_id: str, who: Principal) -> dict[str, Any]:
        ritual, couple = await ritual_for(ritual_id, who)
        if couple.paused:
            raise HTTPException(409, "the couple is paused")
        now = datetime.now(UTC)
        events = []
        for track in rituals.tracks(couple, ritual):
            slot = rituals.manual_slot(couple, ritual, track, now)
            events.append(
                outgoing_due(rituals.ritual_due(couple, ritual, track, slot, trigger="manual"))
            )
        await store.enqueue(now.timestamp(), events)
        on_enqueue()
        ids = [e.id for e in events]
        return {"occurrence_id": ids[0], "occurrence_ids": ids}

    @app.get("/v1/couples/{couple_id}/nudges", tags=["history"])
    async def nudges(
        couple_id: str, who: Principal, limit: Annotated[int, Query(ge=1, le=200)] = 20
    ) -> dict[str, Any]:
        couple = await couple_for(couple_id, who)
        return {"nudges": await history.recent(couple.id, limit)}

    # -- partners answering back ---------------------------------------------------------
    async def take_answer(
        couple: Couple, occurrence_id: str, partner_id: str | None, action: str, minutes: int | None
    ) -> dict[str, Any]:
        try:
            ref = answers.parse_occurrence(occurrence_id)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None
        ritual = await store.get_ritual(ref.ritual_id)
        if ritual is None or ritual.couple_id != couple.id:
            raise HTTPException(404, "occurrence not found")
        partner_id = partner_id or ref.partner_id
        if partner_id is None:
            raise Invalid(["body", "partner_id"], "say which partner answers")
        try:
            done = await keeping.answer(
                couple, ritual, ref, partner_id, action, minutes, now=datetime.now(UTC)
            )
        except AnswerError as exc:
            raise HTTPException(exc.status, exc.reason) from None
        if done.refire or done.celebrated:
            on_enqueue()
        return dataclasses.asdict(done)

    @app.post("/v1/occurrences/{occurrence_id:path}/ack", tags=["answers"])
    async def ack(occurrence_id: str, body: AckIn, who: Principal) -> dict[str, Any]:
        """Answer a nudge: done, snooze (re-fires once for that partner) or skip."""
        try:
            ritual_id = answers.parse_occurrence(occurrence_id).ritual_id
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None
        ritual = await store.get_ritual(ritual_id)
        if ritual is None:
            raise HTTPException(404, "occurrence not found")
        couple = await couple_for(ritual.couple_id, who)
        return await take_answer(couple, occurrence_id, body.partner_id, body.action, body.minutes)

    def granted(token: str) -> links.Grant:
        try:
            return links.verify(secret_key, token)
        except links.LinkError as exc:
            status = 410 if "expired" in str(exc) else 403 if "signature" in str(exc) else 400
            raise HTTPException(status, str(exc)) from None

    @app.post("/a/{token}", tags=["answers"])
    async def link_post(token: str, request: Request) -> Response:
        """A signed action link acted on (its page's button, or a notification's action
        button): no other credential. HTML for a browser, JSON otherwise."""
        browser = "text/html" in request.headers.get("accept", "")
        try:
            grant = granted(token)
            couple = await store.get_couple(grant.couple_id)
            if couple is None:
                raise HTTPException(404, "couple not found")
            done = await take_answer(
                couple, grant.occurrence_id, grant.partner_id, grant.action, grant.minutes
            )
        except HTTPException as exc:
            if not browser:
                raise
            return HTMLResponse(_page("That link did not work", str(exc.detail)), exc.status_code)
        if not browser:
            return JSONResponse(done)
        said = {
            "done": "Marked done.",
            "snooze": "Snoozed: we'll remind you again soon.",
            "skip": "Skipped this one.",
        }[done["action"]]
        if done["completion"] == "both":
            said += f" You both did it ({done['streak']} in a row)."
        return HTMLResponse(_page("Tandem", said))

    @app.get("/a/{token}", tags=["answers"], response_class=HTMLResponse)
    async def link_get(token: str) -> HTMLResponse:
        """A signed action link opened from a nudge: a page with one button. Opening it
        changes nothing, so a chat app's link preview cannot mark a ritual done."""
        try:
            grant = granted(token)
        except HTTPException as exc:
            return HTMLResponse(_page("That link did not work", str(exc.detail)), exc.status_code)
        label = {
            "done": "Mark it done",
            "snooze": f"Snooze {grant.minutes or 15} minutes",
            "skip": "Skip this one",
        }[grant.action]
        button = (
            f"<form method=post><button style='font:inherit;padding:.6em 1.4em'>"
            f"{html.escape(label)}</button></form>"
        )
        return HTMLResponse(_page("Tandem", "", button))

    @app.post("/v1/couples/{couple_id}/goals", status_code=201, tags=["goals"])
    async def add_goal(couple_id: str, body: GoalIn, who: Principal) -> dict[str, Any]:
        couple = await couple_for(couple_id, who)
        today = datetime.now(ZoneInfo(couple.partners[0].timezone)).date()
        goal = Goal(
            id=new_id("gol"),
            text=body.text,
            quarter=body.quarter or quarter_of(today),
            created_at=datetime.now(UTC),
        )
        await store.add_goal(couple.id, goal)
        return goal.model_dump(mode="json")

    @app.get("/v1/couples/{couple_id}/goals", tags=["goals"])
    async def list_goals(couple_id: str, who: Principal) -> dict[str, Any]:
        couple = await couple_for(couple_id, who)
        goals = newest_first(await store.goals(couple.id))
        return {"goals": [g.model_dump(mode="json") for g in goals]}

    @app.delete("/v1/couples/{couple_id}/goals/{goal_id}", status_code=204, tags=["goals"])
    async def delete_goal(couple_id: str, goal_id: str, who: Principal) -> Response:
        couple = await couple_for(couple_id, who)
        if not await store.delete_goal(couple.id, goal_id):
            raise HTTPException(404, "goal not found")
        return Response(status_code=204)

    @app.get("/v1/couples/{couple_id}/calendar.ics", tags=["couples"])
    async def calendar(couple_id: str, request: Request, feed: str | None = None) -> Response:
        """The couple's rituals for phone calendars: with the couple's token, or with the
        secret ``feed`` parameter of the couple's ``calendar_feed`` URL."""
        if feed is None:
            couple = await couple_for(couple_id, await principal(request))
        elif hmac.compare_digest(feed, feed_token(couple_id)):
            couple = await couple_for(couple_id, None)
        else:
            raise HTTPException(401, "wrong calendar feed token")
        body = calendar_feed.feed(
            couple, await store.list_rituals(couple.id), now=datetime.now(UTC)
        )
        return Response(body, media_type="text/calendar; charset=utf-8")

    # -- views -------------------------------------------------------------------------
    async def upcoming_of(couple: Couple, ritual: Ritual, count: int) -> list[dict[str, Any]]:
        """Exactly what will fire: each track's stored next instant, then the rule's slots
        after it -- the same functions the firing loop calls."""
        if couple.paused:
            return []
        tracks = rituals.tracks(couple, ritual)
        dues = await store.due_of([t.id for t in tracks])
        found: list[dict[str, Any]] = []
        for track, due in zip(tracks, dues, strict=True):
            if due is None:
                continue
            due_at = datetime.fromtimestamp(due, UTC)
            first = rituals.next_slot(
                couple, ritual, track, due_at.replace(microsecond=0) - _EPSILON
            )
            slots = [first] if first else []
            if first:
                slots += recurrence.slots_after(
                    rituals.schedule_of(couple, ritual), track.zone, first.instant, count - 1
                )
            for slot in slots:
                recipients = [p.id for p in couple.partners if track.partner_id in (None, p.id)]
                found.append(
                    {
                        "occurrence_id": rituals.occurrence_of(track, slot.instant),
                        "scheduled_for": {
                            p: slot.instant.isoformat().replace("+00:00", "Z") for p in recipients
                        },
                        "planner": rituals.planner(couple, ritual, slot.ordinal),
                        "wall_time": slot.wall_time.isoformat(),
                    }
                )
        found.sort(key=lambda o: min(o["scheduled_for"].values()))
        return found[:count]

    async def ritual_view(couple: Couple, ritual: Ritual) -> dict[str, Any]:
        view = ritual.model_dump(mode="json")
        nxt = await upcoming_of(couple, ritual, 1)
        view["next"] = nxt[0] if nxt else None
        view["streak"] = await keeping.streak(couple, ritual, datetime.now(UTC))
        return view

    return app


def _page(title: str, text: str, extra_html: str = "") -> str:
    return (
        "<!doctype html><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<body style='font:18px system-ui;margin:3em auto;max-width:28em;text-align:center'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{extra_html}</body>"
    )
