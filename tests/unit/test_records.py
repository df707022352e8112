"""The stored forms of couples, rituals and channel URLs (issue #12): compact, exact, and
readable in the layout before them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import pytest

from services.scheduler import records
from services.scheduler.rituals import Channel, Couple, Partner, Ritual, ScheduleSpec
from shared import vault
from shared.events import QuietHours


def _couple() -> Couple:
    """A couple with every field away from its default."""
    sam = Partner(
        id="prt_1",
        name='Sam "Ö" \\ 😀',
        timezone="Europe/Berlin",
        channels=[Channel(id="chn_1", kind="push", redacted="ntfy://ntfy.sh/***")],
        quiet_hours=QuietHours(start=time(22, 30), end=time(6, 45)),
    )
    alex = Partner(
        id="prt_2",
        name="Alex",
        timezone="America/New_York",
        channels=[Channel(id="chn_2", kind="email", redacted="mailto://***@example.com")],
    )
    return Couple(
        id="cpl_1",
        name="Sam & Alex",
        partners=[sam, alex],
        paused=True,
        transition_mode=True,
        resume_at=datetime(2026, 12, 24, 18, tzinfo=UTC),
        created_at=datetime(2026, 11, 28, 10, 42, 40, 912091, tzinfo=UTC),
    )


def _ritual() -> Ritual:
    return Ritual(
        id="rit_1",
        couple_id="cpl_1",
        kind="date_night",
        title="Date night",
        schedule=ScheduleSpec(
            rrule="FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0",
            timezone="Europe/Berlin",
            start=datetime(2026, 11, 28),
            exdates=[datetime(2026, 12, 25, 17)],
            grace_seconds=600.5,
        ),
        delivery="local",
        rotation="alternate",
        deck="spicy",
        quiet_hours_policy="per_partner",
        celebrate=True,
        celebrate_sms=True,
        created_at=datetime(2026, 11, 28, 10, 42, 41, 480595, tzinfo=UTC),
    )


@pytest.mark.parametrize("record", [_couple(), _ritual()], ids=["couple", "ritual"])
def test_a_record_reads_back_equal_and_smaller(record: Couple | Ritual) -> None:
    stored = records.encode(record)
    assert stored.startswith("1") and stored.isascii()
    assert record.id not in stored  # the key carries it
    assert records.decode(type(record), record.id, stored) == record
    assert len(stored) < len(record.model_dump_json(exclude_defaults=True))


@pytest.mark.parametrize("record", [_couple(), _ritual()], ids=["couple", "ritual"])
def test_a_record_of_the_old_layout_reads_the_same(record: Couple | Ritual) -> None:
    old = record.model_dump_json(exclude_defaults=True)  # what c44b517 stored
    assert records.decode(type(record), record.id, old) == record


def test_an_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown layout"):
        records.decode(Couple, "cpl_1", "9abc")


def test_channel_urls_read_back_in_both_layouts() -> None:
    urls = {"chn_1": "json://127.0.0.1:9/hook?token=s3cr3t", "chn_2": "mailto://ü@example.com"}
    packed = vault._pack(urls)
    assert packed.startswith(b"1") and len(packed) < len(json.dumps(urls))
    assert vault._unpack(packed) == urls
    assert vault._unpack(json.dumps(urls, separators=(",", ":")).encode()) == urls  # c44b517's
    assert vault._unpack(vault._pack({})) == {}
