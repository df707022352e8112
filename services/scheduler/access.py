"""Partners' own door, as operations: start a couple, invite, join, change one's own
details, add and verify channels, pause them, leave. The JSON routes (``api/partners.py``,
``api/invites.py``, ``api/verification.py``, ``api/stop.py``) and the web app's pages both
call :class:`Access`; what it refuses it raises as :class:`Refused` (an HTTP status, a
message saying how to fix it and, for a bad field, its ``loc``), which the API answers like
its other 4xx and a page can show in the same words.

The rules are in :mod:`.partners` (who joined, when a couple may fire), :mod:`.invites`,
:mod:`.verification` (why codes travel by a direct send) and :mod:`.channel_forms`; the
Redis side is :mod:`.access_store`. Who may call what is the caller's business
(``api/deps.py``): these methods trust the ``partner_id`` they are given.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from services.scheduler import planning
from services.scheduler.access_store import AccessStore
from services.scheduler.channel_forms import ChannelChoice, with_unsubscribe
from services.scheduler.invites import REFUSALS, Invite, Redeemed, invite_url, new_invite_token
from services.scheduler.partners import (
    ChannelRecord,
    ChannelState,
    Membership,
    PartnerGrant,
    Status,
    hold_reason,
    new_partner_token,
    placeholder,
    status,
    with_channels,
    with_partner,
)
from services.scheduler.rituals import Channel, Couple, Partner
from services.scheduler.store import SchedulerStore
from services.scheduler.verification import Verdict, code_digest, code_message, new_code
from shared.events import ChannelKind, QuietHours
from shared.ids import new_id
from shared.links import StopGrant, stop_link
from shared.settings import Settings


class Refused(Exception):
    """What a partner asked for cannot be done: ``status`` (an HTTP status), ``message``
    (what to do about it), ``loc`` (the body field at fault, answered 422 like pydantic's
    errors) and ``headers`` (e.g. ``Retry-After``)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        loc: list[str | int] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.loc = loc

    @classmethod
    def at(cls, loc: list[str | int], message: str) -> Refused:
        """A 422 naming the field ``loc`` (e.g. ``["body", "code"]``)."""
        return cls(422, message, loc=loc)


# Loads an Apprise URL and checks it against the egress policy: the channel (redacted) or
# Refused at ``loc`` -- the same check as a channel given to ``POST /v1/couples``.
ChannelCheck = Callable[[str, ChannelKind, list[str | int]], Awaitable[Channel]]


class SendOutcome(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def error(self) -> str: ...


class CodeSender(Protocol):
    """Sends one message to one Apprise URL (``services.notifier.channels.Channels``)."""

    async def send(
        self, url: str, *, title: str, body: str, buttons: str | None = None
    ) -> SendOutcome: ...


@dataclass(frozen=True)
class IssuedInvite:
    """An invite to hand the other partner: the link (its ``token`` inside) and its expiry."""

    token: str
    url: str
    expires: float


@dataclass(frozen=True)
class Entry:
    """A partner let in (by starting a couple or joining one): the couple, which partner
    they are, and their token -- shown only now. ``invite`` for the one who started it."""

    couple: Couple
    partner_id: str
    token: str
    invite: IssuedInvite | None = None


@dataclass(frozen=True)
class Details:
    """What a partner says of themselves."""

    name: str
    timezone: str
    quiet_hours: QuietHours | None = None


class Access:
    def __init__(
        self,
        store: SchedulerStore,
        access: AccessStore,
        settings: Settings,
        check_channel: ChannelCheck,
        sender: CodeSender,
    ) -> None:
        self.store = store
        self.access = access
        self.settings = settings
        self.check_channel = check_channel
        self.sender = sender

    # -- starting, inviting, joining -------------------------------------------------------
    async def start(self, couple_name: str, me: Details, now: datetime) -> Entry:
        """A new couple with ``me`` as its first partner and a slot for the other, paused
        until both joined and verified a channel; ``me``'s token and an invite link."""
        first = Partner(
            id=new_id("prt"),
            name=me.name,
            timezone=me.timezone,
            channels=[],
            quiet_hours=me.quiet_hours,
        )
        couple = Couple(
            id=new_id("cpl"),
            name=couple_name,
            partners=[first, placeholder(me.timezone)],
            paused=True,
            created_at=now,
        )
        # The couple token is required by the store; nobody is shown it (partners use theirs).
        await self.store.create_couple(couple, new_partner_token(), {})
        await self.access.save_membership(Membership(couple_id=couple.id, joined=[first.id]))
        token = await self._new_token(PartnerGrant(couple.id, first.id))
        invite = await self.invite(couple, first.id, now)
        return Entry(couple, first.id, token, invite)

    async def invite(self, couple: Couple, inviter_id: str, now: datetime) -> IssuedInvite:
        """A new invite link for the partner who has not joined yet (a previous link stops
        working); 409 once both have joined, or for an integrator's couple."""
        membership = await self._membership(couple)
        waiting = [p.id for p in couple.partners if p.id not in membership.joined]
        if not waiting or membership.left:
            raise Refused(409, "both partners have joined; no invite is needed")
        token = new_invite_token()
        expires = now.timestamp() + self.settings.invite_ttl_seconds
        await self.access.put_invite(token, Invite(couple.id, waiting[0], inviter_id, expires))
        return IssuedInvite(token, invite_url(self.settings.api_url, token), expires)

    async def peek(self, token: str, now: datetime) -> tuple[Couple, Invite]:
        """The couple an invite opens and the invite, without using it; 404/410 with what
        to do when it is unknown, used or expired."""
        found, invite = await self.access.peek_invite(token, now.timestamp())
        couple = await self.store.get_couple(invite.couple_id) if invite else None
        if found is not Redeemed.JOINED or invite is None or couple is None:
            raise _refused(found if found is not Redeemed.JOINED else Redeemed.UNKNOWN)
        return couple, invite

    async def join(self, token: str, me: Details, now: datetime) -> Entry:
        """Use the invite ``token`` (once) to fill its partner slot with ``me``; ``me``'s
        token. 404/410 saying what to do when the invite is unknown, used or expired."""
        found, invite = await self.access.redeem_invite(token, now.timestamp())
        couple = await self.store.get_couple(invite.couple_id) if invite else None
        if invite is None or couple is None:
            raise _refused(found if invite is None else Redeemed.UNKNOWN)
        membership = await self._membership(couple)
        slot = invite.partner_id
        _, couple = await self._update(
            couple,
            lambda c: with_partner(
                c,
                _partner(c, slot),
                name=me.name,
                timezone=me.timezone,
                quiet_hours=me.quiet_hours,
            ),
        )
        membership.joined.append(slot)
        await self.access.save_membership(membership)
        return Entry(couple, slot, await self._new_token(PartnerGrant(couple.id, slot)))

    async def new_token(self, couple: Couple, partner_id: str) -> str:
        """A new token for the partner; their previous one stops working at once."""
        return await self._new_token(PartnerGrant(couple.id, partner_id))

    async def _new_token(self, grant: PartnerGrant) -> str:
        token = new_partner_token()
        await self.access.set_partner_token(grant, token)
        return token

    # -- one's own details -------------------------------------------------------------------
    async def update_partner(
        self, couple: Couple, partner_id: str, changes: dict[str, object], now: datetime
    ) -> Couple:
        """``couple`` with the partner's ``name``, ``timezone`` and/or ``quiet_hours``
        changed (only the keys given), stored; a new zone moves their local rituals."""
        _partner(couple, partner_id)
        before, updated = await self._update(
            couple, lambda c: with_partner(c, _partner(c, partner_id), **changes)
        )
        if _partner(before, partner_id).timezone != _partner(updated, partner_id).timezone:
            await planning.reschedule_couple(self.store, updated, now)
        return updated

    async def update_couple(
        self, couple: Couple, changes: dict[str, object], now: datetime
    ) -> Couple:
        """``couple`` with ``changes`` (``paused``, ``transition_mode``, ``resume_at``...)
        applied to it as stored, safe against a concurrent change; its rituals re-planned
        when it was paused, resumed or its pause until a date changed. Whether it may be
        unpaused is the caller's to check (:meth:`hold`). A pause asked for before the
        couple is activated is remembered: activation then keeps it paused."""
        if "paused" in changes:
            membership = await self.access.membership(couple.id)
            if membership is not None and not membership.activated:
                membership.paused_by_choice = bool(changes["paused"])
                await self.access.save_membership(membership)
        before, updated = await self._update(couple, lambda c: c.model_copy(update=changes))
        moved = (before.paused, before.resume_at) != (updated.paused, updated.resume_at)
        if moved:
            await planning.reschedule_couple(self.store, updated, now)
        return updated

    # -- status ------------------------------------------------------------------------------
    async def status(self, couple_id: str) -> Status:
        """Where the couple stands (``active`` for an integrator's couple)."""
        membership = await self.access.membership(couple_id)
        records = await self.access.channels(couple_id) if membership else []
        return status(membership, records)

    async def hold(self, couple_id: str) -> str | None:
        """Why the couple may not be unpaused now (its 409 message), or None."""
        return hold_reason(await self.status(couple_id))

    async def _membership(self, couple: Couple) -> Membership:
        membership = await self.access.membership(couple.id)
        if membership is None:
            raise Refused(
                409,
                "this couple's partners and channels are managed by the service that created"
                " it (POST /v1/couples); there is nothing to invite or verify",
            )
        return membership

    # -- channels ----------------------------------------------------------------------------
    async def channels(self, couple: Couple, partner_id: str) -> list[ChannelRecord]:
        """The partner's channels in fallback order: pending, active and paused."""
        _partner(couple, partner_id)
        return [r for r in await self._records(couple) if r.partner_id == partner_id]

    async def channel(self, couple: Couple, partner_id: str, channel_id: str) -> ChannelRecord:
        """One of the partner's channels; 404 for another partner's or no channel."""
        record = next((r for r in await self._records(couple) if r.id == channel_id), None)
        if record is None or record.partner_id != partner_id:
            raise Refused(404, "channel not found")
        return record

    async def add_channel(
        self, couple: Couple, partner_id: str, choice: ChannelChoice, field: str, now: datetime
    ) -> ChannelRecord:
        """A new pending channel for the partner, and its code sent through it; ``field``
        names the body field a refused URL is reported on. 409 for an integrator's couple,
        422 past the channel cap or for a URL Apprise or the egress policy refuse, 429 when
        too many codes were sent this hour, 422 when the channel did not take the code."""
        await self._membership(couple)
        _partner(couple, partner_id)
        mine = [r for r in await self.access.channels(couple.id) if r.partner_id == partner_id]
        cap = self.settings.max_channels_per_partner
        if len(mine) >= cap:
            raise Refused.at(
                ["body"], f"a partner may have at most {cap} channels; remove one first"
            )
        channel = await self.check_channel(choice.url, choice.kind, ["body", field])
        record = ChannelRecord(
            id=channel.id,
            partner_id=partner_id,
            kind=channel.kind,
            redacted=channel.redacted,
            state=ChannelState.PENDING,
            secret=self.access.seal(choice.url),
            created_at=now,
        )
        await self.access.save_channel(couple.id, record)
        await self.send_code(couple, record)
        return record

    async def send_code(self, couple: Couple, record: ChannelRecord) -> None:
        """Send a fresh code through ``record``'s channel (an earlier code stops working);
        429 with ``Retry-After`` past ``TANDEM_CODE_SENDS_PER_HOUR``, 409 for a channel
        already verified, 422 when the channel refused the message."""
        if record.state is not ChannelState.PENDING:
            raise Refused(409, "this channel is already verified")
        wait = await self.access.count_send(
            PartnerGrant(couple.id, record.partner_id), self.settings.code_sends_per_hour
        )
        if wait is not None:
            raise Refused(
                429,
                f"too many codes sent this hour; try again in {wait} s",
                {"Retry-After": str(wait)},
            )
        code = new_code()
        digest = code_digest(self.settings.require_secret_key(), record.id, code)
        await self.access.put_code(couple.id, record.id, digest, self.settings.code_ttl_seconds)
        title, body = code_message(code, couple.name)
        result = await self.sender.send(self.access.unseal(record), title=title, body=body)
        if not result.ok:
            raise Refused(
                422,
                f"the code could not be sent through {record.redacted} ({result.error}):"
                " check the address, number or topic, or remove this channel and add another",
            )

    async def verify(
        self, couple: Couple, partner_id: str, channel_id: str, code: str, now: datetime
    ) -> ChannelRecord:
        """Enter ``code`` for the partner's pending channel: the channel, now active (and
        the couple activated if that made it ready). 422 at ``body.code`` with what to do
        when the code is wrong, used up or expired; a verified channel is returned as is."""
        record = await self.channel(couple, partner_id, channel_id)
        if record.state is not ChannelState.PENDING:
            return record
        digest = code_digest(self.settings.require_secret_key(), record.id, code)
        verdict, left = await self.access.try_code(
            couple.id, record.id, digest, self.settings.code_attempts
        )
        if verdict is not Verdict.VERIFIED:
            raise Refused.at(["body", "code"], _CODE_REFUSALS[verdict].format(left=left))
        record = record.model_copy(update={"state": ChannelState.ACTIVE})
        await self.access.save_channel(couple.id, record)
        couple = await self._sync(couple, partner_id)
        await self._activate_if_ready(couple, now)
        return record

    async def set_paused(
        self, couple: Couple, partner_id: str, channel_id: str, paused: bool
    ) -> ChannelRecord:
        """Pause (nudges stop using it) or resume a verified channel of the partner's."""
        record = await self.channel(couple, partner_id, channel_id)
        if record.state is ChannelState.PENDING:
            raise Refused(409, "verify this channel first: enter the code sent to it")
        record = record.model_copy(
            update={"state": ChannelState.PAUSED if paused else ChannelState.ACTIVE}
        )
        await self.access.save_channel(couple.id, record)
        await self._sync(couple, partner_id)
        return record

    async def remove_channel(self, couple: Couple, partner_id: str, channel_id: str) -> None:
        """Remove one of the partner's channels for good."""
        await self.channel(couple, partner_id, channel_id)
        await self.access.delete_channel(couple.id, channel_id)
        await self._sync(couple, partner_id)

    async def leave(self, couple: Couple, partner_id: str, now: datetime) -> None:
        """The partner leaves: their channels are removed, their token stops working, and
        the couple is paused for good (a couple of one has nothing to synchronize)."""
        _partner(couple, partner_id)
        membership = await self.access.membership(couple.id) or Membership(
            couple_id=couple.id, joined=[p.id for p in couple.partners], activated=True
        )
        for record in await self._records(couple):
            if record.partner_id == partner_id:
                await self.access.delete_channel(couple.id, record.id)
        couple = await self._sync(couple, partner_id)
        if partner_id not in membership.left:
            membership.left.append(partner_id)
        await self.access.save_membership(membership)
        _, paused = await self._update(couple, lambda c: c.model_copy(update={"paused": True}))
        await planning.reschedule_couple(self.store, paused, now)
        await self.access.revoke_partner_token(couple.id, partner_id)

    # -- stop links (no login) ---------------------------------------------------------------
    async def stop_target(self, grant: StopGrant) -> tuple[Couple, list[ChannelRecord]]:
        """The couple a stop link names and its partner's verified channels (the one the
        link names, if it names one); 404 when the couple, partner or channel is gone, 410
        once the partner left."""
        couple = await self.store.get_couple(grant.couple_id)
        if couple is None or couple.partner(grant.partner_id) is None:
            raise Refused(404, "this couple no longer exists; nothing will be sent")
        membership = await self.access.membership(couple.id)
        if membership is not None and grant.partner_id in membership.left:
            raise Refused(410, "you have left this couple; nothing will be sent to you")
        records = [
            r
            for r in await self._records(couple)
            if r.partner_id == grant.partner_id
            and r.state is not ChannelState.PENDING
            and grant.channel_id in (None, r.id)
        ]
        if grant.channel_id is not None and not records:
            raise Refused(404, "this channel was removed; nothing more is sent to it")
        return couple, records

    async def stop(
        self, grant: StopGrant, leave: bool, channel_id: str | None, now: datetime
    ) -> str:
        """Act on a stop link: leave the couple, or pause the channel it (or
        ``channel_id``) names -- every verified channel of the partner when neither names
        one. Returns what was done, in words for the partner."""
        couple, records = await self.stop_target(grant)
        if leave:
            await self.leave(couple, grant.partner_id, now)
            return "You left the couple. Nothing more will be sent to you."
        chosen = [r for r in records if channel_id in (None, r.id)]
        if not chosen:
            raise Refused(404, "channel not found")
        for record in chosen:
            if record.state is ChannelState.ACTIVE:
                await self.set_paused(couple, grant.partner_id, record.id, True)
        names = ", ".join(r.redacted for r in chosen)
        return f"Paused: {names}. No more nudges go there until you resume it on your page."

    # -- internals ---------------------------------------------------------------------------
    async def _records(self, couple: Couple) -> list[ChannelRecord]:
        """The couple's channel records; an integrator's channels are adopted first (as
        active records, their URLs read from the vault), so a stop link works for them."""
        records = await self.access.channels(couple.id)
        known = {r.id for r in records}
        for partner in couple.partners:
            for index, channel in enumerate(partner.channels):
                url = (
                    None
                    if channel.id in known
                    else await self.store.vault.channel_url(couple.id, channel.id)
                )
                if url is None:
                    continue
                adopted = ChannelRecord(
                    id=channel.id,
                    partner_id=partner.id,
                    kind=channel.kind,
                    redacted=channel.redacted,
                    state=ChannelState.ACTIVE,
                    secret=self.access.seal(url),
                    # records are kept in created_at order: the given fallback order
                    created_at=couple.created_at + timedelta(microseconds=index),
                )
                await self.access.save_channel(couple.id, adopted)
                records.append(adopted)
        return records

    async def _sync(self, couple: Couple, partner_id: str) -> Couple:
        """Make the partner's channels in the couple and in the vault match their records:
        active ones added first (vault, then couple), the rest dropped last (couple, then
        vault), so no nudge ever names a channel the notifier cannot find."""
        records = [r for r in await self.access.channels(couple.id) if r.partner_id == partner_id]
        put = {r.id: self._vault_url(couple.id, r) for r in records if r.state == "active"}
        await self.access.publish(couple.id, put, [])
        fresh, updated = await self._update(couple, lambda c: with_channels(c, partner_id, records))
        gone = [c.id for c in _partner(fresh, partner_id).channels if c.id not in put]
        gone += [r.id for r in records if r.state != "active"]
        await self.access.publish(couple.id, {}, sorted(set(gone)))
        return updated

    def _vault_url(self, couple_id: str, record: ChannelRecord) -> str:
        """The URL the notifier gets: an e-mail channel's carries ``List-Unsubscribe``
        (this channel's stop link) and one-click ``List-Unsubscribe-Post``."""
        url = self.access.unseal(record)
        if record.kind != "email":
            return url
        key = self.settings.require_secret_key()
        stop = stop_link(key, self.settings.api_url, couple_id, record.partner_id, record.id)
        return with_unsubscribe(url, stop)

    async def _activate_if_ready(self, couple: Couple, now: datetime) -> None:
        """Unpause and schedule a started couple the first time it is ready -- unless a
        partner paused it on purpose meanwhile: then only the wait is over."""
        membership = await self.access.membership(couple.id)
        if membership is None or membership.activated:
            return
        if status(membership, await self.access.channels(couple.id)) is not Status.ACTIVE:
            return
        membership.activated = True
        await self.access.save_membership(membership)
        if membership.paused_by_choice:
            return
        _, active = await self._update(couple, lambda c: c.model_copy(update={"paused": False}))
        await planning.reschedule_couple(self.store, active, now)

    async def _update(
        self, couple: Couple, change: Callable[[Couple], Couple]
    ) -> tuple[Couple, Couple]:
        """The couple before and after ``change``, applied to it as stored (safe against a
        concurrent change, see :meth:`SchedulerStore.update_couple`); 404 once it is gone."""
        found = await self.store.update_couple(couple.id, change)
        if found is None:
            raise Refused(404, "couple not found")
        return found


_CODE_REFUSALS = {
    Verdict.WRONG: "that code is not right: check it and try again ({left} attempts left)",
    Verdict.VOID: "that code is not right, and that was the last attempt: send a new code",
    Verdict.NO_CODE: "no code is waiting for this channel (it expired or was used up):"
    " send a new code",
}


def _partner(couple: Couple, partner_id: str) -> Partner:
    partner = couple.partner(partner_id)
    if partner is None:
        raise Refused(404, "partner not found")
    return partner


def _refused(found: Redeemed) -> Refused:
    status_code, message = REFUSALS[found]
    return Refused(status_code, message)
