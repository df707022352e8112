"""``ritual.due`` events for content's tests: Alex in Berlin and Sam in New York."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.events import PartnerInfo, Recipient, RitualDue
from shared.ids import OccurrenceId

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
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


def together(couple: str, n: int, *, kind: str = "weekly_questions", **kw: object) -> RitualDue:
    """The ``n``-th weekly occurrence of a together ritual of ``couple``."""
    at = datetime(2026, 11, 2, 20, tzinfo=UTC) + timedelta(weeks=n)
    base: dict[str, object] = dict(
        occurrence_id=str(OccurrenceId(f"rit_{couple}", at)),
        couple_id=couple,
        couple_name="Alex & Sam",
        ritual_id=f"rit_{couple}",
        kind=kind,
        title="Weekly questions",
        delivery="together",
        scheduled_for=at,
        wall_time=at.astimezone(BERLIN).replace(tzinfo=None),
        ordinal=n,
        partners=[ALEX, SAM],
        recipients=[recipient(ALEX), recipient(SAM)],
    )
    base.update(kw)
    return RitualDue.model_validate(base)


def local_pair(couple: str, day: int) -> tuple[RitualDue, RitualDue]:
    """Alex's (Berlin) and Sam's (New York) 07:30 morning kiss on one couple day."""
    out = []
    for partner, zone in ((ALEX, BERLIN), (SAM, NEW_YORK)):
        wall = datetime(2026, 11, 23, 7, 30) + timedelta(days=day)
        at = wall.replace(tzinfo=zone).astimezone(UTC)
        out.append(
            RitualDue(
                occurrence_id=str(OccurrenceId(f"rit_k_{couple}", at, partner.id)),
                couple_id=couple,
                couple_name="Alex & Sam",
                ritual_id=f"rit_k_{couple}",
                kind="morning_kiss",
                title="Six-second kiss",
                delivery="local",
                scheduled_for=at,
                wall_time=wall,
                ordinal=day,
                partners=[ALEX, SAM],
                recipients=[recipient(partner)],
            )
        )
    return out[0], out[1]
