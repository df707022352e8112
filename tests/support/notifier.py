"""Notifier tests' set-up on top of :mod:`tandem.notifier_harness` (which builds couples and
nudges and runs the notifier): settings that fail and retry fast, a two-partner couple whose
push channels point at the local inbox, and waiting on that inbox without blocking the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from services.notifier.limits import PER_HOST
from shared.ids import new_id
from shared.settings import Settings
from tandem.inbox import Inbox, Received
from tandem.notifier_harness import Couple, Partner
from tests.support.infra import Infra

PLUGINS = Path(__file__).resolve().parents[2] / "services" / "notifier" / "plugins_example"

# What a notifier killed mid-burst sends twice, at most: every send its provider accepted
# whose ``sent`` mark was not in Redis yet. Up to PER_HOST are in flight to the inbox (one
# host), and up to as many more may have finished a moment before: a send gives its slot
# back when its thread ends, and its mark follows one (coalesced) Redis round trip later.
# (CI once saw 9 with a bound of PER_HOST.)
CRASH_DUPLICATES = 2 * PER_HOST


def fast(infra: Infra, **overrides: object) -> Settings:
    """``infra``'s settings with second-scale timeouts and backoff, three attempts and the
    example plugins; ``overrides`` win."""
    values: dict[str, object] = {
        "delivery_connect_timeout": 1.0,
        "delivery_read_timeout": 2.0,
        "delivery_backoff_seconds": 0.2,
        "delivery_backoff_max_seconds": 1.0,
        "delivery_max_attempts": 3,
        "plugins_dir": PLUGINS,
    }
    values.update(overrides)
    return infra.settings(**values)


def two_partners(inbox: Inbox, tag: str | None = None) -> Couple:
    """Sam (a JSON push) and Alex (an ntfy push) at ``inbox``, with ids unique to ``tag``."""
    tag = tag or new_id("c")
    return Couple(
        id=f"cpl_{tag}",
        partners=[
            Partner(f"sam_{tag}", [("c_sam_push", "push", inbox.json_url(f"sam-{tag}"))]),
            Partner(f"alex_{tag}", [("c_alex_push", "push", inbox.ntfy_url(f"alex-{tag}"))]),
        ],
    )


async def received(
    inbox: Inbox, predicate: Callable[[list[Received]], bool], within: float = 45
) -> list[Received]:
    """``inbox.wait_for`` in a thread, so the notifier in this loop keeps running."""
    return await asyncio.to_thread(inbox.wait_for, predicate, within)
