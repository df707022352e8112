"""The Apprise adapter: send one message to one channel URL and say what happened.

Any Apprise URL is a channel. A channel Apprise lacks is one small Python file using
Apprise's ``@notify(on="schema")`` decorator, dropped into ``TANDEM_PLUGINS_DIR``; it is
loaded once when :class:`Channels` is built (see ``plugins_example/`` for one).

Plain URLs (with provider secrets, phone numbers) exist only inside :meth:`Channels.send`'s
caller's stack frame; nothing here logs or returns them, and each URL's private pieces are
remembered by the log filter (:func:`shared.redaction.remember`) before Apprise, which does
log topics and numbers, sees it.

Action buttons: Apprise's ntfy plugin takes an ``actions`` option (ntfy's ``X-Actions``
header, up to three buttons); no other plugin has arbitrary buttons (its ``click`` is one
tap-through URL, not a choice), so everywhere else the links travel in the text (see
``render.py``). :meth:`Channels.send` passes ``buttons`` to an ntfy channel through
Apprise's documented dictionary form of a URL, so the header reaches ntfy byte for byte
(the ``?actions=`` URL parameter is unquoted twice on its way in).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apprise import Apprise, AppriseAsset
from apprise.manager_plugins import NotificationManager
from apprise.plugins import NotifyBase, url_to_dict
from apprise.result import AppriseResult, AppriseResultStatus

from services.notifier import keepalive, limits
from services.notifier.clients import ChannelKey, ClientCache
from services.notifier.render import NTFY_SCHEMES
from shared.egress import EgressPolicy, capped, local_schema, network_hosts
from shared.redaction import mask, remember, url_secrets

log = logging.getLogger("tandem.notifier.channels")


class Outcome(StrEnum):
    DELIVERED = "delivered"
    # The provider said no (HTTP 4xx/5xx, SMTP refusal, bad URL): nothing reached the
    # partner through this channel, so the next channel may be tried at once.
    FAILED = "failed"
    # Apprise stopped waiting. The provider may still have accepted it -- see
    # ``delivery.py`` for why we retry the SAME channel rather than fall back.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DELIVERED


def classify(result: AppriseResult, read_timeout: float | None = None) -> SendResult:
    """Read Apprise's per-service outcome; only an unqualified SUCCESS is a delivery.

    - SUCCESS -> delivered.
    - TIMEOUT (any service, or overall) -> unknown: the request may have landed.
    - FAILURE after at least ``read_timeout`` seconds -> unknown too. Apprise's plugins
      report a socket read timeout as a plain connection error (FAILURE), yet the request
      was sent and only the answer is missing -- the provider may well have delivered it.
      Nothing but the elapsed time tells it apart from a refusal (an HTTP error or a
      refused connection answers fast; a connect timeout takes ``cto``, below ``rto``).
    - PARTIAL -> failed: some targets of the URL refused. Not a success (the partner may
      not have it), and not "unknown" either (the refusal is definite), so fallback is
      allowed; the targets that did accept may see it twice -- we accept that.
    - FAILURE / NOMATCH -> failed.
    """
    status = result.status
    services = list(result)
    if status == AppriseResultStatus.SUCCESS and services and all(services):
        return SendResult(Outcome.DELIVERED)
    error = _errors(result) or f"apprise status {status.name}"
    if status == AppriseResultStatus.TIMEOUT or any(
        s.status == AppriseResultStatus.TIMEOUT for s in services
    ):
        return SendResult(Outcome.UNKNOWN, f"timeout: {error}")
    if read_timeout is not None and any(
        s.status == AppriseResultStatus.FAILURE and s.elapsed >= 0.9 * read_timeout
        for s in services
    ):
        return SendResult(Outcome.UNKNOWN, f"no answer within the read timeout: {error}")
    if status == AppriseResultStatus.PARTIAL:
        return SendResult(Outcome.FAILED, f"partial: {error}")
    return SendResult(Outcome.FAILED, error)


def _errors(result: AppriseResult, limit: int = 400) -> str:
    messages = [e.message for e in result.logs() if e.level in ("ERROR", "WARNING")]
    return "; ".join(dict.fromkeys(messages))[:limit]


@dataclass(frozen=True)
class Loaded:
    """A channel ready to send to, made once when its URL is loaded: the Apprise service
    and the provider host its sends are bounded by (:func:`provider_host`). Only read
    after it is made, so concurrent sends share it."""

    service: NotifyBase
    host: str


class Channels:
    """Delivers through Apprise: loaded services reused per channel (:mod:`.clients`),
    connections kept alive (:mod:`.keepalive`), sends bounded per provider host and
    overall (:mod:`.limits`), each run in the notifier's own send thread pool."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        plugins_dir: Path | None = None,
        egress: EgressPolicy | None = None,
        per_host: int = limits.PER_HOST,
        overall: int = limits.OVERALL,
    ) -> None:
        # Where a send may connect (shared/egress.py); default: no exceptions.
        self.egress = egress or EgressPolicy()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # A hard ceiling per send: connect + read + a little for TLS/SMTP chatter. Apprise's
        # own default (60 s) would let one dead provider hold a partner's attempt -- and
        # the in-flight lease sized from these numbers -- far longer than the socket
        # timeouts we promised.
        self.send_timeout = connect_timeout + read_timeout + 1.0
        # The longest a send() can take: waiting for a slot of a busy provider host (at
        # most send_timeout, then it fails without sending), then the send itself.
        self.longest_send = 2 * self.send_timeout
        paths = [str(plugins_dir)] if plugins_dir else None
        if plugins_dir and not plugins_dir.is_dir():
            log.warning("plugins dir %s does not exist; no custom channels loaded", plugins_dir)
        # plugin_paths makes Apprise import every @notify file there, once, at start-up.
        # Synchronous mode without a service timeout: Apprise then runs the plugin in the
        # calling thread -- one of ours, below -- instead of handing it on to its own
        # shared pool (a second thread hop, and a pool of cpu+4 threads that one hanging
        # provider could fill). The hard timeout is ours (send()).
        self.asset = AppriseAsset(plugin_paths=paths, async_mode=False, service_timeout=0)
        self.clients: ClientCache[Loaded] = ClientCache()
        self.limits = limits.SendLimits(per_host=per_host, overall=overall)
        self.urgent_limits = limits.SendLimits(per_host=limits.URGENT, overall=limits.URGENT)
        # One thread per slot: a send holds its slot until its thread is free.
        self._pool = ThreadPoolExecutor(
            max_workers=overall + limits.URGENT, thread_name_prefix="tandem-send"
        )

    @staticmethod
    def load_plugins() -> None:
        """Load Apprise's plugin table now. Apprise loads it on first use -- every plugin
        module, ~0.2 s of CPU holding the GIL -- so a notifier loads it at start, and the
        first herd after a start does not pay it inside its first sends."""
        _PLUGINS.load_modules()

    def _instantiate(self, url: str, buttons: str | None) -> NotifyBase | None:
        """A loaded service for ``url``, with the deployment's socket timeouts and without
        Apprise's throttle; None if Apprise cannot load it."""
        results = _parsed(url, self.asset.secure_logging)
        if results is None:
            return None
        if buttons is not None and results.get("schema") in NTFY_SCHEMES:
            if not results.get("actions"):
                results["actions"] = buttons  # an integrator's own ?actions= wins
        service = self._construct(results)
        if service is None:
            return None
        query = parse_qs(urlsplit(url).query)
        # cto/rto: an integrator's explicit URL values, at most the deployment's (egress).
        cto = service.socket_connect_timeout if "cto" in query else None
        rto = service.socket_read_timeout if "rto" in query else None
        service.socket_connect_timeout = capped(cto, self.connect_timeout)
        service.socket_read_timeout = capped(rto, self.read_timeout)
        # Apprise's throttle (5.5 s between requests for most plugins) is a time.sleep()
        # keyed on the service instance: with one instance reused for a channel it would
        # space out a couple's nudges, and under a burst every sleeping thread is a send
        # that isn't happening. Provider rate limits surface as failures and go through
        # our own backoff instead.
        service.request_rate_per_sec = 0
        # Apprise's own per-service retry stays at the URL's value (default 0): our retries
        # go through the delay queue so they never hold a Kafka partition.
        return service

    def _construct(self, results: dict[str, Any]) -> NotifyBase | None:
        """The service of the plugin ``results`` name (``url_to_dict``'s arguments for
        it), as ``Apprise.instantiate`` makes it, without the "loaded" log line that
        Apprise formats whatever the log level -- rebuilding the URL for it takes about
        as long as the rest of loading it, and in a herd every send loads a channel."""
        plugin = _PLUGINS[results["schema"]]
        if not plugin.enabled:
            log.warning("%s:// is disabled on this system", results["schema"])
            return None
        try:
            service = plugin(**{**results, "asset": self.asset, "tag": set()})
        except Exception:  # what Apprise logs with the URL in it; we say no more than that
            return None
        return service if isinstance(service, NotifyBase) else None

    def _load(self, url: str, buttons: str | None) -> Loaded | None:
        """:meth:`_instantiate`'s service for ``url``, ready to send (:class:`Loaded`)."""
        service = self._instantiate(url, buttons)
        return None if service is None else Loaded(service, provider_host(url, service))

    async def send(
        self,
        url: str,
        *,
        title: str,
        body: str,
        buttons: str | None = None,
        channel: ChannelKey | None = None,
        urgent: bool = False,
    ) -> SendResult:
        """Send ``title``/``body`` to ``url``; never raises for a delivery problem.

        ``buttons``: ntfy's ``X-Actions`` value (``render.ntfy_actions``); used only by an
        ntfy channel, ignored by any other. ``channel``: (couple id, channel id) of
        ``url``, under which its loaded service is reused (:mod:`.clients`). ``urgent``: a
        test nudge or a snooze, sent in slots of its own (:mod:`.limits`).
        """
        refused = local_schema(url)
        if refused:
            return SendResult(Outcome.FAILED, f"egress policy: {refused}")
        remember(url)  # Apprise logs topics and numbers; the log filter now masks them
        loaded = self.clients.get(
            channel if buttons is None else None, url, lambda: self._load(url, buttons)
        )
        if loaded is None:
            return SendResult(Outcome.FAILED, "unsupported or invalid channel URL")
        try:
            # Bounded, so a send never outlives the in-flight lease sized from longest_send.
            slots = self.urgent_limits if urgent else self.limits
            release = await asyncio.wait_for(slots.acquire(loaded.host), self.send_timeout)
        except TimeoutError:  # nothing was sent: a definite failure, the next channel may go
            return SendResult(Outcome.FAILED, "provider busy: no send slot free in time")
        return _scrub(await self._notify(loaded, title, body, release), url)

    async def _notify(
        self, loaded: Loaded, title: str, body: str, release: Callable[[], None]
    ) -> SendResult:
        # Every connection the plugin makes is checked on its resolved address (egress);
        # both context variables travel into the send thread with the copied context.
        with self.egress.guarded() as guard, keepalive.pooled():
            context = contextvars.copy_context()
        try:
            work = asyncio.get_running_loop().run_in_executor(
                self._pool, context.run, _notify_in_thread, loaded.service, title, body
            )
        except BaseException:
            release()
            raise
        # The slot is the thread's: given back when it is free, even if we stop waiting.
        work.add_done_callback(lambda _: release())
        try:
            # shield: a timeout (or a cancelled caller) stops our wait, not the thread, which
            # the socket timeouts bound; its result is then closed when it comes.
            result = await asyncio.wait_for(asyncio.shield(work), self.send_timeout)
        except (TimeoutError, asyncio.CancelledError) as stopped:
            work.add_done_callback(_close_late)
            if isinstance(stopped, asyncio.CancelledError):
                raise
            return SendResult(
                Outcome.UNKNOWN, f"timeout: no answer within {self.send_timeout:.0f}s"
            )
        if isinstance(result, Exception):  # a plugin bug must not kill the consumer
            return SendResult(Outcome.FAILED, f"{type(result).__name__} in channel plugin")
        try:
            if guard.refused:  # nothing left the process: a definite failure
                return SendResult(Outcome.FAILED, guard.describe())
            return classify(result, read_timeout=loaded.service.socket_read_timeout)
        finally:
            result.close()

    def close(self) -> None:
        """Stop the send threads (after their current sends) and drop loaded services."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.clients.clear()


def _close_late(work: asyncio.Future[AppriseResult | Exception]) -> None:
    """Close the result of a send we stopped waiting for, once its thread is done."""
    result = None if work.cancelled() else work.result()
    if isinstance(result, AppriseResult):
        result.close()


_senders = threading.local()
_PLUGINS = NotificationManager()  # Apprise's registry of plugins by schema (a singleton)
_SCHEMA = re.compile(r"\s*(?P<schema>[a-z0-9]{1,32})://", re.I)


def _parsed(url: str, secure_logging: bool) -> dict[str, Any] | None:
    """``url_to_dict(url)``: the plugin's arguments for ``url``, or None. A URL of a known
    schema goes straight to its plugin's parser, as ``url_to_dict`` sends it, but without
    the masked copy of the URL it makes for a log line it writes only when that fails
    (CWE-312 masking: a third of the cost of loading a channel); anything else (a
    provider's native URL, a bad one) goes through ``url_to_dict``."""
    match = _SCHEMA.match(url)
    if match is None or match["schema"].lower() not in _PLUGINS:
        results: dict[str, Any] | None = url_to_dict(url, secure_logging=secure_logging)
        return results
    parsed: dict[str, Any] | None = _PLUGINS[match["schema"].lower()].parse_url(
        url.replace("/#", "/%23")
    )
    return parsed or None


def _notify_in_thread(service: NotifyBase, title: str, body: str) -> AppriseResult | Exception:
    """Run in a send thread: one Apprise call to ``service``; an exception is returned,
    not raised, so the caller can tell a plugin bug from a delivery outcome.

    Each send thread keeps one ``Apprise`` object and puts the service of each send in
    it: making one per send (or per loaded channel, which in a herd is the same) costs a
    sizeable share of a local send, its locale lookup alone stats a dozen files."""
    try:
        apprise: Apprise | None = getattr(_senders, "apprise", None)
        if apprise is None or apprise.asset is not service.asset:
            apprise = _senders.apprise = Apprise(asset=service.asset)
        apprise.add(service)
        try:
            return apprise.notify(body=body, title=title)
        finally:
            apprise.clear()  # it holds the service's secrets no longer than the send
    except Exception as exc:
        return exc


def provider_host(url: str, service: NotifyBase) -> str:
    """What a send's concurrency is bounded by: the network host and port the service
    connects to, or, for a hosted service reached through Apprise's fixed endpoint (no
    host in the URL), its schema."""
    hosts = network_hosts(service)
    if hosts:
        host, port = hosts[0]
        return f"{host}:{port}"
    return url.split("://", 1)[0].lower()


def _scrub(result: SendResult, url: str) -> SendResult:
    """Remove anything private from the URL (:func:`shared.redaction.url_secrets`), and
    any phone number or e-mail address (:func:`shared.redaction.mask`), out of an error
    text meant for logs/events."""
    error = result.error
    if not error:  # a delivery: nothing to scrub (and mask() may recompile its pattern)
        return result
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        error = error.replace(secret, "***")
    error = mask(error)
    return SendResult(result.outcome, error) if error != result.error else result
