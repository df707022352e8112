from datetime import datetime

from services.scheduler.answers import completion, streak
from shared.ids import slot_key


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
