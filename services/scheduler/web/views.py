"""What the pages show, made from what the store answers: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.scheduler.planning import Upcoming
from services.scheduler.rituals import Couple


def local_time(instant: str | datetime, zone: str) -> str:
    """``instant`` (ISO, "Z" allowed) as a person in ``zone`` reads it: "Fri 27 Nov, 21:00"."""
    when = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    return when.astimezone(ZoneInfo(zone)).strftime("%a %-d %b, %H:%M")


def next_for_each(couple: Couple, upcoming: Iterable[Upcoming]) -> list[dict[str, str]]:
    """Each partner's next firing among ``upcoming`` (soonest first), in their own zone."""
    out = []
    for partner in couple.partners:
        first = next((u for u in upcoming if partner.id in u["scheduled_for"]), None)
        if first is not None:
            when = local_time(first["scheduled_for"][partner.id], partner.timezone)
            planner = couple.partner(first["planner"]) if first["planner"] else None
            out.append(
                {
                    "name": partner.name,
                    "when": when,
                    "zone": partner.timezone,
                    "planner": planner.name if planner else "",
                }
            )
    return out


def delivery_status(
    couple: Couple, nudges: Sequence[Mapping[str, Any]], occurrence_ids: Iterable[str]
) -> dict[str, Any]:
    """Whether each partner's phone got the nudges of ``occurrence_ids`` (a test nudge):
    per partner "pending", "retrying", "failed" or "delivered", and their answer if any."""
    wanted = set(occurrence_ids)
    found = [n for n in nudges if n["occurrence_id"] in wanted]
    partners = []
    for partner in couple.partners:
        entry: dict[str, Any] = {}
        for nudge in found:
            entry = nudge["partners"].get(partner.id) or entry
        partners.append(
            {
                "id": partner.id,
                "name": partner.name,
                "status": entry.get("status", "pending"),
                "answer": entry.get("answer"),
            }
        )
    done = all(p["status"] in ("delivered", "failed") for p in partners)
    return {"partners": partners, "settled": done}


def history_rows(
    couple: Couple, nudges: Sequence[Mapping[str, Any]], zone: str
) -> list[dict[str, Any]]:
    """The couple's recent nudges for the "Our rhythm" table: when (in ``zone``, the
    reader's), what, and for each partner whether it reached them and what they answered."""
    rows = []
    for nudge in nudges:
        cells = []
        for partner in couple.partners:
            entry = nudge["partners"].get(partner.id)
            if entry is None:
                cells.append({"status": "—", "answer": ""})
                continue
            cells.append({"status": entry.get("status", "pending"), "answer": entry.get("answer")})
        rows.append(
            {
                "when": local_time(nudge["scheduled_for"], zone),
                "title": nudge["title"],
                "test": nudge.get("trigger") == "manual",
                "cells": cells,
            }
        )
    return rows
