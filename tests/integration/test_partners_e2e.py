"""Partners' own door over the whole suite as real processes: two partners let themselves
in, verify a channel each with the code that reaches it, get a test nudge carrying a stop
link, and that link stops one partner's nudges while the other's keep coming."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from tandem.embedded import free_port, wait_for_port
from tandem.inbox import Inbox
from tests.support.processes import SERVICES, running_services

pytestmark = pytest.mark.e2e

CODE = re.compile(r"(\d{3}) (\d{3})")
STOP = re.compile(r"Stop or pause these nudges: (\S+)")


@pytest.fixture
def suite(infra) -> Iterator[str]:
    """The three services as separate processes; yields the API base URL."""
    port = free_port()
    env = infra.env(api_port=port, log_format="console")
    with running_services(dict.fromkeys(SERVICES, env)) as procs:
        wait_for_port(port, timeout=60, proc=procs["scheduler"])
        yield f"http://127.0.0.1:{port}"


async def arrived(inbox: Inbox, address: str, count: int) -> list:
    got = await asyncio.to_thread(
        inbox.wait_for, lambda rs: len([r for r in rs if r.address == address]) >= count, 60
    )
    return [r for r in got if r.address == address]


async def verified(api: httpx.AsyncClient, inbox: Inbox, entry: dict, url: str) -> None:
    """Add ``url`` as the partner's channel and enter the code that reaches it."""
    auth = {"Authorization": f"Bearer {entry['token']}"}
    base = f"/v1/couples/{entry['couple']['id']}/partners/{entry['partner_id']}/channels"
    added = await api.post(base, json={"type": "url", "url": url, "kind": "push"}, headers=auth)
    assert added.status_code == 201, added.text
    address = url.rsplit("/", 1)[1]
    [message] = await arrived(inbox, address, 1)
    code = CODE.search(message.body)
    assert code, message
    done = await api.post(
        f"{base}/{added.json()['id']}/verify", json={"code": "".join(code.groups())}, headers=auth
    )
    assert done.status_code == 200, done.text


async def test_partners_let_themselves_in_and_a_stop_link_stops_one(infra, inbox, suite) -> None:
    async with httpx.AsyncClient(base_url=suite, timeout=30) as api:
        sam = (
            await api.post(
                "/v1/start",
                json={"couple_name": "Sam & Alex", "name": "Sam", "timezone": "Europe/Berlin"},
            )
        ).json()
        alex = (
            await api.post(
                f"/v1/invites/{sam['invite']['token']}/join",
                json={"name": "Alex", "timezone": "America/New_York"},
            )
        ).json()
        await verified(api, inbox, sam, inbox.json_url("sam-e2e"))
        await verified(api, inbox, alex, inbox.ntfy_url("alex-e2e"))
        as_sam = {"Authorization": f"Bearer {sam['token']}"}
        ritual = await api.post(
            f"/v1/couples/{sam['couple']['id']}/rituals",
            json={"kind": "evening_checkin"},
            headers=as_sam,
        )
        assert ritual.status_code == 201, ritual.text
        trigger = f"/v1/rituals/{ritual.json()['id']}/trigger"
        assert (await api.post(trigger, headers=as_sam)).status_code == 202

        to_sam = (await arrived(inbox, "sam-e2e", 2))[1]  # after the code
        to_alex = (await arrived(inbox, "alex-e2e", 2))[1]
        assert STOP.search(to_alex.body)  # ntfy: past its three buttons, in the text
        link = STOP.search(to_sam.body)
        assert link, to_sam
        async with httpx.AsyncClient(timeout=30) as phone:
            page = await phone.get(link.group(1), headers={"accept": "text/html"})
            assert page.status_code == 200 and "Pause" in page.text
            stopped = await phone.post(link.group(1), content="do=pause")
            assert stopped.status_code == 200, stopped.text

        assert (await api.post(trigger, headers=as_sam)).status_code == 202
        await arrived(inbox, "alex-e2e", 3)  # Alex still gets nudges ...
        await asyncio.sleep(2)
        assert len(inbox.to("sam-e2e")) == 2  # ... Sam no longer does
