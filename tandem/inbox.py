"""The local inbox: an HTTP sink and an SMTP sink on 127.0.0.1 that stand in for partners'
phones. ``tandem dev`` prints what lands; tests assert on it and inject faults (fail, answer
slowly, hang) per address to exercise retries and fallback. Nothing leaves the machine."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tandem.embedded import free_port


@dataclass(frozen=True)
class Received:
    """One notification as a partner's device would show it."""

    sink: str  # "http" or "smtp"
    address: str  # URL path / ntfy topic / e-mail recipient
    title: str
    body: str
    at: float  # time.time() on arrival
    # ntfy's action buttons as sent (its X-Actions header: "http, Done, <url>, …; …").
    actions: str = ""


@dataclass
class Fault:
    """How the sink treats requests to one address.

    ``fail=N``: the next N requests wait ``delay`` seconds and get ``status``; then the
    address is healthy again. ``forever=True``: every request does, until cleared.
    ``delay`` alone: every request is slow but succeeds.
    """

    fail: int = 0
    status: int = 500
    delay: float = 0.0  # a slow provider; beyond the client's read timeout, a hung one
    forever: bool = False


@dataclass
class _State:
    received: list[Received] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)


class Inbox:
    def __init__(self, on_receive: Callable[[Received], None] | None = None) -> None:
        self._state = _State()
        self._on_receive = on_receive
        self.http_port = free_port()
        self.smtp_port = free_port()
        self._http: ThreadingHTTPServer | None = None
        self._smtp: Controller | None = None

    # -- addresses ---------------------------------------------------------------------
    def json_url(self, address: str) -> str:
        return f"json://127.0.0.1:{self.http_port}/{quote(address)}"

    def ntfy_url(self, topic: str) -> str:
        return f"ntfy://127.0.0.1:{self.http_port}/{quote(topic)}"

    def sms_url(self, number: str) -> str:
        """An SMS/Signal gateway URL (the signal-cli REST API shape) that texts ``number``."""
        return f"signal://127.0.0.1:{self.http_port}/+15550000000/{quote(number)}"

    def mailto_url(self, to: str) -> str:
        return (
            f"mailto://127.0.0.1:{self.smtp_port}?to={quote(to)}"
            "&from=tandem@example.com&mode=insecure"
        )

    @property
    def allow(self) -> list[str]:
        """Its sinks as ``TANDEM_CHANNEL_ALLOW`` entries (HTTP -- push and the SMS gateway --
        and SMTP): exactly these, not loopback as a whole."""
        return [f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.smtp_port}"]

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Inbox:
        handler = _http_handler(self)
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="inbox-http", daemon=True).start()
        self._smtp = Controller(
            _SmtpHandler(self), hostname="127.0.0.1", port=self.smtp_port, ready_timeout=10
        )
        self._smtp.start()
        return self

    def stop(self) -> None:
        if self._http:
            self._http.shutdown()
            self._http.server_close()
        if self._smtp:
            self._smtp.stop()

    # -- faults ------------------------------------------------------------------------
    def fault(self, address: str, fault: Fault | None) -> None:
        """Set (or with None clear) the fault for one address."""
        with self._state.cond:
            if fault is None:
                self._state.faults.pop(address, None)
            else:
                self._state.faults[address] = fault

    def attempts(self, address: str) -> int:
        """How many requests reached ``address``, failed ones included."""
        with self._state.cond:
            return self._state.attempts.get(address, 0)

    def _admit(self, address: str) -> tuple[float, int | None]:
        """Count an attempt; return (delay, error status or None)."""
        with self._state.cond:
            self._state.attempts[address] = self._state.attempts.get(address, 0) + 1
            fault = self._state.faults.get(address)
            if fault is None:
                return 0.0, None
            if fault.forever:
                return fault.delay, fault.status
            if fault.fail > 0:
                fault.fail -= 1
                if fault.fail == 0:  # healed after this one
                    del self._state.faults[address]
                return fault.delay, fault.status
            return fault.delay, None

    # -- what arrived ------------------------------------------------------------------
    def _record(self, item: Received) -> None:
        with self._state.cond:
            self._state.received.append(item)
            self._state.cond.notify_all()
        if self._on_receive:
            self._on_receive(item)

    @property
    def received(self) -> list[Received]:
        with self._state.cond:
            return list(self._state.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if r.address == address]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0
    ) -> list[Received]:
        """Block until ``predicate(received)`` holds; raise TimeoutError with what came."""
        deadline = time.monotonic() + timeout
        with self._state.cond:
            while not predicate(self._state.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"inbox condition not met; got {self._state.received!r}")
                self._state.cond.wait(min(left, 0.5))
            return list(self._state.received)

    def clear(self) -> None:
        with self._state.cond:
            self._state.received.clear()
            self._state.attempts.clear()
            self._state.faults.clear()


def _http_handler(inbox: Inbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, the body waits for the
        # client's (delayed, ~40 ms) ACK of the headers on a kept-alive connection.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if len(raw) < length:
                # The sender went away mid-request (its headers and body are separate
                # writes): a provider drops what it did not get whole, and so does this.
                self.close_connection = True
                return
            try:
                payload = json.loads(raw or b"{}")
            except ValueError:
                payload = {"message": raw.decode(errors="replace")}
            path = self.path.split("?", 1)[0].lstrip("/")
            if not isinstance(payload, dict):
                payload = {"message": str(payload)}
            title = str(payload.get("title", ""))
            body = str(payload.get("message", payload.get("body", "")))
            if payload.get("recipients"):
                # an SMS gateway: {"message": "title\r\nbody", "number", "recipients"}
                address = str(payload["recipients"][0])
                title, _, body = body.partition("\r\n") if "\r\n" in body else ("", "", body)
            else:
                # ntfy posts {"topic", "title", "message"} to "/"; json:// posts to its path.
                address = str(payload.get("topic") or path) if not path else path
            delay, error = inbox._admit(address)
            if delay:
                time.sleep(delay)
            if error:
                self._answer(error, b'{"error": "injected fault"}')
                return
            inbox._record(
                Received(
                    sink="http",
                    address=address,
                    title=title,
                    body=body,
                    at=time.time(),
                    actions=self.headers.get("X-Actions", ""),
                )
            )
            self._answer(200, b'{"ok": true}')

        def _answer(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a hung-provider test): nothing to say

    return Handler


class _SmtpHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        import asyncio

        for rcpt in envelope.rcpt_tos:
            delay, error = self.inbox._admit(rcpt)
            if delay:
                await asyncio.sleep(delay)
            if error:
                return "451 4.3.0 injected fault"
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        msg = message_from_bytes(content)
        subject = str(make_header(decode_header(msg.get("Subject", ""))))
        body = _plain_text(msg)
        for rcpt in envelope.rcpt_tos:
            self.inbox._record(
                Received(sink="smtp", address=rcpt, title=subject, body=body, at=time.time())
            )
        return "250 OK"


def _plain_text(msg: Message) -> str:
    part: Message | None = msg
    if msg.is_multipart():
        part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
    if part is None:
        return ""
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", errors="replace").strip()
    return str(part.get_payload()).strip()
