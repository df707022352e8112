"""Redis wiring: one client factory and one key scheme for every service.

``TANDEM_REDIS_URL`` names either one Redis (``redis://``, ``rediss://`` for TLS) or a Redis
Cluster: ``redis+cluster://[user:password@]host:port[,host:port...]/`` (``rediss+cluster://``
for TLS). A cluster URL lists one or more of its nodes (the client discovers the rest) and
has no database number (a cluster has only database 0). :func:`make_redis` gives a
``redis.asyncio.cluster.RedisCluster`` for it and a plain ``redis.asyncio.Redis`` otherwise;
both are typed :class:`StrRedis`, so stores never ask which one they hold.

The hash-tag rule (what keeps a store valid on a cluster): a cluster places each key on one
of 16,384 slots by the hash of its name -- or, when the name holds ``{...}``, of the text
inside the first braces only. A MULTI/EXEC transaction, a Lua script and a multi-key
command (``MGET``, ``SUNIONSTORE``...) must touch keys of *one* slot, else the cluster
answers ``CROSSSLOT``. So every key such a command touches together carries the same tag,
made by :meth:`Keys.tag` (e.g. ``keys(Keys.tag(couple_id), "c")`` and
``keys(Keys.tag(couple_id), "rituals")``), and a key shared by everyone (a global
index) is never written in the same transaction or script as a per-couple key. Plain
pipelines (``transaction=False``) may mix slots: the cluster client splits them per node,
so reads of many couples (``MGET``'s job on one Redis) go through one, on either client.
``SCAN`` on a cluster client walks every master (``scan_iter`` does that for us).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast, overload
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from shared.settings import Settings

if TYPE_CHECKING:
    from redis.typing import FieldT, KeyT, ZScoreBoundT

    class StrRedis(Redis):
        """``redis.asyncio.Redis`` as the type checker should see a client made with
        ``decode_responses=True``: the read commands Tandem uses answer ``str``.

        redis-py (8.x) types every reply ``bytes | str`` whatever the client decodes and has
        no generic client type to say which, so without this every read would need a cast.
        The narrower replies are declared once, here; the ``override`` ignores are that
        narrowing (sound only because ``make_redis`` always decodes). The type exists only
        for the checker: at run time ``StrRedis`` *is* ``Redis``, so a parameter typed
        ``Redis`` accepts one. Declare a command here when a store starts reading its reply.
        """

        async def get(self, name: KeyT) -> str | None: ...
        async def mget(  # type: ignore[override]
            self, keys: KeyT | Iterable[KeyT], *args: KeyT
        ) -> list[str | None]: ...
        async def hget(self, name: KeyT, key: FieldT) -> str | None: ...
        async def hgetall(self, name: KeyT) -> dict[str, str]: ...  # type: ignore[override]
        async def hmget(  # type: ignore[override]
            self, name: KeyT, keys: FieldT | Iterable[FieldT], *args: FieldT
        ) -> list[str | None]: ...
        async def smembers(self, name: KeyT) -> set[str]: ...  # type: ignore[override]
        async def zrevrange(  # type: ignore[override]
            self, name: KeyT, start: int, end: int
        ) -> list[str]: ...
        async def zrangebyscore(  # type: ignore[override]
            self, name: KeyT, min: ZScoreBoundT, max: ZScoreBoundT
        ) -> list[str]: ...
        @overload  # type: ignore[override]
        async def zrange(
            self, name: KeyT, start: int, end: int, withscores: Literal[False] = False
        ) -> list[str]: ...
        @overload
        async def zrange(
            self, name: KeyT, start: int, end: int, withscores: Literal[True]
        ) -> list[tuple[str, float]]: ...
        async def zrange(
            self, name: KeyT, start: int, end: int, withscores: bool = False
        ) -> list[str] | list[tuple[str, float]]: ...

else:
    StrRedis = Redis


CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS


@dataclass(frozen=True)
class ClusterUrl:
    """A ``redis+cluster://`` (or ``rediss+cluster://``) URL, taken apart."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> ClusterUrl | None:
        """The cluster ``url`` names; None when it names a single Redis. ValueError, saying
        what is wrong, for a cluster URL without nodes, with a bad port or a database."""
        parts = urlsplit(url)
        if parts.scheme not in CLUSTER_SCHEMES:
            return None
        credentials, _, hosts = parts.netloc.rpartition("@")
        user, _, password = credentials.partition(":")
        nodes = []
        for node in filter(None, hosts.split(",")):
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{parts.scheme}:// wants host:port nodes, not {node!r}")
            nodes.append((host, int(port)))
        if not nodes:
            raise ValueError(f"{parts.scheme}:// names no node (host:port[,host:port...])")
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has only database 0; drop the /<db> of the URL")
        return cls(
            tuple(nodes),
            unquote(user) or None,
            unquote(password) or None,
            CLUSTER_SCHEMES[parts.scheme],
        )

    @property
    def where(self) -> str:
        """The nodes, ``host:port,host:port``, without credentials (for messages)."""
        return ",".join(f"{host}:{port}" for host, port in self.nodes)


def redis_where(url: str) -> str:
    """Where ``url``'s Redis (or cluster) is, without the password a URL may carry."""
    cluster = ClusterUrl.parse(url)
    if cluster is not None:
        return cluster.where
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 6379}"


def make_redis(settings: Settings) -> StrRedis:
    """An asyncio client (connection pools) for ``settings.redis_url``: a ``RedisCluster``
    for a cluster URL, a ``Redis`` otherwise; values are str either way."""
    cluster = ClusterUrl.parse(settings.redis_url)
    if cluster is None:
        single = Redis.from_url(settings.redis_url, decode_responses=True, health_check_interval=15)
        return cast(StrRedis, single)  # decode_responses=True is what makes it one
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.tls,
        decode_responses=True,
        health_check_interval=15,
    )
    # Not a Redis subclass, but it answers every command Tandem uses the same way (within
    # the hash-tag rule above), decoded.
    return cast(StrRedis, client)


def is_cluster(redis: object) -> bool:
    """Whether ``redis`` is a Redis Cluster client (no MULTI, MGET or script across slots)."""
    return isinstance(redis, RedisCluster)


class Keys:
    """Every Redis key Tandem writes, under one prefix so several deployments (or test runs)
    can share a server."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @staticmethod
    def tag(*parts: str) -> str:
        """``{part:part}``: a hash tag, one part of a key, so that every key carrying the same
        tag lands on one cluster slot (see the module docstring). Parts must not hold braces
        (ids never do), which would end the tag early."""
        if any("{" in part or "}" in part for part in parts):
            raise ValueError(f"a hash tag cannot hold braces: {parts!r}")
        return "{" + ":".join(parts) + "}"
