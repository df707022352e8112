"""How the API answers what it refuses: 422 with pydantic's error shape, 413 for big bodies
(however they are sent)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
        """The body field a refused schedule names (``schedule.rrule`` -> body.schedule.rrule)."""
        return cls(["body", *error.field.split(".")], error.reason)


async def answer_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Invalid)
    return JSONResponse(
        {"detail": [{"loc": exc.loc, "msg": exc.reason, "type": "value_error"}]},
        status_code=422,
    )


async def answer_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
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
                    "msg": f"the stored schedule cannot be evaluated: {exc.reason}",
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
