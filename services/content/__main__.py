"""``python -m services.content``: run the content service with settings from ``TANDEM_*``.

Start-up fails fast: decks are validated before anything connects, and topics are created
where missing. FastStream's ``app.run`` stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from services.content.decks import DeckError, load_catalog
from services.content.worker import build
from shared.kafka import ensure_topics
from shared.logs import setup_logging
from shared.settings import get_settings

log = logging.getLogger("tandem.content")


async def main() -> int:
    settings = get_settings()
    setup_logging(settings, service="content")
    try:
        catalog = load_catalog(settings.decks_dir)
    except DeckError as exc:
        log.error("%s", exc)
        return 2
    await ensure_topics(settings)
    _, app = build(settings, catalog=catalog)
    await app.run()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
