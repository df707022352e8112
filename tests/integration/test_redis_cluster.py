"""Tandem on a real local 3-master Redis Cluster: a ``redis+cluster://`` URL gives a cluster
client, keys of one hash tag share a transaction, the channel vault and the rate limits
work there, and ``tandem rotate-keys`` finds the channels on every master."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from services.scheduler.api.fairness import RateLimits
from shared.ids import new_id
from shared.redis import Keys, StrRedis, make_redis
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.vault import Vault
from tests.support.infra import Infra
from tests.support.redis_cluster import cluster_missing, started_cluster

pytestmark = pytest.mark.skipif(cluster_missing() is not None, reason=str(cluster_missing()))

KEY_A = "x0z4PZk2cOrm9dCcZzZbZxkl7S_JHQq1zcx4Nqo1nsI="


@pytest.fixture(scope="module")
def cluster_url(_cluster: str | None) -> Iterator[str]:
    """The session's cluster on a cluster run, else one of this module's own."""
    if _cluster is not None:
        yield _cluster
        return
    with started_cluster() as url:
        yield url


@pytest.fixture
def settings(cluster_url: str, infra: Infra) -> Settings:
    return infra.settings(redis_url=cluster_url)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[StrRedis]:
    client = make_redis(settings)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_cluster_url_spreads_keys_over_every_master(redis: StrRedis) -> None:
    assert isinstance(redis, RedisCluster)
    assert await redis.ping()  # type: ignore[misc]  # the readiness check's command
    keys = Keys(new_id("t"))
    for i in range(60):
        await redis.set(keys("spread", str(i)), str(i))
    masters = redis.get_primaries()
    assert len(masters) == 3
    for master in masters:
        # every master holds some of them: the URL reached the whole cluster
        assert await redis.dbsize(target_nodes=master) > 0


async def test_one_tag_one_transaction_and_mixed_slots_refused(redis: StrRedis) -> None:
    keys = Keys(new_id("t"))
    couple = new_id("cpl")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys("sched", Keys.tag(couple), "couple"), "{}")
        pipe.sadd(keys("sched", Keys.tag(couple), "rituals"), "rit_1")
        assert await pipe.execute() == [True, 1]
    # the rule the stores follow, seen failing: two couples' keys in one transaction
    with pytest.raises((RedisClusterException, ResponseError)):
        async with redis.pipeline(transaction=True) as pipe:
            for n in range(8):  # untagged, so at least two of them differ in slot
                pipe.set(keys("untagged", str(n)), "x")
            await pipe.execute()


async def test_the_vault_keeps_a_couple_in_one_slot_and_rotates_on_every_master(
    redis: StrRedis, settings: Settings
) -> None:
    keys = Keys(settings.redis_prefix)
    old = Vault(redis, keys, SecretBox(KEY_A))
    couples = [new_id("cpl") for _ in range(24)]
    for n, couple in enumerate(couples):
        async with redis.pipeline(transaction=True) as pipe:
            old.store_channels(pipe, couple, {"chn_a": f"json://127.0.0.1:9/{n}"})
            old.set_paused(pipe, couple, n % 2 == 0)
            await pipe.execute()
    assert await old.is_paused(couples[0]) and not await old.is_paused(couples[1])
    async with redis.pipeline(transaction=True) as pipe:
        old.set_paused(pipe, couples[0], False)
        await pipe.execute()
    assert not await old.is_paused(couples[0])

    new_key = SecretBox.generate_key()
    done = await Vault(redis, keys, SecretBox(new_key, [KEY_A])).rotate()
    assert done.couples == len(couples)  # found on all three masters
    assert await Vault(redis, keys, SecretBox(new_key)).channel_url(couples[5], "chn_a") == (
        "json://127.0.0.1:9/5"
    )
    async with redis.pipeline(transaction=True) as pipe:
        old.forget(pipe, couples[5])
        await pipe.execute()
    assert not await old.exists(couples[5])


async def test_rate_limits_count_on_the_cluster(redis: StrRedis, settings: Settings) -> None:
    limits = RateLimits.over(redis, settings.model_copy(update={"rate_limit": "3/minute"}))
    assert limits is not None
    hits = [await limits.limiter.hit(limits.couple, "tok:abc") for _ in range(4)]
    assert hits == [True, True, True, False]
    counted = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}:ratelimit*")]
    assert counted


async def _rotate_keys(env: dict[str, str]) -> tuple[int | None, str]:
    """``tandem rotate-keys`` as an operator runs it: a process of its own."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "tandem.cli", "rotate-keys"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
    return proc.returncode, out


async def test_rotate_keys_cli_rotates_every_master(
    redis: StrRedis, settings: Settings, infra: Infra
) -> None:
    vault = Vault(redis, Keys(settings.redis_prefix), SecretBox(KEY_A))
    for n in range(12):
        async with redis.pipeline(transaction=True) as pipe:
            vault.store_channels(pipe, new_id("cpl"), {"chn_a": f"json://127.0.0.1:9/{n}"})
            await pipe.execute()
    new_key = SecretBox.generate_key()
    env = infra.env(redis_url=settings.redis_url, secret_key=new_key, old_secret_keys=KEY_A)
    code, out = await _rotate_keys(env)
    assert code == 0 and "12 couple(s): re-encrypted 12 channel URL(s)" in out, out


async def test_rotate_keys_cli_names_the_cluster_it_cannot_reach(infra: Infra) -> None:
    env = infra.env(redis_url="redis+cluster://u:hidden@127.0.0.1:9/", secret_key=KEY_A)
    code, out = await _rotate_keys(env)
    assert code == 1, out
    assert "127.0.0.1:9" in out and "hidden" not in out and "Traceback" not in out
