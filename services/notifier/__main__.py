"""``python -m services.notifier``: run the notifier until SIGTERM/SIGINT.

On a signal it stops consuming, the drain task finishes its current jobs, and unfinished
work is simply not committed/acked: it is redone by the next notifier.
"""

from services.notifier.delivery import SERVICE
from services.notifier.worker import build
from shared.service import main

if __name__ == "__main__":
    main(SERVICE, lambda settings: build(settings).service)
