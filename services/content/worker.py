"""The content service: ``ritual.due`` in, ``nudge.ready`` out.

For each due ritual it finds the deck (the one named, else the kind's default), picks the
prompt for the occurrence's selection key (remembered in Redis, so a redelivery, the other
partner's local occurrence or a snoozed re-fire gets the same one), writes each partner's
words with their signed action links, and publishes the nudge keyed by couple id.

By ``purpose``:

* ``ritual``: as above; each partner's message carries "done"/"snooze"/"skip" links
  (``shared.links``) when ``TANDEM_SECRET_KEY`` is set, pointing at ``settings.api_url``.
* ``celebration``: "you both did it" with the streak; no deck (its history is untouched),
  no links.
* ``summary`` (kind ``weekly_summary``): the couple's week from ``due.summary``; no deck,
  no links. A weekly summary without a summary is poison.

Promises:

* At-least-once: the nudge is acknowledged by the broker before the record's offset is
  committed (per batch: ``shared.kafka.KeyedSubscriber``); a crash in between re-sends
  the same nudge (the notifier dedupes by occurrence id). Couples are handled
  concurrently, each couple's records in order.
* A record that can never work (malformed JSON, an unknown ``schema_version``, a deck that
  does not exist, no recipients, a summary without its numbers) goes to ``ritual.due.dlq``
  with the reason and the consumer moves on; anything else (Redis down) is redelivered
  (``shared.kafka.ConsumerPolicy``, for every service).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from services.content.choosing import selection_key
from services.content.compose import celebration_nudge, compose, summary_nudge
from services.content.decks import DECKLESS_KINDS, Catalog, default_deck, load_catalog
from services.content.metrics import PROMPTS
from services.content.store import ContentStore
from shared import topics
from shared.events import NudgeReady, RitualDue
from shared.kafka import Poison, Record
from shared.links import action_links
from shared.redis import Keys, StrRedis
from shared.service import URGENT_POLL_MS, Service
from shared.settings import Settings

SERVICE = "content"
GROUP_ID = "content"

log = logging.getLogger("tandem.content")


class Content:
    """The service's logic between decoding a record and publishing the nudge.

    ``link_key`` (``TANDEM_SECRET_KEY``) signs the partners' action links, which point at
    ``public_url``; without a key, nudges carry no links (and still go out).
    """

    def __init__(
        self,
        catalog: Catalog,
        store: ContentStore,
        *,
        link_key: str | None = None,
        public_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.link_key = link_key
        self.public_url = public_url
        self.clock = clock

    async def nudge(self, due: RitualDue) -> NudgeReady:
        if not due.recipients:
            raise Poison(f"occurrence {due.occurrence_id!r} has no recipients")
        if due.purpose == "celebration":
            if due.kind in DECKLESS_KINDS:
                raise Poison(
                    f"occurrence {due.occurrence_id!r}: nothing to celebrate in a {due.kind}"
                )
            return celebration_nudge(due)
        if due.purpose == "summary" or due.kind in DECKLESS_KINDS:
            if due.summary is None:
                raise Poison(
                    f"occurrence {due.occurrence_id!r} (kind {due.kind!r}, purpose "
                    f"{due.purpose!r}) carries no summary"
                )
            return summary_nudge(due)
        deck_id = due.deck or default_deck(due.kind)
        deck = self.catalog.get(deck_id)
        if deck is None:
            raise Poison(f"unknown deck {deck_id!r} for ritual {due.ritual_id!r}")
        picked = await self.store.pick(deck, couple_id=due.couple_id, key=selection_key(due))
        return compose(due, deck, picked.prompt, actions=self.actions(due))

    def actions(self, due: RitualDue) -> dict[str, dict[str, str]]:
        """Each recipient's signed links for ``due``, or none without a key. They expire a
        few days after this moment (not ``scheduled_for``): a late catch-up or a nudge held
        through quiet hours still carries links that work."""
        if not self.link_key:
            return {}
        now = self.clock()
        return {
            r.id: dict(
                action_links(
                    self.link_key, self.public_url, due.couple_id, due.occurrence_id, r.id, now=now
                )
            )
            for r in due.recipients
        }


def build(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    redis: StrRedis | None = None,
) -> Service:
    """The content service, ready to ``serve()`` (or ``async with``).

    Loads the decks now (shipped plus ``settings.decks_dir``) unless ``catalog`` is given, so
    a broken deck fails here (``DeckError``), before anything is consumed. The Redis
    client is made from ``settings`` unless given; one made here is closed when it stops.
    Ops endpoints are served on ``TANDEM_OPS_HOST:TANDEM_OPS_PORT`` when a port is set.
    """
    catalog = catalog if catalog is not None else load_catalog(settings.decks_dir)
    bind = (settings.ops_host, settings.ops_port) if settings.ops_port else None
    service = Service(SERVICE, settings, redis=redis, bind=bind)
    content = Content(
        catalog,
        ContentStore(service.redis, Keys(settings.redis_prefix)),
        link_key=settings.secret_key,
        public_url=settings.api_url,
    )
    ready = {t: service.publisher(t) for t in (topics.NUDGE_READY, topics.NUDGE_READY_URGENT)}

    async def on_ritual_due(due: RitualDue, record: Record) -> None:
        """One ``nudge.ready`` per ``ritual.due`` (an urgent one on the urgent lane), keyed
        by couple, acknowledged before the record is committed; :class:`Poison` for a
        record no retry can fix."""
        nudge = await content.nudge(due)
        lane = topics.lane(topics.NUDGE_READY, urgent=nudge.urgent)
        await record.publish(ready[lane], nudge, key=due.couple_id)
        PROMPTS.labels(nudge.prompt.deck).inc()
        log.debug("nudge ready", extra=_ids(due, nudge))

    # Two consumers, one handler: the urgent lane is fetched apart from the herd's backlog,
    # in a group of its own so neither one's rebalance pauses the other.
    service.keyed_subscriber(topics.RITUAL_DUE, group_id=GROUP_ID)(on_ritual_due)
    service.keyed_subscriber(
        topics.RITUAL_DUE_URGENT, group_id=f"{GROUP_ID}.urgent", idle_poll_ms=URGENT_POLL_MS
    )(on_ritual_due)

    async def check_redis() -> None:  # fail fast: no consuming without Redis
        await service.redis.ping()  # type: ignore[misc]

    service.on_startup(check_redis)
    log.info("content: %d decks loaded (%s)", len(catalog), ", ".join(sorted(catalog.decks)))
    return service


def _ids(due: RitualDue, nudge: NudgeReady) -> dict[str, Any]:
    return {
        "occurrence_id": due.occurrence_id,
        "couple_id": due.couple_id,
        "deck": nudge.prompt.deck,
        "prompt_id": nudge.prompt.prompt_id,
    }
