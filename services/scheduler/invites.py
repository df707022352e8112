"""Invites: how the second partner joins a couple the first one started. Pure: no I/O.

An invite is a random token (only its SHA-256 is stored) naming the couple and the partner
slot it fills; it works once and until ``expires`` (``TANDEM_INVITE_TTL_SECONDS``). A new
invite for the same couple voids the previous one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

INVITE_PREFIX = "inv_"
# The web page the invite link opens (served by the web app); the JSON API reads the same
# token at /v1/invites/{token}.
JOIN_PATH = "/join/"


class Redeemed(StrEnum):
    """What using an invite found."""

    JOINED = "joined"
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # never issued, or voided by a newer invite


# Why an invite is refused, and what to do about it (the API's 4xx messages).
REFUSALS: dict[Redeemed, tuple[int, str]] = {
    Redeemed.USED: (410, "this invite was already used: ask your partner for a new link"),
    Redeemed.EXPIRED: (410, "this invite has expired: ask your partner for a new link"),
    Redeemed.UNKNOWN: (404, "no such invite: check the link, or ask your partner for a new one"),
}


@dataclass(frozen=True)
class Invite:
    """An issued invite: the couple, the partner slot it fills, who invited, and until when
    (epoch seconds)."""

    couple_id: str
    partner_id: str
    inviter_id: str
    expires: float


def new_invite_token() -> str:
    """A new invite token (only its hash is stored)."""
    return INVITE_PREFIX + secrets.token_urlsafe(24)


def invite_url(api_url: str, token: str) -> str:
    """The link the inviting partner sends: the web app's join page for ``token``."""
    return f"{api_url.rstrip('/')}{JOIN_PATH}{token}"
