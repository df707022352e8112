"""``python -m services.notifier``: run the notifier until SIGTERM/SIGINT.

Configuration comes from ``TANDEM_*`` environment variables (``shared.settings``). On a
signal FastStream stops consuming, the drain task finishes its current jobs, and unfinished
work is simply not committed/acked: it is redone by the next notifier.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from shared.kafka import ensure_topics
from shared.settings import Settings, get_settings

from .worker import build


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)


async def run(settings: Settings) -> None:
    await ensure_topics(settings)
    notifier = build(settings)
    await notifier.app.run()


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
