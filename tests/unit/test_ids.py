from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.ids import OccurrenceId, celebration_id


def test_occurrence_ids_parse_with_partner_and_suffix() -> None:
    ref = OccurrenceId.parse("rit_abc@20261122T200000Z/prt_s~snooze")
    assert ref.ritual_id == "rit_abc" and ref.partner_id == "prt_s" and ref.derivation == "snooze"
    assert ref.instant == datetime(2026, 11, 22, 20, tzinfo=UTC)
    assert str(ref.origin) == "rit_abc@20261122T200000Z/prt_s"
    together = OccurrenceId.parse("rit_abc@20261122T200000Z")
    assert together.partner_id is None and str(together.origin) == "rit_abc@20261122T200000Z"
    assert str(together.snoozed("prt_a")) == "rit_abc@20261122T200000Z/prt_a~snooze"
    for bad in (
        "nope",
        "rit_x@yesterday",
        "cpl_x@20261122T200000Z",
        "rit_x@20261122T2000~both",  # a celebration: a slot, not an answerable occurrence
        "rit_x@20261122T200000Z~later",
        "rit_x@20261122T200000Z~manual.XYZ",  # a nonce is 8 hex digits
        "rit_x@20261122T200000Z~manual",
        "rit_x@20261122T200000Z~snooze~manual.0badcafe",  # the nonce comes first
        "rit_x@20261122T200000Z~snooze~snooze",
    ):
        with pytest.raises(ValueError):
            OccurrenceId.parse(bad)


def test_a_manual_trigger_is_named_by_its_nonce() -> None:
    ref = OccurrenceId.parse("rit_abc@20261122T200000Z/prt_s~manual.0badcafe")
    assert (ref.partner_id, ref.manual, ref.derivation) == ("prt_s", "0badcafe", None)
    snoozed = ref.snoozed("prt_s")
    assert str(snoozed) == "rit_abc@20261122T200000Z/prt_s~manual.0badcafe~snooze"
    assert OccurrenceId.parse(str(snoozed)) == snoozed and snoozed.origin == ref
    with pytest.raises(ValueError):
        OccurrenceId("rit_abc", ref.instant, manual="nothex!!")


def test_the_wire_format_is_fixed() -> None:
    berlin = timezone(timedelta(hours=1))
    at = datetime(2026, 11, 22, 21, 0, 0, 123456, tzinfo=berlin)
    assert str(OccurrenceId("rit_abc", at)) == "rit_abc@20261122T200000Z"
    assert str(OccurrenceId("rit_abc", at, "prt_s")) == "rit_abc@20261122T200000Z/prt_s"
    assert celebration_id("rit_abc", datetime(2026, 11, 23, 7, 30)) == "rit_abc@20261123T0730~both"
    with pytest.raises(ValueError):
        OccurrenceId("rit_abc", datetime(2026, 11, 22, 20))  # naive
    with pytest.raises(ValueError):
        OccurrenceId("rit_abc", at, "prt/s")


ids = st.text(st.characters(codec="ascii", exclude_characters="@/~"), min_size=1, max_size=20)
occurrences = st.builds(
    OccurrenceId,
    ritual_id=ids.map(lambda s: f"rit_{s}"),
    instant=st.datetimes(
        min_value=datetime(1000, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.just(UTC),
    ),
    partner_id=st.none() | ids,
    derivation=st.none() | st.just("snooze"),
    manual=st.none() | st.from_regex(r"[0-9a-f]{8}", fullmatch=True),
)


@given(occurrences)
def test_occurrence_ids_round_trip(occurrence: OccurrenceId) -> None:
    text = str(occurrence)
    assert OccurrenceId.parse(text) == occurrence
    assert str(OccurrenceId.parse(text)) == text
    assert str(occurrence.origin) == text.removesuffix("~snooze")
    assert OccurrenceId.parse(str(occurrence.origin)).derivation is None


@given(occurrences, ids)
def test_a_snooze_names_its_origin(occurrence: OccurrenceId, partner: str) -> None:
    snoozed = OccurrenceId.parse(str(occurrence.snoozed(partner)))
    assert snoozed.partner_id == partner and snoozed.derivation == "snooze"
    assert snoozed.origin == OccurrenceId(
        occurrence.ritual_id, occurrence.instant, partner, manual=occurrence.manual
    )
