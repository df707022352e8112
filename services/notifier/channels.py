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

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from apprise import Apprise, AppriseAsset
from apprise.plugins import NotifyBase, url_to_dict
from apprise.result import AppriseResult, AppriseResultStatus

from services.notifier.render import NTFY_SCHEMES
from shared.egress import EgressPolicy, capped, local_schema
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


class Channels:
    """Builds one Apprise service per send and delivers through it, asynchronously."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        plugins_dir: Path | None = None,
        egress: EgressPolicy | None = None,
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
        paths = [str(plugins_dir)] if plugins_dir else None
        if plugins_dir and not plugins_dir.is_dir():
            log.warning("plugins dir %s does not exist; no custom channels loaded", plugins_dir)
        # plugin_paths makes Apprise import every @notify file there, once, at start-up.
        self.asset = AppriseAsset(
            plugin_paths=paths, async_mode=True, service_timeout=self.send_timeout
        )

    def _instantiate(self, url: str, buttons: str | None) -> NotifyBase | None:
        if buttons is None:
            return Apprise.instantiate(url, asset=self.asset)
        results = url_to_dict(url, secure_logging=self.asset.secure_logging)
        if results is None:
            return None
        if results.get("schema") in NTFY_SCHEMES and not results.get("actions"):
            results["actions"] = buttons  # an integrator's own ?actions= wins
        return Apprise.instantiate(results, asset=self.asset)

    async def send(
        self, url: str, *, title: str, body: str, buttons: str | None = None
    ) -> SendResult:
        """Send ``title``/``body`` to ``url``; never raises for a delivery problem.

        ``buttons``: ntfy's ``X-Actions`` value (``render.ntfy_actions``); used only by an
        ntfy channel, ignored by any other.
        """
        refused = local_schema(url)
        if refused:
            return SendResult(Outcome.FAILED, f"egress policy: {refused}")
        remember(url)  # Apprise logs topics and numbers; the log filter now masks them
        service = self._instantiate(url, buttons)
        if service is None:
            return SendResult(Outcome.FAILED, "unsupported or invalid channel URL")
        query = parse_qs(urlsplit(url).query)
        # cto/rto: an integrator's explicit URL values, at most the deployment's (egress).
        cto = service.socket_connect_timeout if "cto" in query else None
        rto = service.socket_read_timeout if "rto" in query else None
        service.socket_connect_timeout = capped(cto, self.connect_timeout)
        service.socket_read_timeout = capped(rto, self.read_timeout)
        # Apprise's throttle (5.5 s between requests for most plugins) is a time.sleep()
        # inside its shared worker pool, keyed on the service instance. We build one
        # instance per send, so it could only ever slow a multi-target URL -- and under a
        # burst every sleeping thread is a send that isn't happening, which also skews the
        # two partners of a together nudge apart. Provider rate limits surface as failures
        # and go through our own backoff instead.
        service.request_rate_per_sec = 0
        # Apprise's own per-service retry stays at the URL's value (default 0): our retries
        # go through the delay queue so they never hold a Kafka partition.
        apobj = Apprise(asset=self.asset)
        apobj.add(service)
        # Every connection the plugin makes is checked on its resolved address (egress).
        with self.egress.guarded() as guard:
            try:
                result = await apobj.async_notify(body=body, title=title, timeout=self.send_timeout)
            except Exception as exc:  # a plugin bug must not kill the consumer
                return SendResult(Outcome.FAILED, f"{type(exc).__name__} in channel plugin")
        try:
            if guard.refused:  # nothing left the process: a definite failure
                return _scrub(SendResult(Outcome.FAILED, guard.describe()), url)
            rto = service.socket_read_timeout
            return _scrub(classify(result, read_timeout=rto), url)
        finally:
            result.close()


def _scrub(result: SendResult, url: str) -> SendResult:
    """Remove anything private from the URL (:func:`shared.redaction.url_secrets`), and
    any phone number or e-mail address (:func:`shared.redaction.mask`), out of an error
    text meant for logs/events."""
    error = result.error
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        error = error.replace(secret, "***")
    error = mask(error)
    return SendResult(result.outcome, error) if error != result.error else result
