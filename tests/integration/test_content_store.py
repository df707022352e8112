"""The Redis adapter against a real Redis: one prompt per selection key, under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.content.decks import load_catalog
from services.content.store import ContentStore
from shared.redis import Keys, StrRedis, make_redis
from tests.support.infra import Infra

CATALOG = load_catalog()


@pytest.fixture
async def clients(infra: Infra) -> AsyncIterator[list[StrRedis]]:
    settings = infra.settings()
    made = [make_redis(settings) for _ in range(4)]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


def stores(clients: list[StrRedis], prefix: str = "t") -> list[ContentStore]:
    return [ContentStore(c, Keys(prefix)) for c in clients]


async def test_a_key_is_chosen_once_and_remembered(clients: list[StrRedis]) -> None:
    store = stores(clients)[0]
    deck = CATALOG.get("weekly-questions")
    assert deck is not None
    first = await store.pick(deck, couple_id="c1", key="occ-1")
    again = await store.pick(deck, couple_id="c1", key="occ-1")
    assert first.fresh and not again.fresh and first.prompt == again.prompt
    assert (await store.history("c1", deck.id)).used == {first.prompt.id}
    ttl = await clients[0].ttl(store.choice_key("c1", "occ-1"))
    assert 29 * 86400 < ttl <= 30 * 86400


async def test_replicas_racing_agree_and_never_repeat(clients: list[StrRedis]) -> None:
    """Four "replicas" each handle both partners' occurrences of 12 couple days at once."""
    deck = CATALOG.get("six-second-kiss")
    assert deck is not None and len(deck.prompts) == 10
    replicas = stores(clients)
    days = [f"rit@2026-11-{d:02d}T07:30" for d in range(1, 13)]
    calls = [
        replica.pick(deck, couple_id="c2", key=day)
        for day in days
        for replica in replicas
        for _partner in range(2)
    ]
    results = await asyncio.gather(*calls)
    per_day: dict[str, set[str]] = {}
    fresh = 0
    for i, picked in enumerate(results):
        per_day.setdefault(days[i // 8], set()).add(picked.prompt.id)
        fresh += picked.fresh
    assert fresh == len(days)  # one real choice per couple day
    assert all(len(ids) == 1 for ids in per_day.values())
    chosen = [next(iter(ids)) for ids in per_day.values()]
    # the deck has 10 prompts: the first 10 days never repeat, days 11-12 start cycle 2
    history = await replicas[0].history("c2", deck.id)
    assert history.cycle == 2 and len(history.used) == 2
    assert len(set(chosen)) >= 10


async def test_couples_and_decks_do_not_share_history(clients: list[StrRedis]) -> None:
    store = stores(clients)[0]
    kiss, hug = CATALOG.get("six-second-kiss"), CATALOG.get("twenty-second-hug")
    assert kiss is not None and hug is not None
    await store.pick(kiss, couple_id="a", key="k")
    await store.pick(hug, couple_id="a", key="k2")
    await store.pick(kiss, couple_id="b", key="k")
    assert len((await store.history("a", kiss.id)).used) == 1
    assert len((await store.history("a", hug.id)).used) == 1
    assert len((await store.history("b", kiss.id)).used) == 1
