"""Signed action links: "done", "snooze 15 min" and "skip this one", straight from a nudge.

A link is ``<public url>/a/<token>``; the token carries the couple, occurrence, partner,
action and expiry, and an HMAC-SHA256 over all of them keyed by ``TANDEM_SECRET_KEY``. So a
link cannot be altered to act for another partner, another occurrence or another couple,
and it stops working when it expires.

Key rotation: links are signed with the current key only, but :func:`verify` accepts several
keys (the current one and ``TANDEM_OLD_SECRET_KEYS``), so the links in nudges already sent
keep working while the old key is still configured (links live 3 days).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

Action = Literal["done", "snooze", "skip"]
ACTIONS: tuple[Action, ...] = get_args(Action)
DEFAULT_TTL_SECONDS = 3 * 86400
SNOOZE_MINUTES = 15


class LinkError(ValueError):
    """A token that is malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class Grant:
    couple_id: str
    occurrence_id: str
    partner_id: str
    action: Action
    expires: int  # epoch seconds
    minutes: int | None = None  # for "snooze"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: bytes) -> bytes:
    # A key of its own for links, derived from the deployment secret, so a link's MAC can
    # never double as anything else the secret protects.
    link_key = hashlib.sha256(b"tandem-links\x00" + key.encode()).digest()
    return hmac.new(link_key, payload, hashlib.sha256).digest()[:16]


def sign(key: str, grant: Grant) -> str:
    """The token for ``grant``."""
    payload = json.dumps(
        [
            grant.couple_id,
            grant.occurrence_id,
            grant.partner_id,
            grant.action,
            grant.expires,
            grant.minutes,
        ],
        separators=(",", ":"),
    ).encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


def verify(key: str | Sequence[str], token: str, *, now: float | None = None) -> Grant:
    """The grant a token carries; :class:`LinkError` if it is malformed, forged or expired.
    ``key`` may be several keys (current first, then old ones): any of them may have signed."""
    keys = [key] if isinstance(key, str) else list(key)
    try:
        body, mac = token.split(".", 1)
        payload = _unb64(body)
        given = _unb64(mac)
    except ValueError:
        raise LinkError("malformed link") from None
    if not any(hmac.compare_digest(given, _mac(k, payload)) for k in keys):
        raise LinkError("link signature does not match")
    try:
        couple_id, occurrence_id, partner_id, action, expires, minutes = json.loads(payload)
    except ValueError:
        raise LinkError("malformed link") from None
    if action not in ACTIONS:
        raise LinkError("unknown action")
    if (now if now is not None else time.time()) > expires:
        raise LinkError("link expired")
    return Grant(couple_id, occurrence_id, partner_id, action, int(expires), minutes)


def action_links(
    key: str,
    public_url: str,
    couple_id: str,
    occurrence_id: str,
    partner_id: str,
    *,
    ttl: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> dict[str, str]:
    """The three links for one partner's nudge: action -> URL."""
    expires = int((now if now is not None else time.time()) + ttl)
    base = public_url.rstrip("/")
    return {
        action: f"{base}/a/"
        + sign(
            key,
            Grant(
                couple_id,
                occurrence_id,
                partner_id,
                action,
                expires,
                SNOOZE_MINUTES if action == "snooze" else None,
            ),
        )
        for action in ACTIONS
    }
