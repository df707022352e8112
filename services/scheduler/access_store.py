"""The Redis adapter of partners' own access (``partners``, ``invites``, ``verification``):
partner tokens, invites, memberships, partners' channels and verification codes.

Keys, all under ``<prefix>:access``; a credential or code is only ever stored as a digest:

- ``ptoken:<sha256>`` -> ``couple_id partner_id``; ``partner:<id>:token`` -> its digest
  (so issuing a new token voids the old one);
- ``invite:<sha256>`` (hash: couple_id, partner_id, inviter_id, expires, used), kept a day
  past its expiry so a late click hears "expired", not "unknown";
  ``couple:<id>:invite`` -> the digest of the couple's live invite;
- ``couple:<id>:membership`` (JSON) and ``couple:<id>:channels`` (hash: channel id -> JSON
  :class:`~services.scheduler.partners.ChannelRecord`, the URL inside encrypted);
- ``code:<channel id>`` (hash: digest, attempts) with the code's TTL;
  ``sends:<partner id>`` a counter of codes sent, reset an hour after the first.

The couple itself stays where :class:`~services.scheduler.store.SchedulerStore` keeps it,
and active channels where the notifier reads them (:class:`~shared.vault.Vault`).
"""

from __future__ import annotations

import hashlib

from services.scheduler.invites import Invite, Redeemed
from services.scheduler.partners import ChannelRecord, Membership, PartnerGrant
from services.scheduler.store import SchedulerStore
from services.scheduler.verification import Verdict
from shared.vault import Rotation

# KEYS: invite hash   ARGV: now
# Single use, atomically: the first redeemer marks it used; later ones hear "used".
_REDEEM = """
local fields = redis.call(
  'HMGET', KEYS[1], 'couple_id', 'partner_id', 'inviter_id', 'expires', 'used')
if not fields[1] then return {'unknown'} end
if fields[5] == '1' then return {'used'} end
if tonumber(fields[4]) < tonumber(ARGV[1]) then return {'expired'} end
redis.call('HSET', KEYS[1], 'used', '1')
return {'joined', fields[1], fields[2], fields[3], fields[4]}
"""

# KEYS: code hash   ARGV: digest, max attempts
# One attempt counted per entry; the right code or the last wrong one deletes the code.
_TRY = """
local stored = redis.call('HGET', KEYS[1], 'digest')
if not stored then return {'no_code', 0} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if stored == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {'verified', 0}
end
local left = tonumber(ARGV[2]) - attempts
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return {'void', 0}
end
return {'wrong', left}
"""

INVITE_KEEP_SECONDS = 86400
SEND_WINDOW_SECONDS = 3600


def digest(secret: str) -> str:
    """How a credential is stored: its SHA-256 (random tokens need no salt)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class AccessStore:
    """Partners' credentials, invites, memberships, channels and codes in the scheduler's
    Redis (same connection, prefix and vault as ``store``)."""

    def __init__(self, store: SchedulerStore) -> None:
        self.store = store
        self.redis = store.redis
        self.vault = store.vault
        self._k = store.k
        self._redeem = self.redis.register_script(_REDEEM)
        self._try = self.redis.register_script(_TRY)

    def _key(self, *parts: str) -> str:
        return self._k("access", *parts)

    # -- partner tokens -------------------------------------------------------------------
    async def grant_for_token(self, token: str) -> PartnerGrant | None:
        """The partner a token opens, or None for no partner token."""
        found = await self.redis.get(self._key("ptoken", digest(token)))
        if not found:
            return None
        couple_id, _, partner_id = str(found).partition(" ")
        return PartnerGrant(couple_id, partner_id)

    async def set_partner_token(self, grant: PartnerGrant, token: str) -> None:
        """Make ``token`` the partner's one token: a previous one stops working at once."""
        await self._replace_token(grant.partner_id, f"{grant.couple_id} {grant.partner_id}", token)

    async def revoke_partner_token(self, partner_id: str) -> None:
        """The partner's token stops working."""
        await self._replace_token(partner_id, None, None)

    async def _replace_token(self, partner_id: str, value: str | None, token: str | None) -> None:
        pointer = self._key("partner", partner_id, "token")
        old = await self.redis.get(pointer)
        async with self.redis.pipeline(transaction=True) as pipe:
            if old:
                pipe.delete(self._key("ptoken", str(old)))
            if token is None or value is None:
                pipe.delete(pointer)
            else:
                pipe.set(self._key("ptoken", digest(token)), value)
                pipe.set(pointer, digest(token))
            await pipe.execute()

    # -- invites --------------------------------------------------------------------------
    async def put_invite(self, token: str, invite: Invite) -> None:
        """Store ``invite`` under ``token``'s digest, voiding the couple's previous invite."""
        pointer = self._key("couple", invite.couple_id, "invite")
        old = await self.redis.get(pointer)
        key = self._key("invite", digest(token))
        async with self.redis.pipeline(transaction=True) as pipe:
            if old:
                pipe.delete(self._key("invite", str(old)))
            pipe.hset(
                key,
                mapping={
                    "couple_id": invite.couple_id,
                    "partner_id": invite.partner_id,
                    "inviter_id": invite.inviter_id,
                    "expires": repr(invite.expires),
                    "used": "0",
                },
            )
            pipe.expireat(key, int(invite.expires) + INVITE_KEEP_SECONDS)
            pipe.set(pointer, digest(token))
            await pipe.execute()

    async def peek_invite(self, token: str, now: float) -> tuple[Redeemed, Invite | None]:
        """What the invite ``token`` would do, without using it."""
        raw = await self.redis.hgetall(self._key("invite", digest(token)))
        if not raw:
            return Redeemed.UNKNOWN, None
        invite = Invite(
            raw["couple_id"], raw["partner_id"], raw["inviter_id"], float(raw["expires"])
        )
        if raw.get("used") == "1":
            return Redeemed.USED, invite
        if invite.expires < now:
            return Redeemed.EXPIRED, invite
        return Redeemed.JOINED, invite

    async def redeem_invite(self, token: str, now: float) -> tuple[Redeemed, Invite | None]:
        """Use the invite ``token`` (atomically, once): ``JOINED`` with the invite, or why
        not (``USED``, ``EXPIRED``, ``UNKNOWN``) and None."""
        found = await self._redeem(keys=[self._key("invite", digest(token))], args=[repr(now)])
        verdict = Redeemed(found[0])
        if verdict is not Redeemed.JOINED:
            return verdict, None
        return verdict, Invite(found[1], found[2], found[3], float(found[4]))

    # -- memberships ----------------------------------------------------------------------
    async def membership(self, couple_id: str) -> Membership | None:
        """The started couple's membership; None for an integrator's couple."""
        raw = await self.redis.get(self._key("couple", couple_id, "membership"))
        return Membership.model_validate_json(raw) if raw else None

    async def save_membership(self, membership: Membership) -> None:
        await self.redis.set(
            self._key("couple", membership.couple_id, "membership"), membership.model_dump_json()
        )

    # -- channels -------------------------------------------------------------------------
    async def channels(self, couple_id: str) -> list[ChannelRecord]:
        """Every channel of the couple's partners, in the order they were added."""
        raw = await self.redis.hvals(self._key("couple", couple_id, "channels"))
        found = [ChannelRecord.model_validate_json(r) for r in raw]
        return sorted(found, key=lambda r: (r.created_at, r.id))

    async def channel(self, couple_id: str, channel_id: str) -> ChannelRecord | None:
        raw = await self.redis.hget(self._key("couple", couple_id, "channels"), channel_id)
        return ChannelRecord.model_validate_json(raw) if raw else None

    async def save_channel(self, couple_id: str, record: ChannelRecord) -> None:
        await self.redis.hset(
            self._key("couple", couple_id, "channels"), record.id, record.model_dump_json()
        )

    async def delete_channel(self, couple_id: str, channel_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("couple", couple_id, "channels"), channel_id)
            pipe.delete(self._key("code", channel_id))
            await pipe.execute()

    def seal(self, url: str) -> str:
        """``url`` encrypted as the vault encrypts channel URLs."""
        return self.vault.box.encrypt(url)

    def unseal(self, record: ChannelRecord) -> str:
        """The plain URL of ``record`` (keep it no longer than needed)."""
        return self.vault.box.decrypt(record.secret)

    async def publish(self, couple_id: str, put: dict[str, str], drop: list[str]) -> None:
        """Write channels where the notifier reads them: ``put`` (channel id -> plain URL)
        added or replaced, ``drop`` removed."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for channel_id, url in put.items():
                self.vault.put_channel(pipe, couple_id, channel_id, url)
            for channel_id in drop:
                self.vault.drop_channel(pipe, couple_id, channel_id)
            await pipe.execute()

    # -- codes ----------------------------------------------------------------------------
    async def count_send(self, partner_id: str, limit: int) -> int | None:
        """Count one code sent for ``partner_id``: None if within ``limit`` an hour, else
        the seconds until the next send is allowed (and nothing counted)."""
        key = self._key("sends", partner_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, SEND_WINDOW_SECONDS, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        if int(count) <= limit:
            return None
        await self.redis.decr(key)
        return max(1, int(ttl))

    async def put_code(self, channel_id: str, code_digest: str, ttl: int) -> None:
        """Store a fresh code's digest (replacing any earlier code, attempts reset)."""
        key = self._key("code", channel_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"digest": code_digest, "attempts": "0"})
            pipe.expire(key, ttl)
            await pipe.execute()

    async def try_code(
        self, channel_id: str, code_digest: str, max_attempts: int
    ) -> tuple[Verdict, int]:
        """Enter a code (atomically): the verdict and the attempts left after it."""
        found = await self._try(
            keys=[self._key("code", channel_id)], args=[code_digest, max_attempts]
        )
        return Verdict(found[0]), int(found[1])

    async def rotate(self) -> Rotation:
        """Re-encrypt every channel record's URL under the vault box's current key (as
        :meth:`shared.vault.Vault.rotate` does for the vault; ``tandem rotate-keys`` runs
        both). Idempotent; a record changed meanwhile is left as it is."""
        done = Rotation()
        box = self.vault.box
        async for key in self.redis.scan_iter(match=self._key("couple", "*", "channels")):
            done.couples += 1
            for channel_id, raw in (await self.redis.hgetall(key)).items():
                record = ChannelRecord.model_validate_json(raw)
                if box.is_current(record.secret):
                    done.current += 1
                    continue
                try:
                    fresh = record.model_copy(update={"secret": box.rotate(record.secret)})
                except ValueError:
                    done.unreadable += 1
                    continue
                swapped = await self.vault.swap(key, channel_id, raw, fresh.model_dump_json())
                done.rotated += int(swapped)
                done.current += 1 - int(swapped)
        return done

    async def forget_couple(self, couple_id: str, partner_ids: list[str]) -> None:
        """Remove everything kept here for a deleted couple."""
        records = await self.channels(couple_id)
        for partner_id in partner_ids:
            await self.revoke_partner_token(partner_id)
        pointer = self._key("couple", couple_id, "invite")
        old = await self.redis.get(pointer)
        async with self.redis.pipeline(transaction=True) as pipe:
            if old:
                pipe.delete(self._key("invite", str(old)))
            pipe.delete(pointer, self._key("couple", couple_id, "membership"))
            pipe.delete(self._key("couple", couple_id, "channels"))
            for record in records:
                pipe.delete(self._key("code", record.id))
            for partner_id in partner_ids:
                pipe.delete(self._key("sends", partner_id))
            await pipe.execute()
