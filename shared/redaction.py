"""Channel URLs and log text as people, logs and events may see them.

Three tools, one definition of "private":

* :func:`public_url` -- a channel URL's public form: scheme, host (a host that is no host
  name, such as Discord's webhook id or a Telegram bot token, is masked), port, then every
  path segment and every query value masked (a few harmless Apprise options such as
  ``format`` or ``cto`` stay as they are). What the API stores as ``Channel.redacted`` and
  so what every event, receipt and the history copy. :func:`redact` applies it to a loaded
  Apprise service's ``url(privacy=True)``.
* :func:`mask` -- free text (log lines, error texts): phone numbers and e-mail addresses by
  their shape, then every secret :func:`remember`-ed.
* :func:`url_secrets` -- every piece of a plain channel URL that may be private, to scrub
  out of a text that might quote it (the notifier's error texts, the log filter).

A masked piece keeps a hint so a person can tell channels apart: a phone number its last
two digits (``***01``), an e-mail address the first letter of its local part
(``s***@example.com``), any other piece of at least eight characters its first and last
two (``s***th``); shorter pieces become ``***``. A real webhook token has far more than
three characters of entropy, so the hint gives nothing away that matters.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

import apprise

# -- shapes ---------------------------------------------------------------------------------
# A phone number in free text is only recognised where it cannot be something else:
# E.164 with its "+" (also URL-encoded as %2B), a bare number of 7-15 digits after a word
# that announces a recipient ("to", "tel:", "phone" ...), or a whole URL path segment of
# 7-15 digits. Timestamps (2026-11-22T20:00:00+00:00), occurrence ids
# (rit_x@20261122T200000Z), offsets and latencies have no "+" before 7 digits, and are
# neither a path segment nor announced as a recipient.
_E164 = re.compile(r"(?<![\w+])(?:\+|%2[Bb])(\d(?:[ .\-()]{0,2}\d){6,14})(?!\d)")
_ANNOUNCED = re.compile(
    r"(?i)(\b(?:to|tel|sms|phone|mobile|number|recipients?|targets?)\b[\s:=\"'\[(]{1,4})"
    r"(\d(?:[ .\-]?\d){6,14})(?!\d)"
)
_PATH_NUMBER = re.compile(r"(?<=/)(\d{7,15})(?=[/?#\s\"',;]|$)")
# An e-mail address needs a dotted domain ending in letters, which an occurrence id's
# "@20261122T200000Z" never is.
_EMAIL = re.compile(
    r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@|%40)((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b"
)
_PHONE_PIECE = re.compile(r"(?:\+|%2[Bb])?\d[\d .\-()]{5,}\d")
_HOST_NAME = re.compile(r"(?i)^(?:localhost|\[[0-9a-f:.]+\]|(?:[a-z0-9-]+\.)+[a-z0-9-]+)$")

# Query options whose (short, plain) values say how a channel behaves, not where it goes.
SAFE_QUERY_KEYS = frozenset(
    {
        "avatar",
        "batch",
        "content",
        "cto",
        "discovery",
        "emojis",
        "footer",
        "format",
        "image",
        "include_image",
        "lang",
        "mdv",
        "method",
        "mode",
        "overflow",
        "priority",
        "rto",
        "store",
        "tts",
        "tz",
        "verify",
    }
)
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")
# Flags and small numbers (``retry=0``, ``wait=0.5``, ``cto=15.0``) say nothing, whatever
# their key.
_PLAIN = re.compile(r"(?i)^(?:yes|no|true|false|on|off|\d{1,3}(?:\.\d{1,2})?)$")


def _phone(digits: str) -> str:
    return "***" + re.sub(r"\D", "", digits)[-2:]


def mask_piece(piece: str) -> str:
    """One private piece of a URL (a path segment, a query value, a host that names no
    host), masked with its hint (see the module docstring)."""
    text = unquote(piece)
    if _PHONE_PIECE.fullmatch(text):
        return _phone(text)
    if _EMAIL.fullmatch(text):
        return _EMAIL.sub(lambda m: f"{m.group(1)}***{m.group(2)}{m.group(3)}", text)
    if len(text) >= 8:
        return f"{text[0]}***{text[-2:]}"
    return "***"


def mask_shapes(text: str) -> str:
    """Mask phone numbers and e-mail addresses in free text by their shape alone."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***{m.group(2)}{m.group(3)}", text)
    text = _E164.sub(lambda m: _phone(m.group(1)), text)
    text = _ANNOUNCED.sub(lambda m: m.group(1) + _phone(m.group(2)), text)
    return _PATH_NUMBER.sub(lambda m: _phone(m.group(1)), text)


# -- secrets known by value -------------------------------------------------------------------
class KnownSecrets:
    """The private pieces of channel URLs this process has handled, masked in every text
    :func:`mask` sees (so in every log line).

    Why a registry and not shapes alone: a token or topic in a URL's path (``ntfy`` logs
    ``Sent ntfy notification to 'http://host/private-topic'`` at INFO) has no shape to find
    it by; it is only known once the URL is decrypted. The notifier remembers each URL it
    sends to, the API each URL it is given. Bounded (least recently used out first) so a
    long-lived process with many couples holds a few thousand short strings at most; a
    secret pushed out is remembered again on its URL's next send, before Apprise logs.
    Pieces shorter than five characters are not kept: masking them would mangle ordinary
    words in every line, and the public form hides them anyway.
    """

    MIN_LENGTH = 5

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._pieces: OrderedDict[str, None] = OrderedDict()
        # The pieces by their first MIN_LENGTH characters. A text is scanned once, one
        # lookup per position: one regex of thousands of alternatives took ~1 ms per log
        # line, and ~90 ms to rebuild each time a piece came or went -- in a herd, at every
        # delivery. Tuples, replaced rather than changed, so a scan in another thread never
        # sees one half-updated.
        self._by_head: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def remember(self, url: str) -> None:
        pieces = {p for p in url_secrets(url, hosts=False) if len(p) >= self.MIN_LENGTH}
        with self._lock:
            # Sorted: which of a URL's pieces a full registry keeps must not hang on the
            # process's string hash seed (a set's order).
            for piece in sorted(pieces):
                if piece in self._pieces:
                    self._pieces.move_to_end(piece)
                else:
                    self._pieces[piece] = None
                    head = piece[: self.MIN_LENGTH]
                    self._by_head[head] = (*self._by_head.get(head, ()), piece)
            while len(self._pieces) > self.limit:
                self._drop(self._pieces.popitem(last=False)[0])

    def _drop(self, piece: str) -> None:
        head = piece[: self.MIN_LENGTH]
        left = tuple(p for p in self._by_head[head] if p != piece)
        if left:
            self._by_head[head] = left
        else:
            del self._by_head[head]

    def forget_all(self) -> None:
        with self._lock:
            self._pieces.clear()
            self._by_head = {}

    def mask(self, text: str) -> str:
        """``text`` with every remembered piece in it masked: from left to right, the
        longest piece that starts at each position."""
        by_head, width = self._by_head, self.MIN_LENGTH
        if not by_head:
            return text
        out: list[str] = []
        start = i = 0
        while i <= len(text) - width:
            heads = by_head.get(text[i : i + width])
            matching = [p for p in heads if text.startswith(p, i)] if heads else None
            if not matching:
                i += 1
                continue
            found = max(matching, key=len)
            out += [text[start:i], mask_piece(found)]
            start = i = i + len(found)
        return "".join(out) + text[start:] if out else text


known = KnownSecrets()


def remember(url: str) -> None:
    """Mask the private pieces of ``url`` in every later log line of this process."""
    known.remember(url)


def mask(text: str) -> str:
    """``text`` with known URL secrets, phone numbers (keeping the last two digits) and
    e-mail local parts masked: what may go into a log line, an error text or an event."""
    return mask_shapes(known.mask(text))


# -- URLs ----------------------------------------------------------------------------------
def url_secrets(url: str, *, hosts: bool = True) -> set[str]:
    """Every piece of ``url`` that may be private: credentials, path segments (phone
    numbers, tokens, topics), query values (``to=`` addresses, API keys), as written and
    URL-decoded, and with ``hosts`` the whole URL, its host and netloc too (Apprise puts
    tokens and phone numbers in the host place: ``tgram://{bot_token}/``)."""
    parts = urlsplit(url)
    pieces = {parts.username or "", parts.password or ""}
    if hosts:
        pieces |= {url, parts.netloc, parts.hostname or ""}
    elif parts.hostname and not _HOST_NAME.match(parts.hostname):
        pieces.add(parts.hostname)
    for segment in parts.path.split("/"):
        pieces |= {segment, unquote(segment)}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _safe_option(key, value):
            continue
        pieces |= {value, *value.split(","), *unquote(value).split(",")}
    pieces = {p.strip() for p in pieces}
    return {p for p in pieces if len(p) > 3}


def _safe_option(key: str, value: str) -> bool:
    if _PLAIN.match(value):
        return True
    return key.lower() in SAFE_QUERY_KEYS and bool(_SAFE_VALUE.match(value))


def public_url(url: str) -> str:
    """``url`` as anyone may see it: ``json://hooks.example/T0K3N/secret-path`` becomes
    ``json://hooks.example/***/s***th``, ``mailto://127.0.0.1:2525?to=sam@example.com``
    ``mailto://127.0.0.1:2525?to=s***@example.com``, ``signal://host/+15551230001``
    ``signal://host/***01``. Credentials become ``***@``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or "://" not in url:
        return "***"
    try:
        port = parts.port
    except ValueError:  # a token where the port would be (tgram://123:AAtoken/)
        return f"{parts.scheme}://***"
    host = parts.hostname or ""
    if host and not _HOST_NAME.match(host):
        host = mask_piece(host)
    shown = f"{parts.scheme}://"
    if parts.username or parts.password:
        shown += "***@"
    shown += host + (f":{port}" if port is not None else "")
    segments = [mask_piece(s) if s else "" for s in parts.path.split("/")[1:]]
    if segments:
        shown += "/" + "/".join(segments)
    # Keys as written: Apprise gives a leading + (a header) or - and : their own meaning,
    # which decoding would turn into a space. Values decoded, to be judged and masked.
    query = [
        f"{key}={value if _safe_option(key, value) else mask_piece(value)}"
        for key, value in (
            (raw.partition("=")[0], unquote_plus(raw.partition("=")[2]))
            for raw in parts.query.split("&")
            if raw
        )
    ]
    if query:
        shown += "?" + "&".join(query)
    return shown


def redact(service: apprise.plugins.NotifyBase) -> str:
    """The public form (:func:`public_url`) of a loaded Apprise service's URL, after
    Apprise's own privacy masking."""
    return public_url(service.url(privacy=True))
