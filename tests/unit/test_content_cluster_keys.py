"""Content's Redis keys are Redis Cluster-safe: the keys one script touches share a slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from services.content.store import ContentStore
from shared.redis import Keys


class _NoRedis:
    """The store only builds keys here; nothing is sent."""


@pytest.mark.parametrize("couple", ["cpl_1", "cpl_7Hx9", "a}b", "{x}", "c:with:colons"])
def test_the_commit_scripts_keys_share_one_slot(couple: str) -> None:
    store = ContentStore(_NoRedis(), Keys("tandem"))  # type: ignore[arg-type]
    choice = store.choice_key(couple, "r_1@20260101T063000Z")
    history = store.history_key(couple, "weekly-questions")
    assert key_slot(choice.encode()) == key_slot(history.encode())


def test_couples_spread_over_the_slots() -> None:
    store = ContentStore(_NoRedis(), Keys("tandem"))  # type: ignore[arg-type]
    slots = {key_slot(store.history_key(f"cpl_{i}", "d").encode()) for i in range(200)}
    assert len(slots) > 150  # one couple per slot, not one slot for all
