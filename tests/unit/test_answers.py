from datetime import UTC, datetime

import pytest

from services.scheduler.answers import (
    completion,
    parse_occurrence,
    slot_key,
    snooze_id,
    streak,
)


def test_occurrence_ids_parse_with_partner_and_suffix() -> None:
    ref = parse_occurrence("rit_abc@20261122T200000Z/prt_s~snooze")
    assert ref.ritual_id == "rit_abc" and ref.partner_id == "prt_s" and ref.suffix == "snooze"
    assert ref.instant == datetime(2026, 11, 22, 20, tzinfo=UTC)
    assert ref.origin == "rit_abc@20261122T200000Z/prt_s"
    together = parse_occurrence("rit_abc@20261122T200000Z")
    assert together.partner_id is None and together.origin == "rit_abc@20261122T200000Z"
    assert snooze_id(together, "prt_a") == "rit_abc@20261122T200000Z/prt_a~snooze"
    for bad in ("nope", "rit_x@yesterday", "cpl_x@20261122T200000Z"):
        with pytest.raises(ValueError):
            parse_occurrence(bad)


def test_local_partners_share_a_slot() -> None:
    assert slot_key(datetime(2026, 11, 23, 7, 30)) == "20261123T0730"


def test_completion_is_the_couples() -> None:
    assert completion({"a": "done", "b": "done"}, ["a", "b"]) == "both"
    assert completion({"a": "done", "b": "skip"}, ["a", "b"]) == "one"
    assert completion({}, ["a", "b"]) == "neither"


def test_streak_counts_consecutive_kept_slots() -> None:
    slots = ["d5", "d4", "d3", "d2", "d1"]
    assert streak(slots, {"d5", "d4", "d3", "d1"}) == 3
    assert streak(slots, {"d4", "d3", "d1"}) == 2  # today's is still open
    assert streak(slots, {"d3", "d2"}) == 0  # yesterday was missed
    assert streak(slots, set()) == 0
