"""Upgrading keeps every couple (issue #12), over a real Redis: couples, rituals and channel
tokens as the layout before the compact records wrote them (c44b517: plain JSON, the JSON
of the channels encrypted as it is) read the same through the API, the firing path's batch
reads and the notifier's vault, and each is rewritten compactly the next time it is
written."""

from __future__ import annotations

import json

import pytest

from services.scheduler.rituals import Couple, Ritual
from tests.support.scheduler import ADMIN, couple_body

pytestmark = pytest.mark.redis_cluster  # the same on a cluster (the keys do not change)


@pytest.fixture
def infra(module_infra):
    return module_infra


async def _write_old_layout(scheduler, couple: Couple, ritual: Ritual, urls: dict[str, str]):
    """Overwrite the couple's records with what c44b517 stored for them."""
    store, redis = scheduler.store, scheduler.redis
    await redis.set(store._couple(couple.id), couple.model_dump_json(exclude_defaults=True))
    await redis.set(store._ritual(ritual.id), ritual.model_dump_json(exclude_defaults=True))
    token = store.vault.box.encrypt(json.dumps(urls, separators=(",", ":")).encode())
    await redis.set(store.vault._channels(couple.id), token)


async def test_records_of_the_old_layout_read_the_same_and_are_rewritten(running) -> None:
    scheduler, api = running
    body = couple_body(quiet_hours={"start": "22:30", "end": "06:45"})
    made = (await api.post("/v1/couples", json=body, headers=ADMIN)).json()
    cid = made["id"]
    ritual_made = await api.post(
        f"/v1/couples/{cid}/rituals",
        json={"kind": "date_night", "delivery": "local", "celebrate": True},
        headers=ADMIN,
    )
    assert ritual_made.status_code == 201, ritual_made.text
    rid = ritual_made.json()["id"]
    store = scheduler.store
    couple, ritual = await store.get_couple(cid), await store.get_ritual(rid)
    assert couple is not None and ritual is not None
    sam, alex = couple.partners
    urls = {
        sam.channels[0].id: body["partners"][0]["channels"][0]["url"],
        alex.channels[0].id: body["partners"][1]["channels"][0]["url"],
    }
    before = (await api.get(f"/v1/couples/{cid}", headers=ADMIN)).json()
    ritual_before = (await api.get(f"/v1/rituals/{rid}", headers=ADMIN)).json()

    await _write_old_layout(scheduler, couple, ritual, urls)
    raw = await scheduler.redis.get(store._couple(cid))
    assert raw is not None and raw.startswith("{")  # really the old layout

    # read: the API, the firing path's batch reads, the notifier's vault
    assert (await api.get(f"/v1/couples/{cid}", headers=ADMIN)).json() == before
    assert (await api.get(f"/v1/rituals/{rid}", headers=ADMIN)).json() == ritual_before
    listed = (await api.get(f"/v1/couples/{cid}/rituals", headers=ADMIN)).json()
    assert [r["id"] for r in listed["rituals"]] == [rid]
    assert await store.get_couples([cid]) == {cid: couple}
    assert await store.get_rituals([rid]) == {rid: ritual}
    for channel_id, url in urls.items():
        assert await store.vault.channel_url(cid, channel_id) == url

    # written: stored compactly, and reads back as changed
    patched = await api.patch(f"/v1/couples/{cid}", json={"name": "S & A"}, headers=ADMIN)
    assert patched.status_code == 200, patched.text
    after = (await api.get(f"/v1/couples/{cid}", headers=ADMIN)).json()
    assert after == {**before, "name": "S & A"}
    ritual_patched = await api.patch(f"/v1/rituals/{rid}", json={"title": "Ours"}, headers=ADMIN)
    assert ritual_patched.status_code == 200, ritual_patched.text
    await store.vault.update_channels(cid, put={}, drop=[])
    for key in (store._couple(cid), store._ritual(rid)):
        stored = await scheduler.redis.get(key)
        assert stored is not None and stored.startswith("1"), stored
    token = await scheduler.redis.get(store.vault._channels(cid))
    assert token is not None and store.vault.box.decrypt(token).startswith(b"1")
    assert await store.get_couple(cid) == couple.model_copy(update={"name": "S & A"})
    assert await store.get_ritual(rid) == ritual.model_copy(update={"title": "Ours"})
    for channel_id, url in urls.items():
        assert await store.vault.channel_url(cid, channel_id) == url
