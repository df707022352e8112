"""Deck files: the schema, the loader's error reports, and the shipped decks."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.content.decks import (
    DECK_KINDS,
    DECKLESS_KINDS,
    DEFAULT_DECKS,
    SHIPPED_DIR,
    DeckError,
    default_deck,
    load_catalog,
    parse_deck,
)
from shared.events import RITUAL_KINDS

GOOD = """\
id: tiny
title: Tiny deck
kinds: [custom]
prompts:
  - id: a
    text: First?
  - id: b
    text: Second?
    simplified: 2nd?
"""


def problem(text: str) -> tuple[int | None, str]:
    with pytest.raises(DeckError) as err:
        parse_deck(text, Path("decks/broken.yaml"))
    first = err.value.problems[0]
    assert str(first.path) == "decks/broken.yaml"
    assert "decks/broken.yaml" in str(err.value)
    return first.line, first.reason


def test_a_good_deck_parses() -> None:
    deck = parse_deck(GOOD, Path("tiny.yaml"))
    assert deck.id == "tiny"
    assert [p.id for p in deck.prompts] == ["a", "b"]
    b = deck.prompt("b")
    assert b is not None and b.simplified == "2nd?"


def test_duplicate_prompt_id_points_at_the_duplicate() -> None:
    text = GOOD.replace("  - id: b\n", "  - id: a\n")
    line, reason = problem(text)
    assert line == 7  # the second "- id: a"
    assert "duplicate prompt id 'a'" in reason


def test_progressive_prompt_without_level_points_at_the_prompt() -> None:
    text = GOOD.replace("kinds: [custom]\n", "kinds: [custom]\nprogressive: true\n")
    text = text.replace("    text: First?\n", "    text: First?\n    level: 1\n")
    line, reason = problem(text)
    assert line == 9  # "- id: b", which has no level
    assert "no level" in reason and "'b'" in reason


def test_level_out_of_range_points_at_the_field() -> None:
    text = GOOD.replace("    text: Second?\n", "    text: Second?\n    level: 4\n")
    line, reason = problem(text)
    assert line == 9
    assert "prompts.1.level" in reason and "less than or equal to 3" in reason


def test_unknown_field_is_a_typo_not_silence() -> None:
    line, reason = problem(GOOD.replace("    simplified:", "    simplifed:"))
    assert line == 9
    assert "simplifed" in reason and "Extra inputs" in reason


def test_unknown_kind_and_missing_field() -> None:
    line, reason = problem(GOOD.replace("kinds: [custom]", "kinds: [brunch]"))
    assert line == 3 and "kinds.0" in reason
    line, reason = problem(GOOD.replace("title: Tiny deck\n", ""))
    assert line == 1 and "title" in reason and "Field required" in reason


def test_broken_yaml_reports_the_line() -> None:
    line, reason = problem(GOOD.replace("    text: Second?", "    text: [unclosed"))
    assert line is not None and line >= 9
    assert "not valid YAML" in reason


def test_not_a_mapping() -> None:
    line, reason = problem("- just\n- a list\n")
    assert line == 1 and "mapping" in reason


def test_every_shipped_deck_loads_and_every_kind_has_a_default() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 9
    for kind in DECK_KINDS:
        deck = catalog.get(default_deck(kind))
        assert deck is not None, kind
        assert deck.suits(kind), (kind, deck.id)
    assert set(DEFAULT_DECKS) == set(DECK_KINDS)
    assert set(DECK_KINDS) | DECKLESS_KINDS == set(RITUAL_KINDS)
    with pytest.raises(ValueError):
        default_deck("brunch")
    with pytest.raises(ValueError, match="not drawn from a deck"):
        default_deck("weekly_summary")


def test_shipped_decks_are_big_enough_and_simplified() -> None:
    catalog = load_catalog()
    for deck in catalog.decks.values():
        minimum = 8 if deck.style == "nudge" else 20
        assert len(deck.prompts) >= minimum, deck.id
        assert all(p.simplified for p in deck.prompts), deck.id
        assert all(len(p.simplified or "") <= 60 for p in deck.prompts), deck.id


def test_weekly_questions_carry_the_seed_questions() -> None:
    deck = load_catalog().get("weekly-questions")
    assert deck is not None
    texts = {p.text for p in deck.prompts}
    for seed in (
        "What are you looking forward to this week?",
        "What's something I did recently that made you feel loved?",
        "Is there anything you need more of from me?",
        "What's been on your mind lately that you haven't shared?",
        "What's a small thing we could do together this week?",
        "How are you feeling about us right now?",
    ):
        assert seed in texts


def test_progressive_deck_has_three_levels() -> None:
    deck = load_catalog().get("closer-by-degrees")
    assert deck is not None and deck.progressive
    levels = [p.level for p in deck.prompts]
    assert set(levels) == {1, 2, 3}
    assert all(levels.count(n) >= 8 for n in (1, 2, 3))


def test_extra_folder_adds_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(GOOD)
    override = GOOD.replace("id: tiny", "id: six-second-kiss").replace(
        "kinds: [custom]", "kinds: [morning_kiss]"
    )
    (tmp_path / "kiss.yaml").write_text(override)
    catalog = load_catalog(tmp_path)
    assert catalog.get("tiny") is not None
    kiss = catalog.get("six-second-kiss")
    assert kiss is not None and [p.id for p in kiss.prompts] == ["a", "b"]
    assert catalog.sources["six-second-kiss"] == tmp_path / "kiss.yaml"
    assert catalog.sources["weekly-questions"].parent == SHIPPED_DIR


def test_a_broken_extra_deck_fails_start_up_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(GOOD.replace("    text: First?\n", ""))
    with pytest.raises(DeckError) as err:
        load_catalog(tmp_path)
    assert f"{tmp_path / 'bad.yaml'}:5:" in str(err.value)
    assert "text" in str(err.value)


def test_two_files_with_one_id_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(GOOD)
    (tmp_path / "two.yaml").write_text(GOOD)
    with pytest.raises(DeckError, match="also used by"):
        load_catalog(tmp_path)


def test_missing_extra_folder_fails(tmp_path: Path) -> None:
    with pytest.raises(DeckError, match="not a folder"):
        load_catalog(tmp_path / "nope")


def test_a_single_broken_prompt_is_one_problem() -> None:
    text = GOOD.replace("  - id: b\n    text: Second?\n    simplified: 2nd?\n", "")
    text = text.replace("    text: First?\n", "    text: First?\n    level: 9\n")
    with pytest.raises(DeckError) as err:
        parse_deck(text, Path("one.yaml"))
    assert [p.line for p in err.value.problems] == [7]
