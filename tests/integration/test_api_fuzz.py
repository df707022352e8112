"""A property-based fuzz run of the HTTP API from its own OpenAPI document (schemathesis).

A real scheduler process (real broker, real Redis) answers every generated request of every
operation, a bounded number of examples each: none may be a 5xx or hang, and a request the
API refuses (4xx) must leave Redis exactly as it was -- nothing half-stored by a rejection.
One couple is made first, so the fuzzer's ids land on real data as well as on nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings

from tandem.embedded import free_port
from tests.support.infra import Infra
from tests.support.processes import running_services
from tests.support.scheduler import ADMIN, couple_body

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
schema = schemathesis.openapi.from_path(str(OPENAPI))
# Keys that count requests, not data: the rate limiter writes them for refused ones too.
NOT_DATA = (":ratelimit",)


class Api:
    """The running scheduler: its URL and a way to see every data key it holds."""

    def __init__(self, url: str, infra: Infra) -> None:
        self.url = url
        self.prefix = infra.prefix
        self.redis = redis.Redis.from_url(infra.redis_url, decode_responses=True)

    def keys(self) -> set[str]:
        found = self.redis.scan_iter(match=f"{self.prefix}:*", count=1000)
        return {k for k in found if not any(part in k for part in NOT_DATA)}


@pytest.fixture(scope="module")
def api(module_infra: Infra) -> Iterator[Api]:
    port = free_port()
    env = module_infra.env(api_port=port, rate_limit="")
    with running_services({"scheduler": env}):
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.2)
        made = httpx.post(f"{url}/v1/couples", json=couple_body(), headers=ADMIN, timeout=10)
        assert made.status_code == 201, made.text
        yield Api(url, module_infra)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples on every run: a red build is reproducible
)
def test_no_request_is_a_server_error_or_stores_anything_when_refused(case: Any, api: Api) -> None:
    before = api.keys()
    response = case.call(base_url=api.url, headers=ADMIN, timeout=20)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
    if 400 <= response.status_code < 500:
        assert api.keys() == before, (case.method, case.formatted_path, response.status_code)
