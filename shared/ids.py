"""Identifiers: random ids for entities, deterministic ids for occurrences.

An occurrence id names one firing of a ritual, the same on every replica and every retry::

    rit_…@20261122T200000Z[/prt_…][~manual.<nonce>][~snooze]

the ritual, the scheduled instant (UTC, to the second), the partner in "local" delivery
(each partner has an occurrence of their own), a manual trigger's nonce, and a derivation:
``~snooze`` is the one re-fire a partner's snooze causes. :class:`OccurrenceId` is the only
thing that writes or reads that format.

A scheduled firing is deterministic (no ``~manual``): every replica and retry names it the
same, so downstream dedupes it. A manual trigger ("send us a test nudge now") is a new
occurrence each time: ``~manual.<nonce>`` carries 8 random hex digits
(:func:`manual_nonce`), so two triggers within one second are two occurrences. Its snooze
keeps the nonce: ``…~manual.3f9a2b1c~snooze``.

A celebration ("you both did it") is named after the *slot* it celebrates, which is a
wall-clock minute rather than an instant (both partners' "local" firings of one slot share
it): ``rit_…@20261122T2000~both`` (:func:`celebration_id`). It is not an answerable
occurrence, so :meth:`OccurrenceId.parse` rejects it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal, get_args

Derivation = Literal["snooze"]
DERIVATIONS: tuple[Derivation, ...] = get_args(Derivation)
# How an instant and a slot (wall-clock minute, no zone) are spelled inside ids.
INSTANT_FORMAT = "%Y%m%dT%H%M%SZ"
SLOT_FORMAT = "%Y%m%dT%H%M"
RITUAL_PREFIX = "rit_"
CELEBRATION_SUFFIX = "both"
MANUAL_TAG = "manual"
_SEPARATORS = ("@", "/", "~")
_NONCE = re.compile(r"[0-9a-f]{8}")


def new_id(prefix: str) -> str:
    """A random, URL-safe id such as ``cpl_3kq9x2m4v7ab``, typed by its prefix."""
    return f"{prefix}_{secrets.token_hex(6)}"


def manual_nonce() -> str:
    """The random part that makes a manual trigger an occurrence of its own."""
    return secrets.token_hex(4)


def id_pattern(prefix: str) -> re.Pattern[str]:
    """What :func:`new_id` makes for ``prefix``: checked before an id from outside reaches
    a Redis key, so no id can collide with the key layout."""
    return re.compile(rf"{prefix}_[0-9a-f]{{12}}")


@dataclass(frozen=True)
class OccurrenceId:
    """The parts of an occurrence id (see the module docstring); ``str()`` is the id.

    ``instant`` must be timezone-aware; it is kept in UTC, to the second, as the id spells
    it, so ``OccurrenceId.parse(str(x)) == x``.
    """

    ritual_id: str
    instant: datetime
    partner_id: str | None = None
    derivation: Derivation | None = None
    manual: str | None = None  # a manual trigger's nonce (:func:`manual_nonce`)

    def __post_init__(self) -> None:
        if self.instant.tzinfo is None:
            raise ValueError("occurrence instants must be timezone-aware")
        object.__setattr__(self, "instant", self.instant.astimezone(UTC).replace(microsecond=0))
        for part in (self.ritual_id, self.partner_id or ""):
            if any(sep in part for sep in _SEPARATORS):
                raise ValueError(f"an id inside an occurrence id may not contain @ / ~: {part!r}")
        if self.partner_id == "":
            raise ValueError("partner_id must be None or an id")
        if self.derivation is not None and self.derivation not in DERIVATIONS:
            raise ValueError(f"unknown derivation {self.derivation!r}")
        if self.manual is not None and not _NONCE.fullmatch(self.manual):
            raise ValueError(f"a manual nonce is 8 hex digits: {self.manual!r}")

    def __str__(self) -> str:
        text = f"{self.ritual_id}@{self.instant.strftime(INSTANT_FORMAT)}"
        if self.partner_id is not None:
            text += f"/{self.partner_id}"
        if self.manual is not None:
            text += f"~{MANUAL_TAG}.{self.manual}"
        if self.derivation is not None:
            text += f"~{self.derivation}"
        return text

    @classmethod
    def parse(cls, text: str) -> OccurrenceId:
        """The parts of ``text``; ValueError if it is not an occurrence id."""
        base, *tags = text.split("~")
        ritual_id, sep, rest = base.partition("@")
        stamp, _, partner = rest.partition("/")
        manual = None
        if tags and tags[0].startswith(f"{MANUAL_TAG}."):
            manual = tags.pop(0).removeprefix(f"{MANUAL_TAG}.")
        derivation = tags.pop(0) if tags else None
        derived = next((d for d in DERIVATIONS if d == derivation), None)
        if (
            not sep
            or not ritual_id.startswith(RITUAL_PREFIX)
            or tags
            or (derivation is not None and not derived)
            or (manual is not None and not _NONCE.fullmatch(manual))
        ):
            raise ValueError(f"not an occurrence id: {text!r}")
        try:
            instant = datetime.strptime(stamp, INSTANT_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"not an occurrence id: {text!r}") from None
        return cls(ritual_id, instant, partner or None, derived, manual)

    @property
    def origin(self) -> OccurrenceId:
        """The original (scheduled or manual) firing this one derives from (itself if none);
        a manual firing's origin keeps its nonce."""
        return replace(self, derivation=None)

    def snoozed(self, partner_id: str) -> OccurrenceId:
        """The one re-fire a snooze may cause, for one partner."""
        return replace(self, partner_id=partner_id, derivation="snooze")


def slot_key(wall_time: datetime) -> str:
    """The slot of a firing: its wall-clock time, to the minute, without a zone."""
    return wall_time.strftime(SLOT_FORMAT)


def celebration_id(ritual_id: str, wall_time: datetime) -> str:
    """The id of the "you both did it" note for the slot at ``wall_time``."""
    return f"{ritual_id}@{slot_key(wall_time)}~{CELEBRATION_SUFFIX}"
