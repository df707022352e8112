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
import functools
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
STOP = "stop"  # the link after the actions in every nudge (see stop_link)


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


# Each kind of token has a key of its own, derived from the deployment secret, so a MAC can
# never double as anything else the secret protects (nor a stop token pass for an action link).
LINK_PURPOSE = b"tandem-links"
STOP_PURPOSE = b"tandem-stop"


@functools.lru_cache(maxsize=16)
def _derived(purpose: bytes, key: str) -> bytes:
    # Cached: every nudge signs four links per partner with the same few keys.
    return hashlib.sha256(purpose + b"\x00" + key.encode()).digest()


def _mac(purpose: bytes, key: str, payload: bytes) -> bytes:
    return hmac.digest(_derived(purpose, key), payload, "sha256")[:16]


# json.dumps with separators builds an encoder per call; a herd signs four links a partner.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _seal(purpose: bytes, key: str, fields: Sequence[object]) -> str:
    """``fields`` as compact JSON, then its MAC: ``<payload>.<mac>``, both base64url."""
    payload = _COMPACT.encode(fields).encode()
    return f"{_b64(payload)}.{_b64(_mac(purpose, key, payload))}"


def _open(purpose: bytes, keys: str | Sequence[str], token: str) -> bytes:
    """The payload of a token sealed by any of ``keys`` (the current one first, then old ones);
    :class:`LinkError` if it is malformed or forged."""
    try:
        body, mac = token.split(".", 1)
        payload = _unb64(body)
        given = _unb64(mac)
    except ValueError:
        raise LinkError("malformed link") from None
    candidates = [keys] if isinstance(keys, str) else keys
    if not any(hmac.compare_digest(given, _mac(purpose, k, payload)) for k in candidates):
        raise LinkError("link signature does not match")
    return payload


def _unexpired(expires: object, now: float | None) -> int:
    """``expires`` as epoch seconds; :class:`LinkError` once it has passed."""
    if not isinstance(expires, int):
        raise LinkError("malformed link")
    if (now if now is not None else time.time()) > expires:
        raise LinkError("link expired")
    return expires


def sign(key: str, grant: Grant) -> str:
    """The token for ``grant``."""
    fields = (
        grant.couple_id,
        grant.occurrence_id,
        grant.partner_id,
        grant.action,
        grant.expires,
        grant.minutes,
    )
    return _seal(LINK_PURPOSE, key, fields)


def verify(key: str | Sequence[str], token: str, *, now: float | None = None) -> Grant:
    """The grant a token carries; :class:`LinkError` if it is malformed, forged or expired.
    ``key`` may be several keys (current first, then old ones): any of them may have signed."""
    payload = _open(LINK_PURPOSE, key, token)
    try:
        couple_id, occurrence_id, partner_id, action, expires, minutes = json.loads(payload)
    except (ValueError, TypeError):
        raise LinkError("malformed link") from None
    if action not in ACTIONS:
        raise LinkError("unknown action")
    return Grant(couple_id, occurrence_id, partner_id, action, _unexpired(expires, now), minutes)


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
    """The links for one partner's nudge: "done", "snooze", "skip" -> URL, then "stop" ->
    the partner's stop page (:func:`stop_link`: pause a channel or leave, no login)."""
    expires = int((now if now is not None else time.time()) + ttl)
    base = public_url.rstrip("/")
    answers: dict[str, str] = {
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
    return {**answers, STOP: stop_link(key, public_url, couple_id, partner_id, now=now)}


# -- stop links ----------------------------------------------------------------------------
# A stop link lets a partner withdraw consent from a nudge, without logging in: it pauses one
# channel (``channel_id`` set: the e-mail ``List-Unsubscribe`` link of that address) or, from
# the link in a nudge's text, shows that partner's channels to pause and "leave the couple".
# Its MAC is keyed apart from action links', so neither token can pass for the other.
STOP_TTL_SECONDS = 400 * 86400  # a List-Unsubscribe header lives as long as the channel


@dataclass(frozen=True)
class StopGrant:
    couple_id: str
    partner_id: str
    channel_id: str | None  # None: any of the partner's channels, or leaving
    expires: int  # epoch seconds


def sign_stop(key: str, grant: StopGrant) -> str:
    """The token for a stop ``grant``."""
    fields = (grant.couple_id, grant.partner_id, grant.channel_id, grant.expires)
    return _seal(STOP_PURPOSE, key, fields)


def verify_stop(key: str | Sequence[str], token: str, *, now: float | None = None) -> StopGrant:
    """The stop grant a token carries; :class:`LinkError` if malformed, forged or expired."""
    payload = _open(STOP_PURPOSE, key, token)
    try:
        couple_id, partner_id, channel_id, expires = json.loads(payload)
    except (ValueError, TypeError):
        raise LinkError("malformed link") from None
    return StopGrant(str(couple_id), str(partner_id), channel_id, _unexpired(expires, now))


def stop_link(
    key: str,
    public_url: str,
    couple_id: str,
    partner_id: str,
    channel_id: str | None = None,
    *,
    ttl: int = STOP_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """``<public url>/s/<token>``: the page (GET) and one-click POST that stop nudges for
    ``partner_id`` -- one channel, or (``channel_id`` None) any of theirs, or leaving."""
    expires = int((now if now is not None else time.time()) + ttl)
    token = sign_stop(key, StopGrant(couple_id, partner_id, channel_id, expires))
    return f"{public_url.rstrip('/')}/s/{token}"
