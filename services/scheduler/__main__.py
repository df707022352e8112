"""``python -m services.scheduler``: run one scheduler replica."""

import asyncio

from services.scheduler.service import Scheduler
from shared.logs import setup_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    setup_logging(settings, service="scheduler")
    asyncio.run(Scheduler(settings).run())


if __name__ == "__main__":
    main()
