"""Verifying a channel: a short code sent through it, entered by its owner. Pure: no I/O.

A channel a partner adds through the partner routes is *pending*: stored (its URL
encrypted) but not where the notifier reads channels (``shared.vault``). It becomes *active*
once its owner enters the code sent through it; only then is it written to the vault and
to the couple's partner, so the notifier needs no gate of its own.

How the code travels -- a direct Apprise send from the scheduler, not a Kafka event the
notifier delivers: the code goes to a channel the notifier must NOT know yet (it reads only
verified channels), so a notifier path would need a second, unverified channel store and a
new consumer; a direct send reuses the notifier's own :class:`~services.notifier.channels.
Channels` (same socket timeouts, same egress guard on every connection, same redaction),
answers the partner at once ("sent" or "this channel did not take it: check it"), and is
not a nudge (no quiet hours, history, retries or fallback to another channel). Sends are
rate limited per partner (``TANDEM_CODE_SENDS_PER_HOUR``).

Codes: 6 digits, stored only as a keyed digest (:func:`code_digest`, bound to the channel)
with a TTL (``TANDEM_CODE_TTL_SECONDS``); ``TANDEM_CODE_ATTEMPTS`` wrong entries void the
code (a new one must be sent).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum

CODE_DIGITS = 6


class Verdict(StrEnum):
    """What entering a code did."""

    VERIFIED = "verified"
    WRONG = "wrong"  # attempts remain
    VOID = "void"  # that was the last attempt: the code is gone
    NO_CODE = "no_code"  # none sent, expired, or already voided


def new_code() -> str:
    """A fresh code: :data:`CODE_DIGITS` random digits (leading zeros kept)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalize(code: str) -> str:
    """What a partner typed, without the spaces and dashes people add ("123 456")."""
    return "".join(c for c in code if c.isdigit())


def code_digest(secret_key: str, channel_id: str, code: str) -> str:
    """The digest stored for ``code`` of ``channel_id``: HMAC keyed by the deployment
    secret, so a copy of Redis does not reveal codes (a million candidates would be
    quick to try against a bare hash), and bound to the channel."""
    key = hashlib.sha256(b"tandem-codes\x00" + secret_key.encode()).digest()
    payload = f"{channel_id}\x00{normalize(code)}".encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def code_message(code: str, couple_name: str) -> tuple[str, str]:
    """The title and body sent through a channel being verified."""
    spaced = f"{code[:3]} {code[3:]}"
    return (
        "Your Tandem code",
        f"Your code for {couple_name}: {spaced}. Enter it on the Tandem page to start "
        "receiving nudges here. Didn't ask for it? Ignore this message.",
    )
