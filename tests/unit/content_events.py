"""A ``ritual.due`` for content's unit tests: Alex in Berlin and Sam in New York."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import PartnerInfo, Recipient, RitualDue

ALEX = PartnerInfo(id="p_alex", name="Alex", timezone="Europe/Berlin")
SAM = PartnerInfo(id="p_sam", name="Sam", timezone="America/New_York")


def recipient(p: PartnerInfo) -> Recipient:
    return Recipient(id=p.id, name=p.name, timezone=p.timezone, channels=[])


def ritual_due(kind: str, **kw: object) -> RitualDue:
    """A together occurrence of ``kind`` for both partners; ``kw`` sets or overrides any
    field (``title`` at least)."""
    base: dict[str, object] = dict(
        occurrence_id="rit_1@20261123T200000Z",
        couple_id="cpl_1",
        couple_name="Alex & Sam",
        ritual_id="rit_1",
        kind=kind,
        delivery="together",
        scheduled_for=datetime(2026, 11, 23, 20, tzinfo=UTC),
        wall_time=datetime(2026, 11, 23, 21, 0),
        ordinal=0,
        partners=[ALEX, SAM],
        recipients=[recipient(ALEX), recipient(SAM)],
    )
    base.update(kw)
    return RitualDue.model_validate(base)
