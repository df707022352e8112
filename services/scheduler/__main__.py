"""``python -m services.scheduler``: run one scheduler replica until SIGTERM/SIGINT."""

from services.scheduler.service import SERVICE, build
from shared.service import main

if __name__ == "__main__":
    main(SERVICE, build)
