"""tandem.dlq: list what the notifier dead-lettered, fix the cause, replay it."""

from __future__ import annotations

from tandem.dlq import list_dead_letters, read_dead_letters, replay
from tandem.inbox import Fault, Inbox
from tandem.notifier_harness import (
    Couple,
    Partner,
    make_nudge,
    publish_nudges,
    running_notifier,
    store_couple,
    watching,
)


async def test_list_and_replay_round_trip(infra, inbox: Inbox) -> None:
    settings = infra.settings(
        delivery_max_attempts=2,
        delivery_backoff_seconds=0.1,
        delivery_backoff_max_seconds=0.2,
        delivery_connect_timeout=1.0,
        delivery_read_timeout=2.0,
    )
    couple = Couple(
        id="cpl_replay",
        partners=[
            Partner("sam", [("c_sam", "push", inbox.json_url("sam-replay"))]),
            Partner("alex", [("c_alex", "push", inbox.ntfy_url("alex-replay"))]),
        ],
    )
    inbox.fault("sam-replay", Fault(forever=True))
    await store_couple(settings, couple)
    nudge = make_nudge(couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, nudge)
        await out.wait_for(lambda o: len(o.dead) == 1)

        letters = await list_dead_letters(settings, "nudge.ready.dlq", limit=10)
        assert len(letters) == 1
        assert letters[0].source_topic == "nudge.ready"
        assert letters[0].key == couple.id
        assert len(letters[0].errors) == 2
        # Listing is read-only and repeatable; the source topic name works too.
        assert len(await list_dead_letters(settings, "nudge.ready", limit=10)) == 1
        assert await list_dead_letters(settings, "nudge.ready.dlq", limit=0) == []
        [record] = await read_dead_letters(settings, "nudge.ready.dlq")

        assert await replay(settings, "nudge.ready.dlq", [record.offset + 1000]) == 0

        inbox.fault("sam-replay", None)  # the provider is fixed
        assert (
            await replay(settings, "nudge.ready.dlq", [record.offset], partition=record.partition)
            == 1
        )
        await out.wait_for(lambda o: len(o.delivered_to("sam")) == 1)

        # Replaying again is harmless: the ledger knows both partners were reached.
        assert await replay(settings, "nudge.ready.dlq", None) == 1
        marker = make_nudge(couple)
        await publish_nudges(settings, marker)
        await out.wait_for(lambda o: len(o.delivered_to("sam")) >= 2)
    assert len(inbox.to("sam-replay")) == 2  # the replayed nudge once, the marker once
    assert len(inbox.to("alex-replay")) == 2  # the original once, the marker once
    assert nudge.occurrence_id in inbox.to("sam-replay")[0].body
