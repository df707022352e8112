"""How the API answers what it refuses: 422 with pydantic's error shape, 413 for big bodies
(however they are sent)."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.scheduler.recurrence import ScheduleError

MAX_BODY_BYTES = 64 * 1024


class Invalid(Exception):
    """A body that parsed but makes no sense: answered 422 like pydantic's own errors."""

    def __init__(self, loc: list[str | int], reason: str) -> None:
        self.loc = loc
        self.reason = reason

    @classmethod
    def of_schedule(cls, error: ScheduleError) -> Invalid:
        """The body field a refused schedule names (``schedule.rrule`` -> body.schedule.rrule),
        its reason followed by how to fix it."""
        return cls(["body", *error.field.split(".")], schedule_hint(error.reason))


# How to fix each reason recurrence.py refuses a schedule for, by the reason's beginning:
# the reason stays as it is (a prefix), the hint follows it.
_SCHEDULE_HINTS: list[tuple[str, str]] = [
    ("a schedule needs an rrule", ": add `rrule` (e.g. FREQ=DAILY;BYHOUR=21;BYMINUTE=0) or `at`"),
    ("at must carry a UTC offset", ", e.g. 2026-12-01T19:00:00Z or 2026-12-01T20:00:00+01:00"),
    ("at must be in the future", ": give a later instant, or use an `rrule`"),
    ("start only applies", ": leave `start` out for a one-off `at`"),
    ("exdates only apply", ": leave `exdates` out for a one-off `at`"),
    ("the rule yields no occurrence", ": check its COUNT, UNTIL and BY* parts against `start`"),
    ("exdates exclude every", ": remove some `exdates`"),
    ("a recurring rule needs a start", ": add `start`, e.g. 2026-12-01T00:00:00"),
    ("start is a local wall-clock", ": give it without an offset, e.g. 2026-12-01T07:30:00"),
    ("exdates are local wall-clock", ": give them without an offset, e.g. 2026-12-24T21:00:00"),
    ("COUNT and UNTIL cannot be combined", ": keep one of them"),
    ("UNTIL is before start", ": give an UNTIL after `start`, or an earlier `start`"),
    ("UNTIL '", ", e.g. UNTIL=20301231 or UNTIL=20301231T235959Z"),
    ("malformed RRULE", "; write it like FREQ=WEEKLY;BYDAY=FR;BYHOUR=19;BYMINUTE=0"),
    ("a rule may fire at most once a minute", ": use FREQ=MINUTELY or slower, without BYSECOND"),
    ("COUNT must be at least 1", ": give COUNT=1 or more, or leave it out"),
    ("FREQ is required", ": begin the rule with FREQ=DAILY (or WEEKLY, MONTHLY, …)"),
    ("BYEASTER", ": leave it out"),
    ("unknown time zone", ": use an IANA name such as Europe/Berlin"),
    ("rule too costly", ""),  # already says what to do
]


def schedule_hint(reason: str) -> str:
    """``reason`` followed by how to fix it (unchanged when it already says, or is unknown)."""
    if " has a value out of range" in reason:
        return f"{reason}: see RFC 5545 for its values (e.g. BYHOUR 0-23, BYMINUTE 0-59)"
    for start, hint in _SCHEDULE_HINTS:
        if reason.startswith(start):
            return reason + hint
    return reason


def _unwrap(annotation: Any) -> Any:
    """The model a field holds, through Optional, Annotated and list (else None)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType, list):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return None
            annotation = inner[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        else:
            return None


def _model_at(root: type[BaseModel] | None, loc: list[str | int]) -> type[BaseModel] | None:
    """The model whose field ``loc`` (after ``body``) names, when it can be told."""
    model = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _unwrap(field.annotation)
    return model


def _field(loc: list[str | int]) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int)) or "body"


def friendly(error: Mapping[str, Any], root: type[BaseModel] | None = None) -> str:
    """Pydantic's ``msg`` for ``error`` reworded to name the field and say how to fix it
    (``root``: the body's model, to list the fields an unknown one could have been)."""
    kind, msg, ctx = error["type"], error["msg"], error.get("ctx") or {}
    loc = list(error["loc"])
    if loc[:1] in (["body"], ["query"], ["path"], ["header"]):
        loc = loc[1:]
    name = str(loc[-1]) if loc else "body"
    if kind == "missing":
        return f"Field required: add `{name}`"
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        known = ", ".join(model.model_fields) if model else ""
        return f"unknown field `{name}`; " + (
            f"the fields are: {known}" if known else "leave it out"
        )
    if kind in ("literal_error", "enum"):
        return f"one of: {ctx.get('expected', msg)}"
    if kind in ("too_long", "too_short") and {"max_length", "min_length"} & set(ctx):
        unit = "item(s)" if ctx.get("field_type") == "List" else "character(s)"
        if kind == "too_long":
            return f"too long: give at most {ctx['max_length']} {unit}"
        return f"too short: give at least {ctx['min_length']} {unit}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    hint = _TYPE_HINTS.get(kind)
    if hint is None:
        return msg
    try:
        return hint.format(**ctx, field=_field(loc))
    except (KeyError, IndexError, ValueError):
        return msg


# The rest of pydantic's error types, reworded (``{field}`` and the error's ctx fill them).
_TYPE_HINTS: dict[str, str] = {
    "string_type": "`{field}` must be text in quotes",
    "string_too_short": "too short: give at least {min_length} character(s)",
    "string_too_long": "too long: give at most {max_length} character(s)",
    "string_pattern_mismatch": "does not have the expected form: match {pattern}",
    "int_type": "`{field}` must be a whole number, e.g. 15",
    "int_parsing": "`{field}` must be a whole number, e.g. 15",
    "int_from_float": "`{field}` must be a whole number, e.g. 15",
    "float_type": "`{field}` must be a number, e.g. 3600",
    "float_parsing": "`{field}` must be a number, e.g. 3600",
    "finite_number": "`{field}` must be a finite number (no NaN or Infinity)",
    "bool_type": "`{field}` must be true or false",
    "bool_parsing": "`{field}` must be true or false",
    "greater_than_equal": "`{field}` must be at least {ge}",
    "greater_than": "`{field}` must be more than {gt}",
    "less_than_equal": "`{field}` must be at most {le}",
    "less_than": "`{field}` must be less than {lt}",
    "datetime_type": "`{field}` must be a date and time such as 2026-12-01T07:30:00",
    "datetime_parsing": "`{field}` must be a date and time such as 2026-12-01T07:30:00 ({error})",
    "datetime_from_date_parsing": "`{field}` must be a date and time such as 2026-12-01T07:30:00",
    "timezone_aware": "`{field}` needs a UTC offset, e.g. 2026-12-01T19:00:00Z",
    "list_type": "`{field}` must be a list: [ … ]",
    "dict_type": "`{field}` must be an object: {{ … }}",
    "model_type": "`{field}` must be an object: {{ … }}",
    "model_attributes_type": "`{field}` must be an object: {{ … }}",
    "json_invalid": "the body is not valid JSON ({error}): check quotes, commas and brackets",
    "json_type": "the body must be JSON",
}


async def answer_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Invalid)
    return JSONResponse(
        {"detail": [{"loc": exc.loc, "msg": exc.reason, "type": "value_error"}]},
        status_code=422,
    )


def _body_model(request: Request) -> type[BaseModel] | None:
    route = request.scope.get("route")
    field = route.body_field if isinstance(route, APIRoute) else None
    return _unwrap(field.field_info.annotation) if field is not None else None


async def answer_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Pydantic's errors, ``loc`` and ``type`` as they are, ``msg`` saying how to fix it."""
    assert isinstance(exc, RequestValidationError)
    root = _body_model(request)
    errors = [
        {"loc": list(e["loc"]), "msg": friendly(e, root), "type": e["type"]} for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def _too_large(limit: int) -> JSONResponse:
    detail = {"loc": ["body"], "msg": f"body over {limit} bytes", "type": "too_large"}
    return JSONResponse({"detail": [detail]}, status_code=413)


class BodyLimit:
    """Pure ASGI middleware: refuse any request body over ``limit`` bytes with 413.

    A body announced too large by ``Content-Length`` is refused before any of it is read;
    any other (a chunked one, or one longer than announced) is counted as it streams and
    refused as soon as it passes the limit -- the app sees a body only once it is whole and
    within the limit. Starlette has no such limit of its own (only for multipart parts).
    """

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, larger: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.larger = dict(larger or {})  # exact path -> its own limit (e.g. bulk import)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.limit)
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(limit)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def answer_stored_schedule_error(_: Request, exc: Exception) -> JSONResponse:
    """A ritual stored before today's rules that can no longer be evaluated (e.g. over the
    recurrence budget): the request is fine, the stored schedule is not -- 409, naming the
    field to change with PATCH."""
    assert isinstance(exc, ScheduleError)
    return JSONResponse(
        {
            "detail": [
                {
                    "loc": ["schedule", *exc.field.split(".")[1:]],
                    "msg": "the stored schedule cannot be evaluated: " + schedule_hint(exc.reason),
                    "type": "stored_schedule",
                }
            ]
        },
        status_code=409,
    )


def install(app: FastAPI, larger: Mapping[str, int] | None = None) -> None:
    """Give ``app`` the error answers and the body-size limit above (``larger``: the paths
    allowed a bigger body, each with its own limit)."""
    app.add_middleware(BodyLimit, larger=larger)
    app.add_exception_handler(Invalid, answer_invalid)
    app.add_exception_handler(ScheduleError, answer_stored_schedule_error)
    app.add_exception_handler(RequestValidationError, answer_validation_error)
