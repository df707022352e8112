"""A couple's shared goals: set for a quarter, read back at the next quarter's check-in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, PlainSerializer

# Written with ``isoformat`` ("+00:00", not pydantic's "Z"), as goals always were: stored
# goals and API answers keep one format.
IsoDatetime = Annotated[AwareDatetime, PlainSerializer(datetime.isoformat, return_type=str)]


class Goal(BaseModel):
    """One goal as stored and as answered: ``quarter`` is like ``2026-Q4``; ``reached_at``
    once the couple marked it reached."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    quarter: str
    created_at: IsoDatetime
    reached_at: IsoDatetime | None = None  # marked reached by either partner


def newest_first(goals: Iterable[Goal]) -> list[Goal]:
    """The latest quarter first; within a quarter, the latest goal set first."""
    return sorted(goals, key=lambda g: (g.quarter, g.created_at), reverse=True)


def texts_of_quarter(goals: Iterable[Goal], quarter: str) -> list[str]:
    """The words of ``quarter``'s goals, in the order the couple set them."""
    return [g.text for g in sorted(goals, key=lambda g: g.created_at) if g.quarter == quarter]
