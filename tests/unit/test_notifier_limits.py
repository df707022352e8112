"""Send concurrency bounds (services/notifier/limits.py), the loaded-client cache
(clients.py) and the keep-alive scope (keepalive.py), each on its own."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from functools import partial

import pytest
import requests
from apprise import Apprise
from apprise.plugins import NotifyBase
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.notifier import keepalive
from services.notifier.clients import ClientCache
from services.notifier.limits import OVERALL, PER_HOST, SendLimits
from services.notifier.worker import build
from shared.secrets import SecretBox
from shared.settings import Settings
from tandem.notifier_harness import HttpSink

WAIT = "tandem_send_slot_wait_seconds"
IN_FLIGHT = "tandem_sends_in_flight"


async def test_a_busy_host_waits_for_its_own_slots_only() -> None:
    limits = SendLimits(per_host=2, overall=3)
    slow = [await limits.acquire("slow:80") for _ in range(2)]
    third_slow = asyncio.create_task(limits.acquire("slow:80"))
    fast = await asyncio.wait_for(limits.acquire("fast:80"), 5)  # not starved
    await asyncio.sleep(0)
    assert not third_slow.done() and limits.in_use("slow:80") == 3
    slow[0]()
    (await asyncio.wait_for(third_slow, 5))()
    for release in (slow[1], fast):
        release()
    assert limits.in_use("slow:80") == 0 and limits.in_use("fast:80") == 0
    assert not limits._hosts  # forgotten once idle


async def test_the_overall_bound_holds_across_hosts() -> None:
    limits = SendLimits(per_host=2, overall=2)
    held = [await limits.acquire(f"h{i}:80") for i in range(2)]
    blocked = asyncio.create_task(limits.acquire("h9:80"))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    held[0]()
    (await asyncio.wait_for(blocked, 5))()
    held[1]()


def test_bounds_must_make_sense() -> None:
    with pytest.raises(ValueError):
        SendLimits(per_host=5, overall=2)


def test_the_cache_reloads_a_changed_url_and_drops_the_old_one() -> None:
    cache: ClientCache[NotifyBase] = ClientCache()
    loaded: list[str] = []

    def load(url: str) -> NotifyBase | None:
        loaded.append(url)
        return Apprise.instantiate(url)

    key = ("cpl", "c1")
    first = cache.get(key, "json://127.0.0.1:9/a", lambda: load("json://127.0.0.1:9/a"))
    again = cache.get(key, "json://127.0.0.1:9/a", lambda: load("json://127.0.0.1:9/a"))
    changed = cache.get(key, "json://127.0.0.1:9/b", lambda: load("json://127.0.0.1:9/b"))
    assert first is again and changed is not first
    assert loaded == ["json://127.0.0.1:9/a", "json://127.0.0.1:9/b"] and len(cache) == 1
    # Nothing of the plain URL is kept: only a keyed digest beside the service.
    assert all("127.0.0.1" not in repr(e.digest) for e in cache._entries.values())
    assert cache.get(None, "json://127.0.0.1:9/a", lambda: load("x")) is not first  # no key
    cache.clear()
    assert len(cache) == 0


def test_the_cache_entries_expire() -> None:
    cache: ClientCache[NotifyBase] = ClientCache(ttl=0.0)
    calls = 0

    def load() -> NotifyBase | None:
        nonlocal calls
        calls += 1
        return Apprise.instantiate("json://127.0.0.1:9/a")

    cache.get(("c", "1"), "json://127.0.0.1:9/a", load)
    cache.get(("c", "1"), "json://127.0.0.1:9/a", load)
    assert calls == 2


async def test_expired_services_are_dropped_without_another_send() -> None:
    # After a herd nothing may touch the cache for hours: the sweep is what frees the
    # loaded services (and the secrets in their attributes) once their TTL is over.
    cache: ClientCache[NotifyBase] = ClientCache(ttl=0.05)
    alive = []
    for i in range(3):
        service = cache.get(
            ("c", str(i)), f"json://127.0.0.1:9/{i}", partial(Apprise.instantiate, "json://x")
        )
        alive.append(weakref.ref(service))
    del service
    await asyncio.sleep(0.1)
    gc.collect()
    assert all(ref() is not None for ref in alive)  # expired, but still held
    stop = asyncio.Event()
    sweeping = asyncio.create_task(cache.sweep(stop, every=0.01))
    await asyncio.sleep(0.05)
    gc.collect()
    assert all(ref() is None for ref in alive)
    stop.set()
    await asyncio.wait_for(sweeping, 1)  # returns once stopped


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    box = HttpSink().start()
    try:
        yield box
    finally:
        box.stop()


def test_keep_alive_only_inside_a_pooled_send(sink: HttpSink) -> None:
    keepalive.install()
    url = f"http://127.0.0.1:{sink.port}/x"
    for _ in range(3):
        requests.post(url, json={}, timeout=5)
    assert sink.connections == 3  # outside a send: requests as it always was
    with keepalive.pooled():
        for _ in range(3):
            assert requests.post(url, json={}, timeout=5).status_code == 200
    assert sink.connections == 4 and sink.requests == 6  # one kept-alive connection


def test_the_environment_is_read_when_it_matters(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(keepalive.Path, "home", lambda: tmp_path)
    for name in [n for n in keepalive.os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("NETRC", raising=False)
    assert not keepalive._environment_matters()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert keepalive._environment_matters()
    monkeypatch.delenv("HTTPS_PROXY")
    (tmp_path / ".netrc").write_text("machine x login y password z\n")
    assert keepalive._environment_matters()


def test_a_deployment_sets_the_send_bounds() -> None:
    settings = Settings(
        secret_key=SecretBox.generate_key(), delivery_per_host=24, delivery_concurrency=48
    )
    limits = build(settings).delivery.channels.limits
    assert (limits.per_host, limits.overall) == (24, 48)
    assert (PER_HOST, OVERALL) == (8, 16)  # the defaults, from the settings
    with pytest.raises(ValidationError, match="TANDEM_DELIVERY_PER_HOST \\(20\\) is more than"):
        Settings(delivery_per_host=20)
    with pytest.raises(ValidationError, match="less than or equal to 64"):
        Settings(delivery_concurrency=65)


async def test_slot_waits_and_sends_in_flight_are_measured() -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    before = {n: sample(n) for n in (f"{WAIT}_count", f"{WAIT}_sum", IN_FLIGHT)}
    limits = SendLimits(per_host=1, overall=1)
    first = await limits.acquire("h:80")
    second = asyncio.create_task(limits.acquire("h:80"))
    await asyncio.sleep(0.05)
    assert sample(IN_FLIGHT) == before[IN_FLIGHT] + 1
    first()
    (await second)()
    assert sample(IN_FLIGHT) == before[IN_FLIGHT]
    assert sample(f"{WAIT}_count") == before[f"{WAIT}_count"] + 2
    assert sample(f"{WAIT}_sum") >= before[f"{WAIT}_sum"] + 0.04  # the second one waited
