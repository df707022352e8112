"""Partners' own access: a credential per partner, who has joined, each partner's channels
and whether the couple may fire yet. Pure: no I/O (the Redis side is ``access_store``).

Only couples started by a partner (``POST /v1/start``) have a :class:`Membership`; couples
an integrator created (admin token) have none and keep today's behaviour: their channels
are used as given, their couple token works as before.

A started couple is created paused, with a placeholder for the partner still to join, and
stays paused -- nothing scheduled, rituals may be chosen -- until it is *ready*: both
partners joined and each has at least one verified channel. Then it is activated once; from
then on pausing is the partners' own choice (unless a partner leaves).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.scheduler.rituals import Channel, Couple, Partner
from shared.events import ChannelKind
from shared.ids import new_id

PARTNER_TOKEN_PREFIX = "pt_"
PLACEHOLDER_NAME = "Your partner"


class Status(StrEnum):
    """Where a started couple stands; an integrator's couple is always ``active``."""

    WAITING_FOR_PARTNER = "waiting_for_partner"
    WAITING_FOR_CHANNELS = "waiting_for_channels"
    ACTIVE = "active"
    LEFT = "left"  # a partner left: paused for good


class ChannelState(StrEnum):
    PENDING = "pending"  # code sent, not entered yet: never used for nudges
    ACTIVE = "active"  # verified, in the vault: nudges use it
    PAUSED = "paused"  # verified, taken out of the vault by its owner (or a stop link)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelRecord(_Model):
    """A partner's channel as the access store keeps it; ``secret`` is the Apprise URL
    encrypted with the vault's key (never shown)."""

    id: str
    partner_id: str
    kind: ChannelKind
    redacted: str
    state: ChannelState
    secret: str
    created_at: AwareDatetime

    def public(self) -> dict[str, Any]:
        """What its owner sees of it (no secret)."""
        return self.model_dump(mode="json", exclude={"secret"})

    def channel(self) -> Channel:
        return Channel(id=self.id, kind=self.kind, redacted=self.redacted)


class Membership(_Model):
    """Who of a started couple's two partners has joined, whether it was activated, and
    whether it was paused on purpose before that."""

    couple_id: str
    joined: list[str] = Field(default_factory=list)
    left: list[str] = Field(default_factory=list)
    activated: bool = False
    # A partner paused the couple on purpose before it was activated: activation keeps it.
    paused_by_choice: bool = False


@dataclass(frozen=True)
class PartnerGrant:
    """What a partner token opens: one partner of one couple."""

    couple_id: str
    partner_id: str


def new_partner_token() -> str:
    """A new partner token (only its hash is stored)."""
    return PARTNER_TOKEN_PREFIX + secrets.token_urlsafe(24)


def placeholder(timezone: str) -> Partner:
    """The partner slot an invite fills: no channels, the inviter's zone until they join."""
    return Partner(id=new_id("prt"), name=PLACEHOLDER_NAME, timezone=timezone, channels=[])


def status(membership: Membership | None, records: list[ChannelRecord]) -> Status:
    """Where the couple stands (``None``: an integrator's couple, always active)."""
    if membership is None:
        return Status.ACTIVE
    if membership.left:
        return Status.LEFT
    if len(membership.joined) < 2:
        return Status.WAITING_FOR_PARTNER
    verified = {r.partner_id for r in records if r.state is not ChannelState.PENDING}
    if membership.activated or all(p in verified for p in membership.joined):
        return Status.ACTIVE
    return Status.WAITING_FOR_CHANNELS


def hold_reason(state: Status) -> str | None:
    """Why the couple may not be unpaused yet (None: it may); the API's 409 message."""
    return {
        Status.WAITING_FOR_PARTNER: "nothing is scheduled until your partner joins from the"
        " invite link",
        Status.WAITING_FOR_CHANNELS: "nothing is scheduled until each of you has verified a"
        " channel (enter the code sent to it)",
        Status.LEFT: "a partner left this couple; start a new couple to begin again",
    }.get(state)


def with_channels(couple: Couple, partner_id: str, records: list[ChannelRecord]) -> Couple:
    """``couple`` with ``partner_id``'s channels set to their ACTIVE records (in the order
    added: the fallback order)."""
    active = [r.channel() for r in records if r.partner_id == partner_id and r.state == "active"]
    return with_partner(
        couple, next(p for p in couple.partners if p.id == partner_id), channels=active
    )


def with_partner(couple: Couple, partner: Partner, **changes: Any) -> Couple:
    """``couple`` with ``partner`` (matched by id) replaced by a copy carrying ``changes``."""
    updated = partner.model_copy(update=changes)
    return couple.model_copy(
        update={"partners": [updated if p.id == partner.id else p for p in couple.partners]}
    )


def view_for(view: dict[str, Any], partner_id: str | None) -> dict[str, Any]:
    """A couple's JSON ``view`` as ``partner_id`` may see it: the other partner's channels
    (and their calendar feed) left out. ``None`` (admin, couple token): all of it."""
    if partner_id is None:
        return view
    partners = [
        p if p["id"] == partner_id else {**p, "channels": [], "calendar_feed": None}
        for p in view["partners"]
    ]
    return {**view, "partners": partners}


# What a delivery status says of the channel that took it (``history.record_delivered``,
# ``record_failed``): the other partner's are left out of a partner's view.
_CHANNEL_FIELDS = ("channel", "channel_id", "channel_kind", "reason", "attempts", "errors")


def history_for(nudges: list[dict[str, Any]], partner_id: str | None) -> list[dict[str, Any]]:
    """The couple's nudge history as ``partner_id`` may see it: the other partner's status,
    answer and words stay, what it says of their channels does not. ``None``: all of it."""
    if partner_id is None:
        return nudges
    return [
        {
            **nudge,
            "partners": {
                pid: entry if pid == partner_id else _without_channels(entry)
                for pid, entry in nudge.get("partners", {}).items()
            },
        }
        for nudge in nudges
    ]


def _without_channels(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in _CHANNEL_FIELDS}
