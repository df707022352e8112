"""``python -m services.content``: run the content service until SIGTERM/SIGINT.

A broken deck stops it before anything connects (exit 2).
"""

from services.content.decks import DeckError
from services.content.worker import SERVICE, build
from shared.service import main

if __name__ == "__main__":
    main(SERVICE, build, fatal=(DeckError,))
