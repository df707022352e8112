"""Logging for every Tandem process: one JSON object per line (``json``), or readable
lines (``console``, what ``tandem dev`` uses). Extra fields given with ``extra=`` --
``occurrence_id``, ``couple_id`` and the like -- are carried into the JSON.

Every record passes :class:`RedactingFilter` on the handler :func:`setup_logging` installs
(and on any handler another library installed before it), whatever logger it came from --
Apprise's, aiokafka's, uvicorn's, FastStream's, ours: phone numbers, e-mail addresses and
the secrets of channel URLs this process has handled are masked in the message, its
arguments, its extra fields and its exception text (:func:`shared.redaction.mask`)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from shared.redaction import mask
from shared.settings import Settings

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Masks what is private in a record before any handler formats it (see the module
    docstring). The record is changed in place: the message is rendered once, masked and
    kept without its arguments; the exception is rendered to masked ``exc_text``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_tandem_masked", False):
            return True  # another handler's filter did it already
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: show what we have, masked
            message = f"{record.msg} {record.args}"
        record.msg, record.args = mask(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = _masked(value)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None  # the text is what handlers print from now on
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        record._tandem_masked = True
        return True


def _masked(value: object) -> object:
    """An extra field's value, masked, keeping its JSON shape."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    return mask(str(value))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(
            {
                k: v
                for k, v in record.__dict__.items()
                if k not in _STANDARD and k != "_tandem_masked"
            }
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


def setup_logging(settings: Settings, *, service: str) -> None:
    redacting = RedactingFilter()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redacting)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Handlers libraries set up on their own loggers (propagate=False) print too.
    for logger in list(logging.Logger.manager.loggerDict.values()):
        for other in getattr(logger, "handlers", []):
            if not any(isinstance(f, RedactingFilter) for f in other.filters):
                other.addFilter(redacting)
    root.setLevel(settings.log_level.upper())
    # aiokafka is chatty about reconnects at INFO; its warnings still show.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
