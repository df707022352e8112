"""Trust at the edges, over a real Redis and a real broker: every test nudge is an
occurrence of its own unless an Idempotency-Key repeats it; a couple's token and calendar
feed rotate; the channel-encryption key rotates with `tandem rotate-keys`."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.scheduler.api import deps
from services.scheduler.store import named_couple, token_hash
from shared import links
from shared.ids import OccurrenceId, new_id
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.topics import RITUAL_DUE, RITUAL_DUE_URGENT
from shared.vault import Vault
from tandem.inbox import Inbox
from tandem.notifier_harness import (
    make_nudge,
    publish_nudges,
    running_notifier,
    store_couple,
    watching,
)
from tests.support.kafka import TopicReader
from tests.support.notifier import fast, two_partners
from tests.support.scheduler import ADMIN, couple_body, running_scheduler


@pytest.fixture
def infra(module_infra):
    return module_infra


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def couple_with_ritual(
    api: httpx.AsyncClient, kind: str = "evening_checkin", **body: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    made = await api.post(
        f"/v1/couples/{couple['id']}/rituals", json={"kind": kind, **body}, headers=ADMIN
    )
    assert made.status_code == 201, made.text
    return couple, made.json()


# -- test nudges ---------------------------------------------------------------------------
async def test_two_triggers_in_one_second_are_two_occurrences(infra, running) -> None:
    scheduler, api = running
    couple, ritual = await couple_with_ritual(api)
    second = datetime.now(UTC).replace(microsecond=0)
    scheduler.api.dependency_overrides[deps.now] = lambda: second  # both in the same second
    try:
        async with TopicReader(infra.settings(), RITUAL_DUE, RITUAL_DUE_URGENT) as reader:
            answers = [
                await api.post(f"/v1/rituals/{ritual['id']}/trigger", headers=ADMIN)
                for _ in range(2)
            ]
            assert [a.status_code for a in answers] == [202, 202]
            ids = [a.json()["occurrence_id"] for a in answers]
            assert ids[0] != ids[1]
            records = await reader.until(
                lambda rs: {r["occurrence_id"] for r in rs} >= set(ids), timeout=30
            )
    finally:
        del scheduler.api.dependency_overrides[deps.now]
    mine = [r for r in records if r["ritual_id"] == ritual["id"]]
    assert sorted(r["occurrence_id"] for r in mine) == sorted(ids)
    for r in mine:
        ref = OccurrenceId.parse(r["occurrence_id"])
        assert ref.instant == second and ref.manual is not None and r["trigger"] == "manual"
    # a manual occurrence is answered like any other
    sam = couple["partners"][0]["id"]
    done = await api.post(
        f"/v1/occurrences/{ids[1]}/ack",
        json={"action": "done", "partner_id": sam},
        headers=bearer(couple["token"]),
    )
    assert done.status_code == 200, done.text
    assert done.json()["occurrence_id"] == ids[1]


async def test_an_idempotency_key_repeats_the_first_answer(infra, running) -> None:
    _, api = running
    couple, ritual = await couple_with_ritual(api, delivery="local")
    own = {**bearer(couple["token"]), "Idempotency-Key": "retry-7f3a"}
    url = f"/v1/rituals/{ritual['id']}/trigger"
    async with TopicReader(infra.settings(), RITUAL_DUE, RITUAL_DUE_URGENT) as reader:
        # at once (they race for the key), then once more after
        first, *together = await asyncio.gather(*(api.post(url, headers=own) for _ in range(3)))
        again = await api.post(url, headers=own)
        assert first.status_code == 202, first.text
        for answer in (again, *together):
            assert (answer.status_code, answer.content) == (first.status_code, first.content)
        ids = first.json()["occurrence_ids"]
        assert len(ids) == 2  # local delivery: one occurrence per partner
        # another key, or the same key from another caller (the admin), is another trigger
        other = await api.post(url, headers={**own, "Idempotency-Key": "retry-other"})
        admin = await api.post(url, headers={**ADMIN, "Idempotency-Key": "retry-7f3a"})
        fresh = other.json()["occurrence_ids"] + admin.json()["occurrence_ids"]
        assert len(set(fresh) | set(ids)) == 6
        await reader.until(lambda rs: {r["occurrence_id"] for r in rs} >= {*ids, *fresh})
        await reader.quiet(1.0)
    manual = [r["occurrence_id"] for r in reader.records if r["ritual_id"] == ritual["id"]]
    assert sorted(manual) == sorted({*ids, *fresh})  # each once: the repeats queued nothing


async def test_a_bad_idempotency_key_is_refused(running) -> None:
    _, api = running
    _, ritual = await couple_with_ritual(api)
    for bad in ("", "x" * 256, "has space"):
        answer = await api.post(
            f"/v1/rituals/{ritual['id']}/trigger", headers={**ADMIN, "Idempotency-Key": bad}
        )
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


# -- tokens and feeds ----------------------------------------------------------------------
async def test_a_rotated_token_replaces_the_old_one_at_once(running) -> None:
    _, api = running
    couple, _ = await couple_with_ritual(api)
    other, _ = await couple_with_ritual(api)
    path = f"/v1/couples/{couple['id']}"
    # another couple cannot rotate this one's token
    refused = await api.post(f"{path}/token", headers=bearer(other["token"]))
    assert refused.status_code == 404
    rotated = await api.post(f"{path}/token", headers=bearer(couple["token"]))
    assert rotated.status_code == 200, rotated.text
    token = rotated.json()["token"]
    assert token.startswith("ct_") and token != couple["token"]
    assert (await api.get(path, headers=bearer(couple["token"]))).status_code == 401
    assert (await api.get(path, headers=bearer(token))).status_code == 200
    # the admin may rotate it too (a lost token), which retires the one just made
    by_admin = (await api.post(f"{path}/token", headers=ADMIN)).json()["token"]
    assert (await api.get(path, headers=bearer(token))).status_code == 401
    assert (await api.get(path, headers=bearer(by_admin))).status_code == 200
    # the other couple's token is untouched
    assert (await api.get(f"/v1/couples/{other['id']}", headers=bearer(other["token"]))).is_success


async def test_a_couple_token_opens_only_the_couple_it_names(running) -> None:
    _, api = running
    couple, _ = await couple_with_ritual(api)
    other, _ = await couple_with_ritual(api)
    token = couple["token"]
    assert named_couple(token) == couple["id"]  # no lookup key of its own: it names its couple
    path = f"/v1/couples/{couple['id']}"
    secret = token.partition(".")[2]
    for forged in (
        f"ct_{other['id']}.{secret}",  # this secret, another couple
        f"ct_{couple['id']}.{other['token'].partition('.')[2]}",  # another couple's secret
        f"ct_{couple['id']}.{secret[:-1]}",
        f"ct_{couple['id']}.",
        f"ct_{couple['id']}x.{secret}",  # no couple id's shape: never reaches a key
        f"ct_{couple['id']}",
    ):
        for target in (path, f"/v1/couples/{other['id']}"):
            answer = await api.get(target, headers=bearer(forged))
            assert answer.status_code == 401, (forged, answer.text)
    assert (await api.get(path, headers=bearer(token))).status_code == 200


async def test_a_token_made_before_tokens_named_their_couple_works_until_rotated(
    running,
) -> None:
    """A deployment's older couple tokens (``ct_<random>``, found through a ``t:<sha256>``
    lookup key) keep working; rotating makes a token that names the couple and removes the
    old token's lookup key."""
    scheduler, api = running
    couple, _ = await couple_with_ritual(api)
    store = scheduler.store
    old = f"ct_{secrets.token_urlsafe(24)}"  # as the API made them, stored as it stored them
    digest = token_hash(old)
    await store.redis.set(store._token(digest), couple["id"])
    await store.redis.hset(store._couple_index(couple["id"]), "t", digest)
    path = f"/v1/couples/{couple['id']}"
    assert (await api.get(path, headers=bearer(old))).status_code == 200
    assert (await api.get(path, headers=bearer(couple["token"]))).status_code == 401
    rotated = await api.post(f"{path}/token", headers=bearer(old))
    assert rotated.status_code == 200, rotated.text
    token = rotated.json()["token"]
    assert named_couple(token) == couple["id"]
    assert await store.redis.exists(store._token(digest)) == 0
    assert (await api.get(path, headers=bearer(old))).status_code == 401
    assert (await api.get(path, headers=bearer(token))).status_code == 200
    # a couple deleted with an older token takes its lookup key along
    again, _ = await couple_with_ritual(api)
    await store.redis.set(store._token(digest), again["id"])
    await store.redis.hset(store._couple_index(again["id"]), "t", digest)
    gone = await api.delete(f"/v1/couples/{again['id']}", headers=bearer(old))
    assert gone.status_code == 204, gone.text
    assert await store.redis.exists(store._token(digest)) == 0


async def test_an_older_token_whose_lookup_key_outlived_a_rotation_is_refused(running) -> None:
    """The couple's index is the truth, the lookup key only the way to it: a key left
    behind (a rotation that could not remove it) opens nothing."""
    scheduler, api = running
    couple, _ = await couple_with_ritual(api)
    store = scheduler.store
    old = f"ct_{secrets.token_urlsafe(24)}"
    await store.redis.set(store._token(token_hash(old)), couple["id"])
    path = f"/v1/couples/{couple['id']}"
    assert (await api.get(path, headers=bearer(old))).status_code == 401
    assert (await api.get(path, headers=bearer(couple["token"]))).status_code == 200


def _feed_path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


async def test_a_rotated_feed_url_replaces_the_old_one(running) -> None:
    _, api = running
    couple, _ = await couple_with_ritual(api)
    own = bearer(couple["token"])
    path = f"/v1/couples/{couple['id']}"
    old = (await api.get(path, headers=own)).json()["calendar_feed"]
    assert (await api.get(_feed_path(old))).status_code == 200
    rotated = await api.post(f"{path}/calendar-feed", headers=own)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["calendar_feed"]
    assert new != old and (await api.get(path, headers=own)).json()["calendar_feed"] == new
    assert (await api.get(_feed_path(old))).status_code == 401
    answer = await api.get(_feed_path(new))
    assert answer.status_code == 200 and answer.text.startswith("BEGIN:VCALENDAR")
    # the token of one couple's feed opens no other couple's calendar
    other, _ = await couple_with_ritual(api)
    token = new.rsplit("feed=", 1)[1]
    assert (await api.get(f"/v1/couples/{other['id']}/calendar.ics?feed={token}")).status_code == (
        401
    )


# -- the channel-encryption key ------------------------------------------------------------
async def _rotate_keys(env: dict[str, str]) -> tuple[int, str]:
    """`tandem rotate-keys` as an operator runs it: a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tandem.cli",
        "rotate-keys",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_secret_key_rotates_without_losing_a_channel(module_infra) -> None:
    key_a, key_b = SecretBox.generate_key(), SecretBox.generate_key()
    # a deployment of its own (its own prefix), so the counts are this test's alone
    prefix = f"{module_infra.prefix}-rot"
    with_a = module_infra.settings(secret_key=key_a, redis_prefix=prefix)
    body = couple_body(secret="rotate-me")
    async with running_scheduler(with_a) as (_, api):
        couple = (await api.post("/v1/couples", json=body, headers=ADMIN)).json()
        feed_a = (await api.get(f"/v1/couples/{couple['id']}", headers=ADMIN)).json()[
            "calendar_feed"
        ]
    plain = {p["name"]: [c["url"] for c in p["channels"]] for p in body["partners"]}
    channel_ids = [c["id"] for p in couple["partners"] for c in p["channels"]]
    redis = make_redis(with_a)
    try:

        async def readable(box: SecretBox) -> list[str]:
            vault = Vault(redis, Keys(prefix), box)
            return [await vault.channel_url(couple["id"], c) or "" for c in channel_ids]

        expected = [u for urls in plain.values() for u in urls]
        assert await readable(SecretBox(key_a)) == expected
        with pytest.raises(ValueError):  # B alone cannot read what A wrote
            await readable(SecretBox(key_b))

        # B is the key now, A still accepted: the scheduler reads A's channels, feed URLs
        # and links of A still work, and what it writes is under B
        with_both = module_infra.settings(
            secret_key=key_b, old_secret_keys=key_a, redis_prefix=prefix
        )
        async with running_scheduler(with_both) as (_, api):
            assert (await api.get(_feed_path(feed_a))).status_code == 200
            sam = couple["partners"][0]["id"]
            link = links.sign(
                key_a,
                links.Grant(couple["id"], "rit_000000000000@20260101T000000Z", sam, "done", 0),
            )
            # signed by A: accepted as genuine (then refused as expired, not as forged)
            assert (await api.get(f"/a/{link}")).status_code == 410
        code, out = await _rotate_keys(
            module_infra.env(secret_key=key_b, old_secret_keys=key_a, redis_prefix=prefix)
        )
        assert code == 0, out
        assert f"re-encrypted {len(expected)} channel URL(s)" in out, out
        assert "0 unreadable" in out
        # idempotent: a second run finds everything current
        code, out = await _rotate_keys(
            module_infra.env(secret_key=key_b, old_secret_keys=key_a, redis_prefix=prefix)
        )
        assert code == 0 and "re-encrypted 0 channel URL(s)" in out, out
        assert f"{len(expected)} already current" in out
        # and now B alone reads every channel
        assert await readable(SecretBox(key_b)) == expected
        # with only B configured, a value under a forgotten key is reported, not skipped over
        await redis.set(
            Keys(prefix)(f"{{{couple['id']}}}", "v"),
            SecretBox(key_a).encrypt(b'{"chn_000000000000":"json://lost"}'),
        )
        code, out = await _rotate_keys(module_infra.env(secret_key=key_b, redis_prefix=prefix))
        assert code == 1 and "1 unreadable" in out, out
    finally:
        await redis.aclose()


async def test_with_only_the_new_key_old_links_and_feeds_stop(module_infra) -> None:
    key_a, key_b = SecretBox.generate_key(), SecretBox.generate_key()
    prefix = f"{module_infra.prefix}-gone"
    async with running_scheduler(module_infra.settings(secret_key=key_a, redis_prefix=prefix)) as (
        _,
        api,
    ):
        couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
        feed_a = (await api.get(f"/v1/couples/{couple['id']}", headers=ADMIN)).json()[
            "calendar_feed"
        ]
    only_b = module_infra.settings(secret_key=key_b, redis_prefix=prefix)
    async with running_scheduler(only_b) as (_, api):
        assert (await api.get(_feed_path(feed_a))).status_code == 401
        sam = couple["partners"][0]["id"]
        grant = links.Grant(
            couple["id"], "rit_000000000000@20260101T000000Z", sam, "done", int(time.time()) + 60
        )
        assert (await api.get(f"/a/{links.sign(key_a, grant)}")).status_code == 403
        feed_b = (await api.get(f"/v1/couples/{couple['id']}", headers=ADMIN)).json()[
            "calendar_feed"
        ]
        assert (await api.get(_feed_path(feed_b))).status_code == 200


async def test_after_rotation_the_notifier_delivers_with_only_the_new_key(
    infra, inbox: Inbox
) -> None:
    key_a, key_b = SecretBox.generate_key(), SecretBox.generate_key()
    prefix = f"{infra.prefix}-dlv"  # a deployment of its own: only this couple's channels
    couple = two_partners(inbox, new_id("rot"))
    await store_couple(fast(infra, secret_key=key_a, redis_prefix=prefix), couple)  # under A
    redis = make_redis(infra.settings())
    try:
        vault = Vault(redis, Keys(prefix), SecretBox(key_b, [key_a]))
        done = await vault.rotate()
        assert (done.couples, done.rotated, done.unreadable) == (1, 2, 0)
    finally:
        await redis.aclose()
    only_b = fast(infra, secret_key=key_b, redis_prefix=prefix)
    async with watching(only_b) as out, running_notifier(only_b):
        await publish_nudges(only_b, make_nudge(couple))
        await out.wait_for(lambda o: len([d for d in o.delivered if d.couple_id == couple.id]) >= 2)
    assert not [f for f in out.failed if f.couple_id == couple.id]
    assert len(inbox.received) >= 2
