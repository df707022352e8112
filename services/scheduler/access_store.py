"""The Redis adapter of partners' own access (``partners``, ``invites``, ``verification``):
partner tokens, invites, memberships, partners' channels and verification codes.

Keys, all under ``<prefix>:access``; a credential or code is only ever stored as a digest.
Per couple, each carrying the couple's hash tag (:meth:`shared.redis.Keys.tag`) so that a
transaction or script over them stays on one Redis Cluster slot:

- ``{<couple>}:token:<partner id>`` -> the digest of the partner's one live token;
- ``{<couple>}:invite`` -> the digest of the couple's live invite;
- ``{<couple>}:membership`` (JSON) and ``{<couple>}:channels`` (hash: channel id -> JSON
  :class:`~services.scheduler.partners.ChannelRecord`, the URL inside encrypted);
- ``{<couple>}:code:<channel id>`` (hash: digest, attempts) with the code's TTL;
  ``{<couple>}:sends:<partner id>`` a counter of codes sent, reset an hour after the first.

Two global indexes, looked up by a secret's digest, are never written in the same
transaction or script as a per-couple key (they live on other slots):

- ``ptoken:<sha256>`` -> ``couple_id partner_id``;
- ``invite:<sha256>`` (hash: couple_id, partner_id, inviter_id, expires, used), kept a day
  past its expiry so a late click hears "expired", not "unknown".

The per-couple pointer is the truth and the index only a way to find it: a token or invite
opens something only while its couple's pointer still names its digest, so an index entry
left behind (a crash between the two writes, or two replacements racing) opens nothing.

The couple itself stays where :class:`~services.scheduler.store.SchedulerStore` keeps it,
and active channels where the notifier reads them (:class:`~shared.vault.Vault`).
"""

from __future__ import annotations

import hashlib

from services.scheduler.invites import Invite, Redeemed
from services.scheduler.partners import ChannelRecord, Membership, PartnerGrant
from services.scheduler.store import SchedulerStore
from services.scheduler.verification import Verdict
from shared.redis import Keys
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

# KEYS: send counter   ARGV: window seconds, limit
# Counts one send, or (past the limit) counts nothing and answers the seconds to wait. The
# window starts at the first send (EXPIRE only on a counter without one: ``EXPIRE ... NX``
# would say the same but needs Redis 7, and Redis 6.2 is supported).
# Replace a channel record only if it still holds what was read (a record rewritten
# meanwhile is left as it is): key rotation racing a partner's change.
_SWAP_FIELD = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

_COUNT_SEND = """
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if count <= tonumber(ARGV[2]) then return 0 end
redis.call('DECR', KEYS[1])
return math.max(1, redis.call('TTL', KEYS[1]))
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
        self._count_send = self.redis.register_script(_COUNT_SEND)
        self._swap_field = self.redis.register_script(_SWAP_FIELD)

    def _global(self, *parts: str) -> str:
        """A key of a global index (its own slot)."""
        return self._k("access", *parts)

    def _couple(self, couple_id: str, *parts: str) -> str:
        """A key of one couple, on the couple's slot."""
        return self._k("access", Keys.tag(couple_id), *parts)

    # -- partner tokens -------------------------------------------------------------------
    async def grant_for_token(self, token: str) -> PartnerGrant | None:
        """The partner a token opens, or None for no partner token (or one replaced or
        revoked since)."""
        token_digest = digest(token)
        found = await self.redis.get(self._global("ptoken", token_digest))
        if not found:
            return None
        couple_id, _, partner_id = str(found).partition(" ")
        live = await self.redis.get(self._couple(couple_id, "token", partner_id))
        return PartnerGrant(couple_id, partner_id) if live == token_digest else None

    async def set_partner_token(self, grant: PartnerGrant, token: str) -> None:
        """Make ``token`` the partner's one token: a previous one stops working at once."""
        token_digest = digest(token)
        # The index first, then the pointer that makes it live, then the old entry goes.
        await self.redis.set(
            self._global("ptoken", token_digest), f"{grant.couple_id} {grant.partner_id}"
        )
        pointer = self._couple(grant.couple_id, "token", grant.partner_id)
        old = await self.redis.set(pointer, token_digest, get=True)
        if old and old != token_digest:
            await self.redis.delete(self._global("ptoken", str(old)))

    async def revoke_partner_token(self, couple_id: str, partner_id: str) -> None:
        """The partner's token stops working."""
        old = await self.redis.getdel(self._couple(couple_id, "token", partner_id))
        if old:
            await self.redis.delete(self._global("ptoken", str(old)))

    # -- invites --------------------------------------------------------------------------
    async def put_invite(self, token: str, invite: Invite) -> None:
        """Store ``invite`` under ``token``'s digest, voiding the couple's previous invite."""
        invite_digest = digest(token)
        key = self._global("invite", invite_digest)
        async with self.redis.pipeline(transaction=True) as pipe:  # one key: one slot
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
            await pipe.execute()
        old = await self.redis.set(
            self._couple(invite.couple_id, "invite"), invite_digest, get=True
        )
        if old and old != invite_digest:
            await self.redis.delete(self._global("invite", str(old)))

    async def _is_live_invite(self, couple_id: str, invite_digest: str) -> bool:
        return await self.redis.get(self._couple(couple_id, "invite")) == invite_digest

    async def peek_invite(self, token: str, now: float) -> tuple[Redeemed, Invite | None]:
        """What the invite ``token`` would do, without using it."""
        invite_digest = digest(token)
        raw = await self.redis.hgetall(self._global("invite", invite_digest))
        if not raw or not await self._is_live_invite(raw["couple_id"], invite_digest):
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
        not (``USED``, ``EXPIRED``, ``UNKNOWN``) and None. An invite replaced by a newer one
        is unknown."""
        invite_digest = digest(token)
        key = self._global("invite", invite_digest)
        couple_id = await self.redis.hget(key, "couple_id")
        if couple_id is None or not await self._is_live_invite(couple_id, invite_digest):
            return Redeemed.UNKNOWN, None
        found = await self._redeem(keys=[key], args=[repr(now)])
        verdict = Redeemed(found[0])
        if verdict is not Redeemed.JOINED:
            return verdict, None
        return verdict, Invite(found[1], found[2], found[3], float(found[4]))

    # -- memberships ----------------------------------------------------------------------
    async def membership(self, couple_id: str) -> Membership | None:
        """The started couple's membership; None for an integrator's couple."""
        raw = await self.redis.get(self._couple(couple_id, "membership"))
        return Membership.model_validate_json(raw) if raw else None

    async def save_membership(self, membership: Membership) -> None:
        await self.redis.set(
            self._couple(membership.couple_id, "membership"), membership.model_dump_json()
        )

    # -- channels -------------------------------------------------------------------------
    async def channels(self, couple_id: str) -> list[ChannelRecord]:
        """Every channel of the couple's partners, in the order they were added."""
        raw = await self.redis.hvals(self._couple(couple_id, "channels"))
        found = [ChannelRecord.model_validate_json(r) for r in raw]
        return sorted(found, key=lambda r: (r.created_at, r.id))

    async def channel(self, couple_id: str, channel_id: str) -> ChannelRecord | None:
        raw = await self.redis.hget(self._couple(couple_id, "channels"), channel_id)
        return ChannelRecord.model_validate_json(raw) if raw else None

    async def save_channel(self, couple_id: str, record: ChannelRecord) -> None:
        await self.redis.hset(
            self._couple(couple_id, "channels"), record.id, record.model_dump_json()
        )

    async def delete_channel(self, couple_id: str, channel_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._couple(couple_id, "channels"), channel_id)
            pipe.delete(self._couple(couple_id, "code", channel_id))
            await pipe.execute()

    def seal(self, url: str) -> str:
        """``url`` encrypted as the vault encrypts channel URLs."""
        return self.vault.box.encrypt(url.encode())

    def unseal(self, record: ChannelRecord) -> str:
        """The plain URL of ``record`` (keep it no longer than needed)."""
        return self.vault.box.decrypt(record.secret).decode()

    async def publish(self, couple_id: str, put: dict[str, str], drop: list[str]) -> None:
        """Write channels where the notifier reads them: ``put`` (channel id -> plain URL)
        added or replaced, ``drop`` removed."""
        await self.vault.update_channels(couple_id, put, drop)

    # -- codes ----------------------------------------------------------------------------
    async def count_send(self, grant: PartnerGrant, limit: int) -> int | None:
        """Count one code sent for the partner: None if within ``limit`` an hour, else the
        seconds until the next send is allowed (and nothing counted)."""
        key = self._couple(grant.couple_id, "sends", grant.partner_id)
        wait = int(await self._count_send(keys=[key], args=[SEND_WINDOW_SECONDS, limit]))
        return wait or None

    async def put_code(self, couple_id: str, channel_id: str, code_digest: str, ttl: int) -> None:
        """Store a fresh code's digest (replacing any earlier code, attempts reset)."""
        key = self._couple(couple_id, "code", channel_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"digest": code_digest, "attempts": "0"})
            pipe.expire(key, ttl)
            await pipe.execute()

    async def try_code(
        self, couple_id: str, channel_id: str, code_digest: str, max_attempts: int
    ) -> tuple[Verdict, int]:
        """Enter a code (atomically): the verdict and the attempts left after it."""
        found = await self._try(
            keys=[self._couple(couple_id, "code", channel_id)], args=[code_digest, max_attempts]
        )
        return Verdict(found[0]), int(found[1])

    async def rotate(self) -> Rotation:
        """Re-encrypt every channel record's URL under the vault box's current key (as
        :meth:`shared.vault.Vault.rotate` does for the vault; ``tandem rotate-keys`` runs
        both). Idempotent; a record changed meanwhile is left as it is."""
        done = Rotation()
        box = self.vault.box
        async for key in self.redis.scan_iter(match=self._global("*", "channels")):
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
                swapped = await self._swap_field(
                    keys=[key], args=[channel_id, raw, fresh.model_dump_json()]
                )
                done.rotated += int(swapped)
                done.current += 1 - int(swapped)
        return done

    async def forget_couple(self, couple_id: str, partner_ids: list[str]) -> None:
        """Remove everything kept here for a deleted couple: its global index entries first,
        then its own keys (one slot, one transaction)."""
        records = await self.channels(couple_id)
        for partner_id in partner_ids:
            await self.revoke_partner_token(couple_id, partner_id)
        old = await self.redis.getdel(self._couple(couple_id, "invite"))
        if old:
            await self.redis.delete(self._global("invite", str(old)))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._couple(couple_id, "membership"), self._couple(couple_id, "channels"))
            for record in records:
                pipe.delete(self._couple(couple_id, "code", record.id))
            for partner_id in partner_ids:
                pipe.delete(self._couple(couple_id, "sends", partner_id))
            await pipe.execute()
