"""Partners' own door over a running scheduler (real broker, real Redis) with the local
inbox as both phones: start, invite, join, verify with the codes that arrive, and nothing
scheduled until both verified; then the refusals (used and expired invites, five wrong
codes, one partner on the other's channel) and the stop links."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

from services.notifier.channels import Channels
from services.scheduler.access_store import AccessStore
from services.scheduler.api import deps
from services.scheduler.channel_forms import with_unsubscribe
from services.scheduler.service import Scheduler
from services.scheduler.store import SchedulerStore
from shared.egress import policy as egress_policy
from shared.links import stop_link
from shared.redis import Keys, make_redis
from shared.secrets import SecretBox
from shared.vault import Vault
from tandem.embedded import free_port
from tandem.inbox import Inbox, Received
from tests.support.infra import Infra
from tests.support.scheduler import ADMIN, couple_body, running_scheduler

CODE = re.compile(r"(\d{3}) (\d{3})")


@pytest.fixture(scope="module")
async def door(
    module_infra: Infra, module_inbox: Inbox
) -> AsyncIterator[tuple[Scheduler, httpx.AsyncClient]]:
    """A scheduler whose channel forms point at the local inbox: ntfy server, SMTP relay
    and SMS gateway."""
    box = module_inbox
    settings = module_infra.settings(
        ntfy_server=f"http://127.0.0.1:{box.http_port}",
        smtp_relay=box.mailto_url("{address}").replace("%7Baddress%7D", "{address}"),
        sms_gateway=box.sms_url("{number}").replace("%7Bnumber%7D", "{number}"),
        delivery_connect_timeout=2.0,
        delivery_read_timeout=4.0,
    )
    async with running_scheduler(settings) as pair:
        yield pair


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def code_for(inbox: Inbox, address: str, skip: int = 0) -> str:
    """The code in message number ``skip`` (0: the first) to ``address``."""
    got = await asyncio.to_thread(
        inbox.wait_for, lambda rs: len([r for r in rs if r.address == address]) > skip, 30
    )
    message: Received = [r for r in got if r.address == address][skip]
    found = CODE.search(message.body)
    assert found and message.title == "Your Tandem code", message
    return "".join(found.groups())


async def started(api: httpx.AsyncClient, tag: str) -> dict[str, Any]:
    reply = await api.post(
        "/v1/start",
        json={"couple_name": f"Sam & Alex {tag}", "name": "Sam", "timezone": "Europe/Berlin"},
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


async def joined(api: httpx.AsyncClient, invite: str) -> dict[str, Any]:
    reply = await api.post(
        f"/v1/invites/{invite}/join", json={"name": "Alex", "timezone": "America/New_York"}
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


async def add_channel(
    api: httpx.AsyncClient, entry: dict[str, Any], form: dict[str, Any]
) -> dict[str, Any]:
    couple_id, partner_id = entry["couple"]["id"], entry["partner_id"]
    reply = await api.post(
        f"/v1/couples/{couple_id}/partners/{partner_id}/channels",
        json=form,
        headers=bearer(entry["token"]),
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["state"] == "pending" and reply.json()["code_sent"]
    return dict(reply.json())


async def verify(
    api: httpx.AsyncClient, entry: dict[str, Any], channel_id: str, code: str
) -> httpx.Response:
    couple_id, partner_id = entry["couple"]["id"], entry["partner_id"]
    return await api.post(
        f"/v1/couples/{couple_id}/partners/{partner_id}/channels/{channel_id}/verify",
        json={"code": code},
        headers=bearer(entry["token"]),
    )


async def test_start_invite_join_verify_then_scheduled(door, module_inbox) -> None:
    scheduler, api = door
    sam = await started(api, "flow")
    couple_id = sam["couple"]["id"]
    assert sam["invite"]["url"].endswith("/join/" + sam["invite"]["token"])
    as_sam = bearer(sam["token"])
    # Rituals can be chosen at once, but nothing is scheduled and the couple stays paused.
    ritual = await api.post(
        f"/v1/couples/{couple_id}/rituals", json={"kind": "evening_checkin"}, headers=as_sam
    )
    assert ritual.status_code == 201, ritual.text
    upcoming = f"/v1/rituals/{ritual.json()['id']}/upcoming"
    assert (await api.get(upcoming, headers=as_sam)).json()["occurrences"] == []
    track = [ritual.json()["id"]]  # a together ritual's one track
    assert await scheduler.store.due_of(track) == [None]
    unpause = await api.patch(f"/v1/couples/{couple_id}", json={"paused": False}, headers=as_sam)
    assert unpause.status_code == 409 and "joins" in unpause.json()["detail"]

    peek = await api.get(f"/v1/invites/{sam['invite']['token']}")
    assert peek.json()["couple_name"] == "Sam & Alex flow" and peek.json()["invited_by"] == "Sam"
    alex = await joined(api, sam["invite"]["token"])
    assert alex["couple"]["id"] == couple_id and alex["partner_id"] != sam["partner_id"]

    topic = "sam-flow"
    sam_push = await add_channel(api, sam, {"type": "ntfy", "topic": topic})
    alex_mail = await add_channel(api, alex, {"type": "email", "address": "alex@example.com"})
    vault = scheduler.store.vault
    assert await vault.channel_url(couple_id, sam_push["id"]) is None  # pending: unused
    assert (await verify(api, sam, sam_push["id"], await code_for(module_inbox, topic))).is_success
    assert await vault.channel_url(couple_id, sam_push["id"]) is not None
    couple = (await api.get(f"/v1/couples/{couple_id}", headers=as_sam)).json()
    assert couple["status"] == "waiting_for_channels" and couple["paused"]
    assert (await api.get(upcoming, headers=as_sam)).json()["occurrences"] == []
    assert await scheduler.store.due_of(track) == [None]

    code = await code_for(module_inbox, "alex@example.com")
    done = await verify(api, alex, alex_mail["id"], code)
    assert done.status_code == 200 and done.json()["couple_status"] == "active", done.text
    couple = (await api.get(f"/v1/couples/{couple_id}", headers=bearer(alex["token"]))).json()
    assert couple["status"] == "active" and not couple["paused"]
    assert (await api.get(upcoming, headers=as_sam)).json()["occurrences"]  # now it fires
    assert await scheduler.store.due_of(track) != [None]
    # Alex sees Sam without Sam's channels; the e-mail channel carries List-Unsubscribe.
    by_id = {p["id"]: p for p in couple["partners"]}
    assert by_id[sam["partner_id"]]["channels"] == []
    assert [c["id"] for c in by_id[alex["partner_id"]]["channels"]] == [alex_mail["id"]]
    mail_url = await vault.channel_url(couple_id, alex_mail["id"])
    assert mail_url is not None and "+List-Unsubscribe=" in mail_url
    # A test nudge now fires; each partner answers only as themselves.
    fired = await api.post(f"/v1/rituals/{ritual.json()['id']}/trigger", headers=as_sam)
    assert fired.status_code == 202, fired.text
    ack = f"/v1/occurrences/{fired.json()['occurrence_id']}/ack"
    as_other = {"action": "done", "partner_id": alex["partner_id"]}
    assert (await api.post(ack, json=as_other, headers=as_sam)).status_code == 403
    mine = await api.post(ack, json={"action": "done"}, headers=as_sam)
    assert mine.status_code == 200, mine.text


async def test_a_pause_chosen_before_activation_is_kept(door, module_inbox) -> None:
    """Activation lifts only the wait for the partner and channels: a couple a partner
    paused on purpose meanwhile stays paused until resumed."""
    scheduler, api = door
    sam = await started(api, "kept")
    couple_id = sam["couple"]["id"]
    as_sam = bearer(sam["token"])
    ritual = await api.post(
        f"/v1/couples/{couple_id}/rituals", json={"kind": "evening_checkin"}, headers=as_sam
    )
    paused = await api.patch(f"/v1/couples/{couple_id}", json={"paused": True}, headers=as_sam)
    assert paused.status_code == 200, paused.text
    alex = await joined(api, sam["invite"]["token"])
    for entry, topic in ((sam, "sam-kept"), (alex, "alex-kept")):
        channel = await add_channel(api, entry, {"type": "ntfy", "topic": topic})
        done = await verify(api, entry, channel["id"], await code_for(module_inbox, topic))
        assert done.is_success, done.text
    couple = (await api.get(f"/v1/couples/{couple_id}", headers=as_sam)).json()
    assert couple["status"] == "active" and couple["paused"]
    track = [ritual.json()["id"]]
    assert await scheduler.store.due_of(track) == [None]
    resumed = await api.patch(f"/v1/couples/{couple_id}", json={"paused": False}, headers=as_sam)
    assert resumed.status_code == 200 and not resumed.json()["paused"], resumed.text
    assert await scheduler.store.due_of(track) != [None]


async def test_used_and_expired_invites_are_refused(door) -> None:
    scheduler, api = door
    sam = await started(api, "invites")
    await joined(api, sam["invite"]["token"])
    again = await api.post(
        f"/v1/invites/{sam['invite']['token']}/join", json={"name": "Eve", "timezone": "UTC"}
    )
    assert again.status_code == 410 and "already used" in again.json()["detail"]

    other = await started(api, "late")
    later = datetime.now(UTC) + timedelta(days=8)
    scheduler.api.dependency_overrides[deps.now] = lambda: later
    try:
        late = await api.post(
            f"/v1/invites/{other['invite']['token']}/join",
            json={"name": "Alex", "timezone": "UTC"},
        )
    finally:
        scheduler.api.dependency_overrides.pop(deps.now)
    assert late.status_code == 410 and "expired" in late.json()["detail"]
    couple = await api.get(f"/v1/couples/{other['couple']['id']}", headers=bearer(other["token"]))
    assert couple.json()["status"] == "waiting_for_partner"  # nothing changed
    unknown = await api.get("/v1/invites/inv_nonsense")
    assert unknown.status_code == 404 and "new one" in unknown.json()["detail"]


async def test_five_wrong_codes_void_the_code(door, module_inbox) -> None:
    scheduler, api = door
    sam = await started(api, "codes")
    channel = await add_channel(api, sam, {"type": "ntfy", "topic": "sam-codes"})
    right = await code_for(module_inbox, "sam-codes")
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for left in (4, 3, 2, 1):
        reply = await verify(api, sam, channel["id"], wrong)
        assert reply.status_code == 422, reply.text
        error = reply.json()["detail"][0]
        assert error["loc"] == ["body", "code"] and f"{left} attempts left" in error["msg"]
    last = await verify(api, sam, channel["id"], wrong)
    assert "last attempt" in last.json()["detail"][0]["msg"]
    void = await verify(api, sam, channel["id"], right)  # too late: the code is gone
    assert void.status_code == 422 and "send a new code" in void.json()["detail"][0]["msg"]
    assert await scheduler.store.vault.channel_url(sam["couple"]["id"], channel["id"]) is None
    # A new code works.
    path = f"/v1/couples/{sam['couple']['id']}/partners/{sam['partner_id']}/channels"
    resend = await api.post(f"{path}/{channel['id']}/code", headers=bearer(sam["token"]))
    assert resend.status_code == 202, resend.text
    fresh = await code_for(module_inbox, "sam-codes", skip=1)
    assert (await verify(api, sam, channel["id"], fresh)).json()["state"] == "active"


async def test_a_partner_cannot_touch_the_other_partners_channel(door, module_inbox) -> None:
    _, api = door
    sam = await started(api, "fence")
    alex = await joined(api, sam["invite"]["token"])
    channel = await add_channel(api, sam, {"type": "ntfy", "topic": "sam-fence"})
    code = await code_for(module_inbox, "sam-fence")
    couple_id, sam_id = sam["couple"]["id"], sam["partner_id"]
    path = f"/v1/couples/{couple_id}/partners/{sam_id}"
    as_alex = bearer(alex["token"])
    attempts = [
        api.post(f"{path}/channels/{channel['id']}/verify", json={"code": code}, headers=as_alex),
        api.get(f"{path}/channels", headers=as_alex),
        api.post(f"{path}/channels/{channel['id']}/pause", headers=as_alex),
        api.delete(f"{path}/channels/{channel['id']}", headers=as_alex),
        api.patch(path, json={"name": "Mallory"}, headers=as_alex),
        api.post(f"{path}/channels", json={"type": "ntfy", "topic": "x"}, headers=as_alex),
        api.post(f"/v1/couples/{couple_id}/token", headers=as_alex),  # no couple token
    ]
    for reply in await asyncio.gather(*attempts):
        assert reply.status_code == 403, reply.text
    # Nothing changed: Sam's channel is still pending and Sam's code still works.
    mine = await api.get(f"{path}/channels", headers=bearer(sam["token"]))
    assert [c["state"] for c in mine.json()] == ["pending"]
    assert (await verify(api, sam, channel["id"], code)).json()["state"] == "active"
    couple = (await api.get(f"/v1/couples/{couple_id}", headers=bearer(sam["token"]))).json()
    assert couple["partners"][0]["name"] == "Sam"
    # Another couple's partner token sees nothing of this couple.
    stranger = await started(api, "stranger")
    other = await api.get(f"/v1/couples/{couple_id}", headers=bearer(stranger["token"]))
    assert other.status_code == 404


async def test_stop_links_pause_a_channel_and_leave(door, module_inbox) -> None:
    scheduler, api = door
    settings = scheduler.settings
    key = settings.require_secret_key()
    sam = await started(api, "stop")
    alex = await joined(api, sam["invite"]["token"])
    push = await add_channel(api, sam, {"type": "ntfy", "topic": "sam-stop"})
    await verify(api, sam, push["id"], await code_for(module_inbox, "sam-stop"))
    mail = await add_channel(api, alex, {"type": "email", "address": "alex-stop@example.com"})
    await verify(api, alex, mail["id"], await code_for(module_inbox, "alex-stop@example.com"))
    couple_id, vault = sam["couple"]["id"], scheduler.store.vault

    # The link every nudge carries: a page (GET changes nothing), then pause by POST.
    link = stop_link(key, settings.api_url, couple_id, sam["partner_id"])
    path = urlsplit(link).path
    page = await api.get(path, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "Leave the couple" in page.text
    assert await vault.channel_url(couple_id, push["id"]) is not None
    paused = await api.post(path, content=f"do=pause&channel={push['id']}")
    assert paused.status_code == 200 and paused.json()["done"] == "pause", paused.text
    assert await vault.channel_url(couple_id, push["id"]) is None
    mine = await api.get(
        f"/v1/couples/{couple_id}/partners/{sam['partner_id']}/channels",
        headers=bearer(sam["token"]),
    )
    assert [c["state"] for c in mine.json()] == ["paused"]

    # E-mail's List-Unsubscribe: a one-click POST pauses that address.
    mail_url = await vault.channel_url(couple_id, mail["id"])
    assert mail_url is not None
    # ("+" starts a header's name, so the query is split by hand: parse_qs reads it as " ")
    query = dict(arg.split("=", 1) for arg in urlsplit(mail_url).query.split("&"))
    header = query["+List-Unsubscribe"]
    one_click = urlsplit(unquote(header).strip("<>")).path
    reply = await api.post(one_click, content="List-Unsubscribe=One-Click")
    assert reply.status_code == 200, reply.text
    assert await vault.channel_url(couple_id, mail["id"]) is None

    # Leaving: the couple is paused for good and the leaver's token stops working.
    left = await api.post(path, content="do=leave")
    assert left.status_code == 200 and "left" in left.json()["detail"]
    assert (await api.get("/v1/me", headers=bearer(sam["token"]))).status_code == 401
    couple = (await api.get(f"/v1/couples/{couple_id}", headers=bearer(alex["token"]))).json()
    assert couple["status"] == "left" and couple["paused"]
    again = await api.patch(
        f"/v1/couples/{couple_id}", json={"paused": False}, headers=bearer(alex["token"])
    )
    assert again.status_code == 409
    forged = await api.post(path[:-3] + "AAA", content="do=leave")
    assert forged.status_code == 403


async def test_a_stop_link_works_for_an_integrators_couple_too(door, module_inbox) -> None:
    """A couple the admin created has no invite or codes, but its nudges carry stop links:
    pausing one channel keeps the others in their fallback order."""
    scheduler, api = door
    created = await api.post("/v1/couples", json=couple_body(module_inbox), headers=ADMIN)
    couple = created.json()
    sam = couple["partners"][0]
    first, second = (c["id"] for c in sam["channels"])
    link = stop_link(scheduler.settings.require_secret_key(), "http://x", couple["id"], sam["id"])
    path = urlsplit(link).path
    page = (await api.get(path)).json()
    assert [c["id"] for c in page["channels"]] == [first, second]
    assert (await api.post(path, content=f"do=pause&channel={first}")).status_code == 200
    after = (await api.get(f"/v1/couples/{couple['id']}", headers=ADMIN)).json()
    assert [c["id"] for c in after["partners"][0]["channels"]] == [second]
    assert after["status"] == "active" and not after["paused"]
    assert await scheduler.store.vault.channel_url(couple["id"], first) is None
    assert await scheduler.store.vault.channel_url(couple["id"], second) is not None


class _Capture:
    """An SMTP sink keeping each message's raw headers."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(message_from_bytes(content))
        return "250 OK"


async def test_list_unsubscribe_headers_reach_the_mail_server() -> None:
    """Sent as the notifier sends (its Channels, egress guard on), an e-mail channel's URL
    puts ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` on the wire."""
    capture = _Capture()
    port = free_port()
    controller = Controller(capture, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        stop = "http://127.0.0.1:8080/s/abc.def"
        relay = f"mailto://127.0.0.1:{port}?to=alex@example.com&from=t@example.com&mode=insecure"
        channels = Channels(
            connect_timeout=2, read_timeout=4, egress=egress_policy(f"127.0.0.1:{port}")
        )
        sent = await channels.send(with_unsubscribe(relay, stop), title="Hug", body="Now?")
        assert sent.ok, sent.error
    finally:
        controller.stop()
    [message] = capture.messages
    assert message["List-Unsubscribe"] == f"<{stop}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_key_rotation_covers_pending_and_paused_channels(module_infra, module_inbox) -> None:
    """Channels outside the vault (pending, paused) are re-encrypted by the same rotation."""
    key_a, key_b = SecretBox.generate_key(), SecretBox.generate_key()
    prefix = f"{module_infra.prefix}-rot"
    async with running_scheduler(module_infra.settings(secret_key=key_a, redis_prefix=prefix)) as (
        _,
        api,
    ):
        sam = await started(api, "rotation")
        url = module_inbox.json_url("sam-rotation")
        await add_channel(api, sam, {"type": "url", "url": url, "kind": "push"})
    redis = make_redis(module_infra.settings(redis_prefix=prefix))
    try:
        keys = Keys(prefix)

        def records(box: SecretBox) -> AccessStore:
            return AccessStore(SchedulerStore(redis, keys, Vault(redis, keys, box)))

        done = await records(SecretBox(key_b, [key_a])).rotate()
        assert (done.rotated, done.unreadable) == (1, 0)
        again = await records(SecretBox(key_b, [key_a])).rotate()
        assert (again.rotated, again.current) == (0, 1)
        only_b = records(SecretBox(key_b))
        [record] = await only_b.channels(sam["couple"]["id"])
        assert only_b.unseal(record) == url
    finally:
        await redis.aclose()


async def test_channel_form_helpers(door) -> None:
    _, api = door
    forms = (await api.get("/v1/channel-forms")).json()
    assert forms["email"] and forms["sms"] and not forms["signal"] and forms["url"]
    topic = forms["ntfy"]["suggested_topic"]
    assert forms["ntfy"]["subscribe_link"].endswith(f"/{topic}?secure=false")
    qr = await api.get("/v1/channel-forms/ntfy-qr.svg", params={"topic": topic})
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
    assert qr.text.startswith("<svg")
    bad = await api.get("/v1/channel-forms/ntfy-qr.svg", params={"topic": "no/slashes"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "topic"]
    sam = await started(api, "forms")
    path = f"/v1/couples/{sam['couple']['id']}/partners/{sam['partner_id']}/channels"
    refused = await api.post(
        path, json={"type": "signal", "number": "+4915112345678"}, headers=bearer(sam["token"])
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["detail"][0]
    assert error["loc"] == ["body", "number"] and "choose another kind" in error["msg"]
    local = await api.post(  # the egress policy: no channel to this machine's other ports
        path, json={"type": "url", "url": "json://127.0.0.1:1/x"}, headers=bearer(sam["token"])
    )
    assert local.status_code == 422 and local.json()["detail"][0]["loc"] == ["body", "url"]


async def test_starting_couples_is_rate_limited_per_client_address(module_infra) -> None:
    settings = module_infra.settings(
        rate_limit="3/minute", redis_prefix=f"{module_infra.prefix}-rl"
    )
    async with running_scheduler(settings) as (_, api):
        body = {"couple_name": "A & B", "name": "A", "timezone": "UTC"}
        answers = [(await api.post("/v1/start", json=body)).status_code for _ in range(4)]
    assert answers == [201, 201, 201, 429]
