"""``python -m services.notifier``: run the notifier until SIGTERM/SIGINT.

Configuration comes from ``TANDEM_*`` environment variables (``shared.settings``). On a
signal FastStream stops consuming, the drain task finishes its current jobs, and unfinished
work is simply not committed/acked: it is redone by the next notifier.
"""

from __future__ import annotations

import asyncio

from services.notifier.worker import build
from shared.kafka import ensure_topics
from shared.logs import setup_logging
from shared.settings import Settings, get_settings


async def run(settings: Settings) -> None:
    await ensure_topics(settings)
    notifier = build(settings)
    await notifier.app.run()


def main() -> None:
    settings = get_settings()
    setup_logging(settings, service="notifier")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
