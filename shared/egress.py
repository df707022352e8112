"""Where a channel may send: the egress policy of the API (when a channel is saved) and of the
notifier (when it sends).

A channel URL is typed by a partner, yet the notifier requests it from inside the
deployment. Left alone, ``json://169.254.169.254/latest/meta-data``,
``json://127.0.0.1:6379/`` (our own Redis), ``json://10.0.0.5/`` or ``syslog://`` would turn
the notifier into a proxy onto the deployment's own network, or make it act on its own host.
So, by default:

- **Addresses.** A channel may not reach a loopback, link-local (cloud metadata lives at
  169.254.169.254), private (RFC 1918, fc00::/7), shared (100.64.0.0/10), multicast, reserved
  or unspecified address (``0.0.0.0`` / ``::`` reach the host itself), nor anything else
  Python's :mod:`ipaddress` does not call global -- IPv4 and IPv6 alike; an IPv4-mapped
  (``::ffff:10.0.0.5``) or NAT64 (``64:ff9b::a00:5``) IPv6 address is judged by the IPv4
  address inside it. Unix-domain and other non-IP sockets are refused too.
- **Schemas.** :data:`LOCAL_SCHEMAS` are Apprise's plugins that do not send over a network
  at all but act on the machine running the notifier: desktop notifications over D-Bus
  (``dbus``, ``kde``, ``qt``, ``glib``, ``gio``, ``gnome``), ``macosx`` (runs
  ``terminal-notifier``), ``windows`` (the Win32 API), ``syslog`` (the local syslog
  socket; the network one is ``rsyslog``, which this policy checks like any other
  address) and ``blink1`` (a USB LED). None can reach a partner's phone; all are refused.
- **Timeouts.** Apprise honours ``cto=`` / ``rto=`` in a URL; :func:`capped` keeps them at
  most the deployment's ``TANDEM_DELIVERY_CONNECT_TIMEOUT`` / ``_READ_TIMEOUT``, so a URL
  cannot hold a worker thread (and the in-flight lease sized from those) longer.

Exceptions are named in one setting, ``TANDEM_CHANNEL_ALLOW``: comma-separated ``host:port``
entries (``127.0.0.1:8025``, ``[::1]:8025``, ``mail.internal:25`` -- a name is resolved when
an address is checked against it) and CIDR ranges (``10.0.5.0/24``; a bare address is a
/32 or /128). The API and the notifier read the same setting.

**When it is checked.** (1) When a channel is saved, the API resolves the URL's network host
(with a short timeout, off the event loop) and answers 422 naming the address and its class
(:func:`check_channel`). Which host: a plugin whose every URL template has a ``{host}``
takes the partner's server (``json://``, ``ntfy://host/topic``, ``signal://``); e-mail
connects to its ``smtp_host``; a plugin without ``{host}`` is a hosted service whose
endpoint is Apprise's own fixed public API (``tgram://token/chat``: the "host" is a bot
token, which ``getaddrinfo`` would happily read as an IPv4 number) and is skipped; a plugin
where the host is optional (``ntfy://topic`` is ntfy.sh) is checked only when the host
looks like one (an IP literal, a dotted name, ``localhost`` or a port). A name that does
not resolve now is accepted: the send-time check decides.

(2) When the notifier sends, on the address actually connected to, because DNS can change
between save and send (or be made to: DNS rebinding). Apprise's plugins open their own
sockets (requests/urllib3 for HTTP, smtplib for e-mail, paho for MQTT, raw sockets for
rsyslog), so we do not pre-resolve the URL -- a check on a name resolved a moment before
the plugin resolves it again leaves exactly the rebinding window we want closed. Instead
:func:`guarded` installs (once per process) a :func:`sys.addaudithook` hook on CPython's
``socket.connect`` / ``socket.sendto`` / ``socket.sendmsg`` audit events, which fire with
the numeric address every library ends up passing to the kernel, and refuses those outside
the policy by raising :class:`EgressRefused` (an ``OSError``, so urllib3 tries the next
address and the plugin reports an ordinary connection failure). The hook is scoped by a
:class:`contextvars.ContextVar` set only around :meth:`Channels.send`'s Apprise call:
Apprise 2.x's ``async_notify`` runs each plugin's ``send()`` in its shared thread pool via
``contextvars.copy_context().run`` (``plugins/base.py``, ``apprise.py``
``submit_with_context``), so the guard follows the send into the worker thread, and nothing
else in the process (Kafka, Redis, the ops server) is affected. In a guarded send the hook
also refuses starting processes (``subprocess.Popen``, ``os.system``, ``os.exec*``,
``os.posix_spawn``, ``os.spawn*``) -- a second fence behind :data:`LOCAL_SCHEMAS` for
plugins (including an operator's own ``TANDEM_PLUGINS_DIR`` ones) that act locally.

Limits, said plainly: a thread a plugin starts itself does not inherit the context, so its
sockets are not guarded (no bundled network plugin does this for its send); C extensions
that open sockets without Python's socket module (D-Bus bindings, hidapi) bypass audit
hooks -- hence the schema list; an HTTP(S) proxy from the environment is what the plugin
connects to, so a proxy on a private address must itself be allowed. An audit hook cannot
be removed; outside a guarded send it costs one set lookup per audit event.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "TANDEM_CHANNEL_ALLOW"
ASK = f"ask the operator to allow it ({SETTING})"

# Apprise schemas whose plugin acts on the notifier's own machine instead of a network
# service (see the module docstring).
LOCAL_SCHEMAS = frozenset(
    {"dbus", "kde", "qt", "glib", "gio", "gnome", "macosx", "windows", "syslog", "blink1"}
)

# How long the API waits for DNS when a channel is saved.
RESOLVE_TIMEOUT_SECONDS = 2.0

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class EgressRefused(PermissionError):
    """A guarded send tried to reach somewhere the policy refuses."""


def local_schema(url: str) -> str | None:
    """The reason ``url``'s schema is refused, or None."""
    schema = url.split("://", 1)[0].strip().lower() if "://" in url else ""
    if schema in LOCAL_SCHEMAS:
        return (
            f"{schema}:// acts on the server running Tandem (a local-only schema), "
            "not on a partner's device"
        )
    return None


def address_class(ip: IPAddress) -> str | None:
    """What makes ``ip`` off-limits by default ("a private address"), or None if public."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None
        )
        if inner is not None:
            return address_class(inner)
    if ip.is_unspecified:
        return "an unspecified address (it reaches this host)"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a non-public address"
    return None


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """The default refusals minus the ``TANDEM_CHANNEL_ALLOW`` exceptions."""

    networks: tuple[IPNetwork, ...] = ()
    # (IP literal or lower-case name, port)
    endpoints: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, allow: str) -> EgressPolicy:
        """The policy for a ``TANDEM_CHANNEL_ALLOW`` value; ValueError naming a bad entry."""
        networks: list[IPNetwork] = []
        endpoints: set[tuple[str, int]] = set()
        for raw in allow.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"{SETTING}: {entry!r} is neither host:port nor a CIDR range "
                    "(e.g. 127.0.0.1:8025,[::1]:8025,10.0.5.0/24)"
                )
            host = host.strip("[]").lower()
            literal = _ip(host)
            endpoints.add((str(literal) if literal else host, int(port)))
        return cls(tuple(networks), frozenset(endpoints))

    def allow_entries(self) -> list[str]:
        """The exceptions, in ``TANDEM_CHANNEL_ALLOW`` notation."""
        return [str(n) for n in self.networks] + [
            f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in sorted(self.endpoints)
        ]

    def _allowed(self, ip: IPAddress, port: int | None) -> bool:
        if any(ip.version == n.version and ip in n for n in self.networks):
            return True
        if port is None:
            return False
        if (str(ip), port) in self.endpoints:
            return True
        for host, allowed_port in self.endpoints:
            if allowed_port == port and _ip(host) is None and ip in _resolve_quiet(host, port):
                return True
        return False

    def refusal(self, ip: IPAddress, port: int | None) -> str | None:
        """Why ``ip`` (at ``port``) is off-limits, e.g. "a private address"; None if allowed."""
        if self._allowed(ip, port):
            return None
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if mapped is not None and self._allowed(mapped, port):
            return None
        return address_class(ip)

    # -- when a channel is saved ---------------------------------------------------------
    async def check_channel(self, url: str, service: Any) -> str | None:
        """Why the channel ``url`` (Apprise's ``service`` for it, or None if Apprise cannot
        load it) may not be saved, or None. Resolves its host off the event loop."""
        reason = local_schema(url)
        if reason or service is None or isinstance(service, bool):
            return reason
        for host, port in network_hosts(service):
            literal = _ip(host)
            if literal is not None:
                addresses: list[IPAddress] = [literal]
            else:
                try:
                    addresses = await asyncio.wait_for(
                        _resolve_async(host, port), RESOLVE_TIMEOUT_SECONDS
                    )
                except (TimeoutError, OSError, UnicodeError):
                    continue  # unresolvable now: the send-time guard decides
            for ip in addresses:
                kind = self.refusal(ip, port)
                if kind:
                    return f"resolves to {ip}, {kind}; {ASK}"
        return None

    # -- when the notifier sends ----------------------------------------------------------
    @contextmanager
    def guarded(self) -> Iterator[Guard]:
        """Refuse, in this context (and the Apprise worker threads it is copied into), any
        connection outside the policy; the refusals are kept in the yielded guard."""
        _install_hook()
        guard = Guard(self)
        token = _ACTIVE.set(guard)
        try:
            yield guard
        finally:
            _ACTIVE.reset(token)


@lru_cache(maxsize=16)
def policy(allow: str) -> EgressPolicy:
    """The (cached) policy for a ``TANDEM_CHANNEL_ALLOW`` value."""
    return EgressPolicy.parse(allow)


def join_allow(*parts: str | list[str] | None) -> str:
    """Comma-join ``TANDEM_CHANNEL_ALLOW`` values and entry lists, dropping duplicates."""
    entries: list[str] = []
    for part in parts:
        items = part.split(",") if isinstance(part, str) else (part or [])
        entries += [e.strip() for e in items if e.strip()]
    return ",".join(dict.fromkeys(entries))


def network_hosts(service: Any) -> list[tuple[str, int | None]]:
    """The (host, port) pairs the Apprise ``service`` will connect to that the URL names;
    empty for a hosted service whose endpoint is Apprise's own (see the module docstring)."""
    smtp_host = getattr(service, "smtp_host", None)
    port = getattr(service, "port", None)
    if isinstance(smtp_host, str) and smtp_host:  # e-mail: the SMTP server, not the domain
        return [(smtp_host, port)]
    host = getattr(service, "host", None)
    if not isinstance(host, str) or not host:
        return []
    templates = [str(t) for t in getattr(service, "templates", ())]
    with_host = [t for t in templates if "{host}" in t]
    if not with_host:
        return []
    if len(with_host) < len(templates):  # the host is optional: a token in its place?
        looks_like_host = _ip(host) or port or "." in host or host.lower() == "localhost"
        if getattr(service, "mode", None) == "cloud" or not looks_like_host:
            return []
    if port is None:
        port = 443 if getattr(service, "secure", False) else 80
    return [(host, int(port))]


def capped(explicit: float | None, cap: float) -> float:
    """A URL's ``cto=``/``rto=`` value, at most ``cap`` (the deployment's own timeout)."""
    if explicit is None or explicit <= 0:
        return cap
    return min(float(explicit), cap)


# -- resolving ------------------------------------------------------------------------------
def _addresses(infos: list[Any]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = _ip(str(sockaddr[0]))
        if ip is not None and ip not in found:
            found.append(ip)
    return found


async def _resolve_async(host: str, port: int | None) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    return _addresses(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def _resolve_quiet(host: str, port: int | None) -> list[IPAddress]:
    try:
        return _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        return []


# -- the send-time guard ---------------------------------------------------------------------
@dataclass
class Guard:
    """One guarded send: its policy and what it refused ("127.0.0.1:6379 (a loopback
    address)")."""

    policy: EgressPolicy
    refused: list[str] = field(default_factory=list)

    def describe(self) -> str:
        places = "; ".join(dict.fromkeys(self.refused))
        return f"egress policy refused {places}; {ASK}"

    def refuse(self, what: str) -> None:
        self.refused.append(what)
        raise EgressRefused(f"egress policy refused {what} ({SETTING})")


_ACTIVE: ContextVar[Guard | None] = ContextVar("tandem_egress_guard", default=None)
_NET_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork"}
)
_EVENTS = _NET_EVENTS | _PROCESS_EVENTS
_hook_lock = threading.Lock()
_hook_installed = False


def _install_hook() -> None:
    global _hook_installed
    if _hook_installed:
        return
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS:
        return
    guard = _ACTIVE.get()
    if guard is None:
        return
    if event in _PROCESS_EVENTS:
        guard.refuse(f"starting a process ({event})")
    sock, address = args[0], args[1]
    if address is None:  # sendmsg on a connected socket: its connect was checked
        return
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6):
        guard.refuse("a non-IP socket (a local one)")
    host, port = str(address[0]), int(address[1])
    literal = _ip(host)
    candidates = [literal] if literal is not None else _resolve_quiet(host, port)
    if not candidates:
        guard.refuse(f"{host}:{port} (it does not resolve)")
    for ip in candidates:
        kind = guard.policy.refusal(ip, port)
        if kind:
            shown = f"[{ip}]" if ip.version == 6 else str(ip)
            guard.refuse(f"{shown}:{port} ({kind})")
