"""A partner's details as the web forms give them, checked for
:class:`~services.scheduler.access.Access` (the partners' door, which the pages reach as the
JSON partner routes do: ``services.scheduler.api.deps.Door``)."""

from __future__ import annotations

import functools
from zoneinfo import available_timezones

from pydantic import TypeAdapter, ValidationError

from services.scheduler.access import Details
from services.scheduler.api.schemas import PrintableText, QuietHoursIn, Zone
from shared.events import QuietHours


@functools.cache
def zone_names() -> list[str]:
    """The IANA zones the forms offer (the ones naming a place)."""
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))


_NAME = TypeAdapter(PrintableText)
_ZONE = TypeAdapter(Zone)


class DetailsError(ValueError):
    """A name or zone the form cannot take; the message says how to fix it."""


def details(name: str, timezone: str, quiet_start: str = "", quiet_end: str = "") -> Details:
    """A partner's details from the form, checked like the API's (printable name of at most
    40 characters, an IANA zone, quiet hours as two HH:MM times or none). Raises
    :class:`DetailsError`."""
    try:
        checked = _NAME.validate_python(name)
    except ValidationError:
        raise DetailsError("Write your name (letters and spaces, up to 40 characters).") from None
    if len(checked) > 40:
        raise DetailsError("Your name can be at most 40 characters long.")
    try:
        zone = _ZONE.validate_python(timezone)
    except ValidationError:
        raise DetailsError(
            f"{timezone!r} is not a time zone we know: pick one from the list, e.g. Europe/Berlin."
        ) from None
    return Details(name=checked, timezone=zone, quiet_hours=quiet_hours(quiet_start, quiet_end))


def quiet_hours(start: str, end: str) -> QuietHours | None:
    """Quiet hours from the form's two times (both empty: none). Raises DetailsError."""
    if not start and not end:
        return None
    try:
        given = QuietHoursIn(start=start, end=end)  # type: ignore[arg-type]
    except ValidationError:
        raise DetailsError(
            "Give quiet hours as two times on a 24-hour clock, e.g. 22:30 and 07:00 "
            "(or leave both empty)."
        ) from None
    return QuietHours(start=given.start, end=given.end)
