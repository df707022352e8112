from datetime import UTC, datetime, time

from services.notifier.quiet_hours import group_by_release, quiet_until, release_times
from shared.events import QuietHours, Recipient

NIGHT = QuietHours(start=time(23, 0), end=time(7, 0))
LUNCH = QuietHours(start=time(12, 0), end=time(13, 0))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def partner(pid: str, tz: str = "UTC", qh: QuietHours | None = None) -> Recipient:
    return Recipient(id=pid, name=pid, timezone=tz, channels=[], quiet_hours=qh)


def test_same_day_window() -> None:
    assert quiet_until(utc(2026, 3, 2, 12, 30), LUNCH, "UTC") == utc(2026, 3, 2, 13)
    assert quiet_until(utc(2026, 3, 2, 12, 0), LUNCH, "UTC") == utc(2026, 3, 2, 13)  # start in
    assert quiet_until(utc(2026, 3, 2, 13, 0), LUNCH, "UTC") is None  # end out
    assert quiet_until(utc(2026, 3, 2, 11, 59), LUNCH, "UTC") is None


def test_window_crossing_midnight() -> None:
    # Before midnight: ends tomorrow morning.
    assert quiet_until(utc(2026, 3, 2, 23, 30), NIGHT, "UTC") == utc(2026, 3, 3, 7)
    # After midnight: ends this morning.
    assert quiet_until(utc(2026, 3, 3, 2, 0), NIGHT, "UTC") == utc(2026, 3, 3, 7)
    assert quiet_until(utc(2026, 3, 3, 7, 0), NIGHT, "UTC") is None
    assert quiet_until(utc(2026, 3, 3, 22, 59), NIGHT, "UTC") is None


def test_window_is_read_in_the_partners_zone() -> None:
    # 21:30 UTC is 06:30 next day in Tokyo (quiet) and 16:30 in New York (not quiet).
    now = utc(2026, 3, 2, 21, 30)
    assert quiet_until(now, NIGHT, "Asia/Tokyo") == utc(2026, 3, 2, 22)  # 07:00 JST
    assert quiet_until(now, NIGHT, "America/New_York") is None


def test_dst_change_night() -> None:
    # Europe/Berlin springs forward on 2026-03-29 at 02:00 -> 03:00; 07:00 CEST is 05:00 UTC.
    assert quiet_until(utc(2026, 3, 28, 23, 30), NIGHT, "Europe/Berlin") == utc(2026, 3, 29, 5)


def test_empty_and_missing_windows() -> None:
    assert quiet_until(utc(2026, 3, 2, 12), QuietHours(start=time(9), end=time(9)), "UTC") is None
    assert quiet_until(utc(2026, 3, 2, 12), None, "UTC") is None


def test_hold_both_keeps_a_together_nudge_synchronized() -> None:
    now = utc(2026, 3, 2, 23, 30)
    people = [partner("sam", qh=NIGHT), partner("alex", tz="America/New_York")]
    times = release_times(now, people, together=True, policy="hold_both")
    assert times == {"sam": utc(2026, 3, 3, 7), "alex": utc(2026, 3, 3, 7)}
    send_now, later = group_by_release(times)
    assert send_now == [] and later == {utc(2026, 3, 3, 7): ["sam", "alex"]}


def test_hold_both_waits_for_the_later_end() -> None:
    now = utc(2026, 3, 2, 12, 30)
    early = QuietHours(start=time(12), end=time(12, 45))
    people = [partner("sam", qh=early), partner("alex", qh=LUNCH)]
    times = release_times(now, people, together=True, policy="hold_both")
    assert set(times.values()) == {utc(2026, 3, 2, 13)}


def test_per_partner_holds_only_the_quiet_one() -> None:
    now = utc(2026, 3, 2, 23, 30)
    people = [partner("sam", qh=NIGHT), partner("alex")]
    times = release_times(now, people, together=True, policy="per_partner")
    assert times == {"sam": utc(2026, 3, 3, 7), "alex": None}
    assert group_by_release(times) == (["alex"], {utc(2026, 3, 3, 7): ["sam"]})


def test_local_nudges_are_always_per_partner() -> None:
    now = utc(2026, 3, 2, 23, 30)
    people = [partner("sam", qh=NIGHT), partner("alex")]
    times = release_times(now, people, together=False, policy="hold_both")
    assert times["alex"] is None


def test_nobody_quiet_sends_now() -> None:
    now = utc(2026, 3, 2, 15)
    times = release_times(now, [partner("a", qh=NIGHT), partner("b")], together=True)
    assert group_by_release(times) == (["a", "b"], {})
