"""Choosing: no repeats until a deck is exhausted, deterministic cycles, levels in order."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.content.choosing import DeckHistory, choose, cycle_order, selection_key
from services.content.decks import Deck, DeckPrompt, load_catalog
from shared.events import PartnerInfo, Recipient, RitualDue


def deck(n: int = 5, *, progressive: bool = False) -> Deck:
    prompts = [
        DeckPrompt(id=f"p{i}", text=f"Prompt {i}?", level=(i % 3) + 1 if progressive else None)
        for i in range(n)
    ]
    return Deck(id="d", title="D", kinds=("custom",), progressive=progressive, prompts=prompts)


def run(d: Deck, times: int, couple: str = "cpl_1") -> tuple[list[str], DeckHistory]:
    history, seen = DeckHistory(), []
    for i in range(times):
        choice = choose(d, history, couple_id=couple, key=f"k{i}")
        seen.append(choice.prompt.id)
        history = choice.history
    return seen, history


def test_no_repeat_until_exhausted_then_a_new_cycle() -> None:
    d = deck(7)
    seen, history = run(d, 7)
    assert sorted(seen) == sorted(p.id for p in d.prompts)
    assert history.cycle == 1 and len(history.used) == 7
    more, history = run(d, 21)
    for c in range(3):
        assert sorted(more[7 * c : 7 * c + 7]) == sorted(seen)
    assert more[7:14] != more[:7] or more[14:21] != more[:7]  # cycles are reshuffled
    assert history.cycle == 3


def test_deterministic_across_replicas_and_distinct_across_couples() -> None:
    d = load_catalog().get("weekly-questions")
    assert d is not None
    assert run(d, 30, "cpl_a")[0] == run(d, 30, "cpl_a")[0]
    assert run(d, 10, "cpl_a")[0] != run(d, 10, "cpl_b")[0]
    assert cycle_order(d, "cpl_a", 1) != cycle_order(d, "cpl_a", 2)


def test_adding_a_prompt_keeps_the_order_of_the_others() -> None:
    small, big = deck(6), deck(7)
    before = [p.id for p in cycle_order(small, "cpl", 1)]
    after = [p.id for p in cycle_order(big, "cpl", 1) if p.id != "p6"]
    assert before == after


def test_progressive_levels_in_order_every_cycle() -> None:
    d = load_catalog().get("closer-by-degrees")
    assert d is not None
    n = len(d.prompts)
    seen, _ = run(d, 2 * n)
    by_id = {p.id: p for p in d.prompts}
    for cycle in (seen[:n], seen[n:]):
        levels = [by_id[pid].level or 0 for pid in cycle]  # progressive: every one has one
        assert levels == sorted(levels)
        assert sorted(cycle) == sorted(p.id for p in d.prompts)


def test_progressive_never_steps_back_within_a_cycle() -> None:
    d = deck(6, progressive=True)
    history = DeckHistory(cycle=1, used=frozenset({"p2", "p5"}), level=3)  # p0/p3 are level 1
    choice = choose(d, history, couple_id="cpl", key="k")
    assert choice.prompt.level == 3 or choice.history.cycle == 2
    # level 3 remaining? p2 and p5 are the level-3 prompts, both used -> a new cycle
    assert choice.history.cycle == 2 and choice.prompt.level == 1
    assert choice.history.level == 1


def test_history_level_tracks_progress() -> None:
    d = deck(6, progressive=True)
    _, history = run(d, 3)
    assert history.level == 2
    _, history = run(d, 5)
    assert history.level == 3


def test_ids_removed_from_a_deck_do_not_block_it() -> None:
    d = deck(3)
    history = DeckHistory(cycle=1, used=frozenset({"gone", "p0", "p1", "p2"}))
    assert choose(d, history, couple_id="c", key="k").history.cycle == 2


def _due(**kw: object) -> RitualDue:
    base: dict[str, object] = dict(
        occurrence_id="rit_1@20261123T063000Z/p1",
        couple_id="cpl_1",
        couple_name="A & B",
        ritual_id="rit_1",
        kind="morning_kiss",
        title="Six-second kiss",
        delivery="local",
        scheduled_for=datetime(2026, 11, 23, 6, 30, tzinfo=UTC),
        wall_time=datetime(2026, 11, 23, 7, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        ordinal=3,
        partners=[PartnerInfo(id="p1", name="Alex", timezone="Europe/Berlin")],
        recipients=[Recipient(id="p1", name="Alex", timezone="Europe/Berlin", channels=[])],
    )
    base.update(kw)
    return RitualDue.model_validate(base)


def test_selection_key_couple_day() -> None:
    berlin = _due()
    new_york = _due(
        occurrence_id="rit_1@20261123T123000Z/p2",
        scheduled_for=datetime(2026, 11, 23, 12, 30, tzinfo=UTC),
        wall_time=datetime(2026, 11, 23, 7, 30, tzinfo=ZoneInfo("America/New_York")),
    )
    next_day = _due(wall_time=datetime(2026, 11, 24, 7, 30))
    assert selection_key(berlin) == selection_key(new_york) == "rit_1@2026-11-23T07:30"
    assert selection_key(next_day) != selection_key(berlin)
    other_ritual = _due(ritual_id="rit_2")
    assert selection_key(other_ritual) != selection_key(berlin)
    together = _due(delivery="together", occurrence_id="rit_1@20261123T063000Z")
    assert selection_key(together) == "rit_1@20261123T063000Z"


def test_two_manual_triggers_in_one_second_choose_apart() -> None:
    """A "together" test nudge is its own occurrence, so it draws its own prompt; its snooze
    reads the prompt of the trigger it came from."""
    first = _due(delivery="together", occurrence_id="rit_1@20261123T063000Z~manual.0badcafe")
    second = _due(delivery="together", occurrence_id="rit_1@20261123T063000Z~manual.5eed1e55")
    assert selection_key(first) != selection_key(second)
    assert selection_key(first) != "rit_1@20261123T063000Z"  # nor the scheduled firing's
    snoozed = _due(
        delivery="together",
        occurrence_id="rit_1@20261123T063000Z/p1~manual.0badcafe~snooze",
        origin_occurrence_id="rit_1@20261123T063000Z~manual.0badcafe",
    )
    assert selection_key(snoozed) == selection_key(first)
