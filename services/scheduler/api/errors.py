"""How the API answers what it refuses: 422 with pydantic's error shape, 413 for big bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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


async def limit_body(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Refuse a body announced over :data:`MAX_BODY_BYTES` before reading any of it."""
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


def install(app: FastAPI) -> None:
    """Give ``app`` the error answers and the body-size limit above."""
    app.middleware("http")(limit_body)
    app.add_exception_handler(Invalid, answer_invalid)
    app.add_exception_handler(RequestValidationError, answer_validation_error)
