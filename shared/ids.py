"""Identifiers: random ids for entities, deterministic ids for occurrences."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_id(prefix: str) -> str:
    """A random, URL-safe id such as ``cpl_3kq9x2m4v7ab``, typed by its prefix."""
    return f"{prefix}_{secrets.token_hex(6)}"


def occurrence_id(ritual_id: str, instant: datetime, partner_id: str | None = None) -> str:
    """The id of one firing of a ritual, the same on every replica and every retry.

    ``instant`` is the scheduled instant (aware); in "local" delivery each partner has an
    occurrence of their own, so the partner id is part of it.
    """
    if instant.tzinfo is None:
        raise ValueError("occurrence instants must be timezone-aware")
    stamp = instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{ritual_id}@{stamp}" + (f"/{partner_id}" if partner_id else "")
