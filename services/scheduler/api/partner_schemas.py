"""The bodies of partners' own routes (start, join, their details, codes), and how a
:class:`~services.scheduler.access.Refused` is answered."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import Field, field_validator

from services.scheduler.access import Details, Refused
from services.scheduler.api.errors import Invalid, answer_invalid
from services.scheduler.api.schemas import Body, PrintableText, QuietHoursIn, Zone, _not_null
from shared.events import QuietHours


class MeIn(Body):
    """A partner as they describe themselves."""

    name: PrintableText = Field(min_length=1, max_length=40)
    timezone: Zone
    quiet_hours: QuietHoursIn | None = None

    def details(self) -> Details:
        quiet = QuietHours(**self.quiet_hours.model_dump()) if self.quiet_hours else None
        return Details(self.name, self.timezone, quiet)


class StartIn(MeIn):
    """The first partner starts a couple: its name and their own details."""

    couple_name: PrintableText = Field(min_length=1, max_length=80)


class PartnerPatch(Body):
    """A partner's own details; only the fields given change (``quiet_hours: null`` clears
    them)."""

    name: PrintableText | None = Field(default=None, min_length=1, max_length=40)
    timezone: Zone | None = None
    quiet_hours: QuietHoursIn | None = None

    _no_nulls = field_validator("name", "timezone", mode="before")(_not_null)

    def changes(self) -> dict[str, Any]:
        given = self.model_dump(exclude_unset=True)
        if given.get("quiet_hours") is not None:
            given["quiet_hours"] = QuietHours(**given["quiet_hours"])
        return given


class CodeIn(Body):
    code: str = Field(min_length=1, max_length=20, description="the code sent to the channel")


async def answer_refused(request: Request, exc: Exception) -> JSONResponse:
    """A :class:`Refused` as the API answers it: 422 naming the field when it has one, else
    its status with ``{"detail": message}`` (and its headers)."""
    assert isinstance(exc, Refused)
    if exc.loc is not None:
        return await answer_invalid(request, Invalid(exc.loc, exc.message))
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)
