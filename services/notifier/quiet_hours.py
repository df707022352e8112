"""Quiet hours: when a partner may not be buzzed, and what that does to a shared nudge.

Pure functions, no I/O: every function takes ``now``.

A partner's :class:`~shared.events.QuietHours` is a daily window in the partner's own time
zone. ``start < end`` is a same-day window (13:00-14:00); ``start > end`` crosses midnight
(23:00-07:00 means 23:00 until 07:00 the next morning); ``start == end`` is an empty window
(a zero-length window would otherwise be ambiguous between "never" and "always"). ``start``
is inside the window, ``end`` is not.

A nudge due inside a partner's window is *held* until the window ends, in UTC terms
computed from the partner's zone on the local date, so DST shifts are respected (an ``end``
that falls in a DST gap resolves to the instant zoneinfo gives it, i.e. shifted forward).

For a ``together`` nudge when only some partners are in quiet hours, the occurrence's
``quiet_hours_policy`` decides:

- ``hold_both`` (default): everyone is held until the *latest* release, so the partners
  still get the nudge at the same moment -- the point of a together ritual.
- ``per_partner``: only the quiet partner is held; the other gets it now.

``local`` nudges are always per partner: each partner's copy is already on their own clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.events import QuietHours, QuietHoursPolicy, Recipient


def _inside(t: time, window: QuietHours) -> bool:
    start, end = window.start, window.end
    if start == end:
        return False
    if start < end:
        return start <= t < end
    return t >= start or t < end  # crosses midnight


def quiet_until(now: datetime, window: QuietHours | None, timezone: str) -> datetime | None:
    """If ``now`` is inside ``window`` (read in ``timezone``), the UTC instant it ends;
    otherwise None. ``now`` must be aware."""
    if window is None:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if not _inside(wall, window):
        return None
    end_date = local.date()
    if window.start > window.end and wall >= window.start:
        end_date += timedelta(days=1)  # we are before midnight; the window ends tomorrow
    end = datetime.combine(end_date, window.end, tzinfo=zone).astimezone(UTC)
    # A DST gap can map the end to an instant before now; never release in the past.
    return max(end, now.astimezone(UTC))


def release_times(
    now: datetime,
    recipients: Iterable[Recipient],
    *,
    together: bool,
    policy: QuietHoursPolicy = "hold_both",
) -> dict[str, datetime | None]:
    """For each partner id: None to send now, or the UTC instant to hold the nudge until.

    Applies ``policy`` to ``together`` nudges as the module docstring describes."""
    times = {r.id: quiet_until(now, r.quiet_hours, r.timezone) for r in recipients}
    held = [t for t in times.values() if t is not None]
    if together and policy == "hold_both" and held:
        latest = max(held)
        return {pid: latest for pid in times}
    return times


def group_by_release(
    times: dict[str, datetime | None],
) -> tuple[list[str], dict[datetime, list[str]]]:
    """Split :func:`release_times` into (send now, {release instant: partner ids})."""
    now_ids = [pid for pid, t in times.items() if t is None]
    later: dict[datetime, list[str]] = {}
    for pid, t in times.items():
        if t is not None:
            later.setdefault(t, []).append(pid)
    return now_ids, later
