"""The egress policy (shared/egress.py): address classes, exceptions, schemas, timeout caps,
the save-time host check and the send-time connect guard (against a local HTTP sink)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import threading

import apprise
import pytest

from services.notifier.channels import Channels, Outcome
from shared.egress import (
    EgressPolicy,
    EgressRefused,
    address_class,
    capped,
    join_allow,
    local_schema,
    network_hosts,
)
from shared.settings import Settings
from tandem.inbox import Fault, Inbox

STRICT = EgressPolicy()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::5", "private"),
        ("100.64.0.1", "shared"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.5", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:5", "private"),
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    reason = STRICT.refusal(ipaddress.ip_address(address), 80)
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_class(ipaddress.ip_address(address)) is None
    assert STRICT.refusal(ipaddress.ip_address(address), 443) is None


def test_host_port_and_cidr_exceptions() -> None:
    policy = EgressPolicy.parse(" 127.0.0.1:8025 , 10.0.5.0/24,[::1]:8090,fd00::/64,")
    ip = ipaddress.ip_address
    assert policy.refusal(ip("127.0.0.1"), 8025) is None
    assert policy.refusal(ip("127.0.0.1"), 6379) is not None  # only that port
    assert policy.refusal(ip("127.0.0.2"), 8025) is not None  # only that host
    assert policy.refusal(ip("10.0.5.200"), 1) is None
    assert policy.refusal(ip("10.0.6.1"), 80) is not None
    assert policy.refusal(ip("::1"), 8090) is None
    assert policy.refusal(ip("::1"), 8025) is not None
    assert policy.refusal(ip("fd00::7"), 443) is None
    assert policy.refusal(ip("::ffff:127.0.0.1"), 8025) is None  # mapped: the IPv4 rules
    assert policy.refusal(ip("::ffff:10.0.5.9"), 80) is None
    assert policy.refusal(ip("169.254.169.254"), 80) is not None


def test_a_named_exception_is_resolved() -> None:
    policy = EgressPolicy.parse("localhost:8025")
    assert policy.refusal(ipaddress.ip_address("127.0.0.1"), 8025) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.1"), 8026) is not None


@pytest.mark.parametrize("bad", ["127.0.0.1", "127.0.0.1:0", "host:port", "10.0.0.0/33", ":80"])
def test_bad_allow_entries_are_named(bad: str) -> None:
    if bad == "127.0.0.1":  # a bare address is a /32 -- fine
        assert EgressPolicy.parse(bad).networks
        return
    with pytest.raises(ValueError, match="TANDEM_CHANNEL_ALLOW"):
        EgressPolicy.parse(bad)
    with pytest.raises(ValueError, match="TANDEM_CHANNEL_ALLOW"):
        Settings(channel_allow=bad)


def test_join_allow() -> None:
    assert join_allow("a:1, b:2", ["b:2", "c:3"], None, "") == "a:1,b:2,c:3"


@pytest.mark.parametrize(
    "url", ["syslog://", "dbus://", "kde://", "qt://", "glib://", "gnome://", "windows://"]
)
def test_local_only_schemas_are_refused(url: str) -> None:
    assert "local-only" in (local_schema(url) or "")
    assert "local-only" in (asyncio.run(STRICT.check_channel(url, None)) or "")


def test_network_schemas_are_not_local() -> None:
    for url in ["json://example.com/", "rsyslog://example.com", "mailto://a:b@gmail.com"]:
        assert local_schema(url) is None


def test_timeouts_are_capped() -> None:
    assert capped(None, 4.0) == 4.0
    assert capped(1.5, 4.0) == 1.5
    assert capped(600.0, 4.0) == 4.0
    assert capped(0, 4.0) == 4.0


def test_which_host_is_checked() -> None:
    def hosts(url: str) -> list[tuple[str, int | None]]:
        return network_hosts(apprise.Apprise.instantiate(url))

    assert hosts("json://10.0.0.5/hook") == [("10.0.0.5", 80)]
    assert hosts("jsons://hooks.example.com:8443/x") == [("hooks.example.com", 8443)]
    assert hosts("mailto://user:pass@gmail.com") == [("smtp.gmail.com", 587)]
    # hosted services: the "host" is a token (170000000 would read as 10.33.34.128)
    assert hosts("tgram://170000000:AAHabc/12345") == []
    assert hosts("ntfy://mytopic") == []  # ntfy.sh
    assert hosts("ntfy://127.0.0.1:8090/topic") == [("127.0.0.1", 8090)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("json://127.0.0.1:6379/", "resolves to 127.0.0.1, a loopback address"),
        ("json://169.254.169.254/latest/meta-data", "a link-local address"),
        ("json://10.0.0.5/", "resolves to 10.0.0.5, a private address"),
        ("json://[::ffff:10.0.0.5]/", "a private address"),
        ("json://localhost:6379/", "a loopback address"),
        ("ntfy://[::1]:8090/t", "a loopback address"),
    ],
)
def test_save_time_check_names_address_and_setting(url: str, expected: str) -> None:
    reason = asyncio.run(STRICT.check_channel(url, apprise.Apprise.instantiate(url)))
    assert reason is not None and expected in reason and "TANDEM_CHANNEL_ALLOW" in reason


def test_save_time_check_passes_allowed_and_hosted() -> None:
    policy = EgressPolicy.parse("127.0.0.1:8025")
    for url in ["json://127.0.0.1:8025/sam", "tgram://170000000:AAHabc/12345", "ntfy://topic"]:
        assert asyncio.run(policy.check_channel(url, apprise.Apprise.instantiate(url))) is None


def test_save_time_unresolvable_name_is_left_to_send_time(monkeypatch) -> None:
    def fail(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "no such name")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    url = "json://nowhere.invalid/"
    assert asyncio.run(STRICT.check_channel(url, apprise.Apprise.instantiate(url))) is None


# -- the send-time guard ---------------------------------------------------------------------
@pytest.fixture
def sink():
    box = Inbox().start()
    try:
        yield box
    finally:
        box.stop()


def test_guard_refuses_connect_only_inside_a_guarded_send(sink: Inbox) -> None:
    address = ("127.0.0.1", sink.http_port)
    with STRICT.guarded() as guard, socket.socket() as sock, pytest.raises(EgressRefused):
        sock.connect(address)
    assert guard.refused == [f"127.0.0.1:{sink.http_port} (a loopback address)"]
    with socket.socket() as sock:  # outside: untouched (Kafka, Redis, ...)
        sock.connect(address)
    allowed = EgressPolicy.parse(",".join(sink.allow))
    with allowed.guarded() as guard, socket.socket() as sock:
        sock.connect(address)
    assert guard.refused == []


def test_guard_covers_udp_and_processes_and_other_threads() -> None:
    with STRICT.guarded() as guard:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
            pytest.raises(EgressRefused),
        ):
            sock.sendto(b"x", ("127.0.0.1", 9))
        with pytest.raises(EgressRefused):
            subprocess.run(["true"], check=False)
    assert len(guard.refused) == 2
    # A plain thread does not inherit the context: only sends are guarded.
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            with socket.socket() as sock:
                sock.settimeout(1)
                sock.connect_ex(("127.0.0.1", 9))
        except BaseException as exc:  # pragma: no cover - would be the failure
            errors.append(exc)

    with STRICT.guarded():
        t = threading.Thread(target=connect)
        t.start()
        t.join()
    assert errors == []


def _send(channels: Channels, url: str) -> tuple[Outcome, str]:
    result = asyncio.run(channels.send(url, title="t", body="b"))
    return result.outcome, result.error


def test_channels_refuse_a_loopback_sink_unless_allowed(sink: Inbox) -> None:
    strict = Channels(connect_timeout=1, read_timeout=2)
    outcome, error = _send(strict, sink.json_url("sam"))
    assert outcome is Outcome.FAILED and "egress policy refused" in error
    assert "TANDEM_CHANNEL_ALLOW" in error
    assert sink.attempts("sam") == 0
    allowed = Channels(
        connect_timeout=1, read_timeout=2, egress=EgressPolicy.parse(",".join(sink.allow))
    )
    assert _send(allowed, sink.json_url("sam"))[0] is Outcome.DELIVERED
    assert _send(allowed, sink.mailto_url("sam@example.com"))[0] is Outcome.DELIVERED
    assert [r.address for r in sink.received] == ["sam", "sam@example.com"]


def test_channels_check_the_address_resolved_at_send_time(sink: Inbox, monkeypatch) -> None:
    """The name resolved to somewhere public when it was saved; now it says 127.0.0.1."""
    real = socket.getaddrinfo

    def rebound(host: object, *args: object, **kwargs: object) -> object:
        return real("127.0.0.1" if host == "rebind.test" else host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    channels = Channels(connect_timeout=1, read_timeout=2, egress=EgressPolicy.parse("10.9.0.0/16"))
    outcome, error = _send(channels, f"json://rebind.test:{sink.http_port}/sam")
    assert outcome is Outcome.FAILED
    assert f"127.0.0.1:{sink.http_port} (a loopback address)" in error
    assert sink.attempts("sam") == 0


def test_channels_refuse_local_schemas(sink: Inbox) -> None:
    channels = Channels(connect_timeout=1, read_timeout=2)
    outcome, error = _send(channels, "syslog://")
    assert outcome is Outcome.FAILED and "local-only" in error


def test_a_url_cannot_raise_the_read_timeout(sink: Inbox) -> None:
    """rto=30 is capped at the deployment's 1 s: the socket gives up (a read timeout), not
    Apprise's overall deadline after the worker thread was held."""
    sink.fault("slow", Fault(delay=4, forever=True, status=200))
    channels = Channels(
        connect_timeout=1, read_timeout=1, egress=EgressPolicy.parse(",".join(sink.allow))
    )
    outcome, error = _send(channels, sink.json_url("slow") + "?rto=30&cto=30")
    assert outcome is Outcome.UNKNOWN
    assert error.startswith("no answer within the read timeout")
