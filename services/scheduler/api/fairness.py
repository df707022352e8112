"""Limits and fairness: per-couple caps and per-token rate limits, as one dependency.

Every router of the API depends on :func:`fair` (so each request is counted once against
its caller's rate limit, kept in Redis by the :pypi:`limits` library's moving window), and
the routes that add things ask the same :class:`Fair` whether there is room:

* rituals per couple (``TANDEM_MAX_RITUALS_PER_COUPLE``) and goals per couple
  (``TANDEM_MAX_GOALS_PER_COUPLE``): 409 with the reason;
* channels per partner (``TANDEM_MAX_CHANNELS_PER_PARTNER``): 422 naming the list;
* requests per token (``TANDEM_RATE_LIMIT``, ``TANDEM_ADMIN_RATE_LIMIT``): 429 with
  ``Retry-After``. A request without a bearer token is counted by the credential it carries
  (a calendar feed's ``feed``, an action link's token), else by its client address.
  ``/healthz`` and ``/readyz`` are never limited.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisClusterStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from services.scheduler.api.deps import AppSettings, Store
from services.scheduler.api.errors import Invalid
from services.scheduler.api.schemas import CoupleIn
from services.scheduler.rituals import Couple
from services.scheduler.store import SchedulerStore
from shared.redis import ClusterUrl
from shared.settings import Settings


@dataclass(frozen=True)
class RateLimits:
    """The per-token limits, counted in Redis under ``<prefix>:ratelimit``."""

    limiter: MovingWindowRateLimiter
    couple: RateLimitItem
    admin: RateLimitItem

    @classmethod
    def over(cls, redis: Redis, settings: Settings) -> RateLimits | None:
        """Limits kept where ``redis`` keeps everything else; None when ``TANDEM_RATE_LIMIT``
        is empty."""
        if not settings.rate_limit:
            return None
        prefix = f"{settings.redis_prefix}:ratelimit"
        cluster = ClusterUrl.parse(settings.redis_url)
        storage: Storage
        if cluster is None:  # one Redis: share ``redis``'s connections
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=prefix,
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            )
        else:  # a cluster client has no pool to share: limits makes its own client
            # Credentials as options, not in the URI: limits does not unquote a URI's.
            auth: dict[str, Any] = {"username": cluster.username, "password": cluster.password}
            storage = RedisClusterStorage(
                f"async+redis+cluster://{cluster.where}",
                implementation="redispy",
                key_prefix=prefix,
                ssl=cluster.tls,
                **{name: value for name, value in auth.items() if value},
            )
        return cls(
            MovingWindowRateLimiter(storage),
            parse(settings.rate_limit),
            parse(settings.admin_rate_limit or settings.rate_limit),
        )

    async def check(self, request: Request, admin_token: str | None) -> None:
        """Count one request of its caller; 429 with ``Retry-After`` once over the limit."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        # Without a bearer token, the credential the request carries: a calendar feed's
        # ``feed`` or an action link's token (many couples may share one proxy's address).
        credential = token or request.query_params.get("feed") or request.path_params.get("token")
        item = self.couple
        if token and admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
            item = self.admin
        if credential:
            # Never the credential itself in a Redis key: a digest of it.
            who = "tok:" + hashlib.sha256(credential.encode()).hexdigest()[:24]
        else:
            who = "ip:" + (request.client.host if request.client else "unknown")
        if await self.limiter.hit(item, who):
            return
        stats = await self.limiter.get_window_stats(item, who)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise HTTPException(
            429,
            f"too many requests: at most {item} per caller; retry in {wait} s",
            {"Retry-After": str(wait)},
        )


@dataclass(frozen=True)
class Fair:
    """The caps a caller's additions must fit in (see the module docstring)."""

    settings: Settings
    store: SchedulerStore

    async def room_for_ritual(self, couple: Couple) -> None:
        cap = self.settings.max_rituals_per_couple
        if len(await self.store.list_rituals(couple.id)) >= cap:
            raise HTTPException(
                409, f"a couple may have at most {cap} rituals; delete one to add another"
            )

    async def room_for_goal(self, couple: Couple) -> None:
        cap = self.settings.max_goals_per_couple
        if len(await self.store.goals(couple.id)) >= cap:
            raise HTTPException(
                409, f"a couple may have at most {cap} goals; delete one to add another"
            )

    def channels_fit(self, body: CoupleIn) -> None:
        cap = self.settings.max_channels_per_partner
        for i, partner in enumerate(body.partners):
            if len(partner.channels) > cap:
                raise Invalid(
                    ["body", "partners", i, "channels"],
                    f"a partner may have at most {cap} channels",
                )


async def fair(request: Request, settings: AppSettings, store: Store) -> Fair:
    """Counts the request against its caller's rate limit, then gives the caps."""
    limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
    if limits is not None:
        await limits.check(request, settings.admin_token)
    return Fair(settings, store)


Fairness = Annotated[Fair, Depends(fair)]
