"""A partner's details as the web forms give them, checked for
:class:`~services.scheduler.access.Access` (the partners' door, which the pages reach as the
JSON partner routes do: ``services.scheduler.api.deps.Door``)."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from services.scheduler.access import Details
from services.scheduler.api.schemas import PrintableText, Zone

_NAME = TypeAdapter(PrintableText)
_ZONE = TypeAdapter(Zone)


class DetailsError(ValueError):
    """A name or zone the form cannot take; the message says how to fix it."""


def details(name: str, timezone: str) -> Details:
    """A partner's details from the form, checked like the API's (printable name of at most
    40 characters, an IANA zone). Raises :class:`DetailsError`."""
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
    return Details(name=checked, timezone=zone)
