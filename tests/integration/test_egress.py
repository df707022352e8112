"""The egress policy over the real stack: the API refuses channels that reach the deployment's
own network or act locally (422, naming the address and the setting), and the notifier
refuses, on the address resolved when it sends, a channel whose name now points at loopback
-- while an allowed sink still receives."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tandem.inbox import Inbox
from tandem.notifier_harness import (
    Couple,
    Partner,
    make_nudge,
    publish_nudges,
    running_notifier,
    store_couple,
    watching,
)
from tests.support.infra import Infra
from tests.support.notifier import fast, received
from tests.support.scheduler import ADMIN, couple_body, running_scheduler

REBIND = "rebind.test"  # a name whose answer the test controls


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """``socket.getaddrinfo`` in this process, with the names in the yielded dict answered
    by the addresses they map to (change them mid-test: DNS changed)."""
    answers: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real(answers.get(host, host), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield answers


@pytest.fixture
def stranger() -> Iterator[Inbox]:
    """A second local sink that nothing allows: what a refused channel would have reached."""
    box = Inbox().start()
    try:
        yield box
    finally:
        box.stop()


def with_channel(body: dict[str, Any], url: str, kind: str = "push") -> dict[str, Any]:
    body["partners"][1]["channels"].insert(0, {"url": url, "kind": kind})
    return body


async def test_api_refuses_channels_outside_the_policy(
    infra: Infra, inbox: Inbox, resolver: dict[str, str]
) -> None:
    redis_port = urlsplit(infra.redis_url).port
    refused = {
        f"json://127.0.0.1:{redis_port}/": "resolves to 127.0.0.1, a loopback address",
        "json://169.254.169.254/latest/meta-data": "169.254.169.254, a link-local address",
        "json://10.0.0.5/": "resolves to 10.0.0.5, a private address",
        "json://[fd00::5]:8080/": "resolves to fd00::5, a private address",
        "json://[::1]:8080/": "resolves to ::1, a loopback address",
        f"ntfy://localhost:{redis_port}/topic": "a loopback address",
        "syslog://": "syslog:// acts on the server running Tandem (a local-only schema)",
    }
    async with running_scheduler(infra.settings()) as (_, api):
        for url, reason in refused.items():
            body = with_channel(couple_body(inbox), url)
            answer = await api.post("/v1/couples", json=body, headers=ADMIN)
            assert answer.status_code == 422, url
            (error,) = answer.json()["detail"]
            assert error["loc"] == ["body", "partners", 1, "channels", 0, "url"]
            assert reason in error["msg"], error
            # an address can be allowed by the operator; a local-only schema cannot
            assert ("TANDEM_CHANNEL_ALLOW" in error["msg"]) == ("://" not in reason), error
        # The inbox's own sinks are allowed (the fixture's inbox.allow) ...
        ok = await api.post("/v1/couples", json=couple_body(inbox), headers=ADMIN)
        assert ok.status_code == 201, ok.text
        # ... and a name that resolves somewhere public when saved is accepted.
        resolver[REBIND] = "93.184.216.34"
        url = f"json://{REBIND}:{inbox.http_port}/sam"
        body = with_channel(couple_body(inbox), url)
        ok = await api.post("/v1/couples", json=body, headers=ADMIN)
        assert ok.status_code == 201, ok.text


async def test_api_honours_channel_allow(infra: Infra, inbox: Inbox) -> None:
    settings = infra.settings(channel_allow=",".join([*inbox.allow, "10.0.5.0/24"]))
    async with running_scheduler(settings) as (_, api):
        body = with_channel(couple_body(inbox), "json://10.0.5.7/hook")
        assert (await api.post("/v1/couples", json=body, headers=ADMIN)).status_code == 201
        body = with_channel(couple_body(inbox), "json://10.0.6.7/hook")
        answer = await api.post("/v1/couples", json=body, headers=ADMIN)
        assert answer.status_code == 422
        assert "10.0.6.7, a private address" in answer.json()["detail"][0]["msg"]


async def test_notifier_refuses_a_name_that_resolves_to_loopback_now(
    infra: Infra, inbox: Inbox, stranger: Inbox, resolver: dict[str, str]
) -> None:
    """Saved while the name was public; at send time it answers 127.0.0.1 (a rebinding), on
    a port nothing allows. The notifier connects to nothing there; the allowed sink still
    gets its nudge."""
    resolver[REBIND] = "127.0.0.1"
    settings = fast(infra)
    couple = Couple(
        id="cpl_egress",
        partners=[
            Partner("sam", [("c_sam_push", "push", f"json://{REBIND}:{stranger.http_port}/sam")]),
            Partner("alex", [("c_alex_push", "push", inbox.ntfy_url("alex-egress"))]),
        ],
    )
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, make_nudge(couple))
        await received(inbox, lambda r: any(x.address == "alex-egress" for x in r))
        await out.wait_for(lambda o: any(f.final for f in o.failed) and len(o.delivered) >= 1)
    assert [d.partner_id for d in out.delivered] == ["alex"]
    assert stranger.received == [] and stranger.attempts("sam") == 0
    (final,) = [f for f in out.failed if f.final]
    assert final.partner_id == "sam" and len(final.attempts) == settings.delivery_max_attempts
    for attempt in final.attempts:
        assert "egress policy refused" in attempt.error, attempt
        assert "a loopback address" in attempt.error and "TANDEM_CHANNEL_ALLOW" in attempt.error


def test_the_inbox_allows_exactly_its_sinks(infra: Infra, inbox: Inbox) -> None:
    """``inbox.allow`` is exactly its sinks: the HTTP and SMTP ports, nothing else."""
    assert inbox.allow == [f"127.0.0.1:{inbox.http_port}", f"127.0.0.1:{inbox.smtp_port}"]
    settings = infra.settings()
    for entry in inbox.allow:
        assert entry in settings.channel_allow.split(",")
    assert "127.0.0.0/8" not in settings.channel_allow
