"""``TANDEM_REDIS_URL`` names one Redis or a Redis Cluster; keys get hash tags one way."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.redis import ClusterUrl, Keys, make_redis, redis_where
from shared.settings import Settings


def test_a_cluster_url_lists_its_nodes_and_credentials() -> None:
    url = ClusterUrl.parse("redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2:7001/")
    assert url == ClusterUrl((("10.0.0.1", 7000), ("10.0.0.2", 7001)), "app", "p@ss", tls=False)
    assert url.where == "10.0.0.1:7000,10.0.0.2:7001"
    assert ClusterUrl.parse("rediss+cluster://h:7000") == ClusterUrl((("h", 7000),), tls=True)


def test_a_single_redis_url_is_no_cluster() -> None:
    assert ClusterUrl.parse("redis://127.0.0.1:6379/0") is None
    assert ClusterUrl.parse("rediss://:pw@redis.example:6380") is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster:///", "names no node"),
        ("redis+cluster://h1:7000,h2/", "host:port nodes, not 'h2'"),
        ("redis+cluster://h1:x/", "host:port nodes"),
        ("redis+cluster://h1:7000/2", "only database 0"),
    ],
)
def test_a_bad_cluster_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        ClusterUrl.parse(url)


def test_where_never_shows_the_password() -> None:
    assert redis_where("redis://:secret@db.example:6380/0") == "db.example:6380"
    assert redis_where("redis+cluster://u:secret@a:1,b:2/") == "a:1,b:2"


async def test_make_redis_builds_the_client_the_url_names() -> None:
    # Neither constructor connects: no server is needed to see which client is built.
    single = make_redis(Settings(redis_url="redis://127.0.0.1:9/0"))
    cluster = make_redis(Settings(redis_url="redis+cluster://127.0.0.1:9,127.0.0.1:10/"))
    try:
        assert isinstance(single, Redis)
        assert isinstance(cluster, RedisCluster)
        assert [(n.host, n.port) for n in cluster.nodes_manager.startup_nodes.values()] == [
            ("127.0.0.1", 9),
            ("127.0.0.1", 10),
        ]
    finally:
        await single.aclose()
        await cluster.aclose()


def test_a_hash_tag_wraps_its_parts_in_braces() -> None:
    keys = Keys("tandem")
    assert keys("vault", Keys.tag("cpl_0123456789ab"), "channels") == (
        "tandem:vault:{cpl_0123456789ab}:channels"
    )
    assert Keys.tag("rit_1", "7") == "{rit_1:7}"
    with pytest.raises(ValueError, match="braces"):
        Keys.tag("a}b")
