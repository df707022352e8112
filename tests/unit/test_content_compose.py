"""Compose: what each partner reads, for every ritual kind."""

from __future__ import annotations

import pytest

from services.content.compose import BODY_MAX, ELLIPSIS, TITLE_MAX, clip, compose
from services.content.decks import DECK_KINDS, Deck, DeckPrompt, default_deck, load_catalog
from shared.events import PartnerInfo, RitualDue
from tests.support.content import SAM, recipient, ritual_due

CATALOG = load_catalog()
TITLES = {
    "morning_kiss": "Six-second kiss",
    "evening_checkin": "Evening check-in",
    "hug": "Twenty-second hug",
    "date_night": "Date night",
    "phone_stack": "Phones down",
    "weekly_questions": "Weekly questions",
    "relationship_checkin": "Quarterly check-in",
    "custom": "Sunday coffee",
}


def due(kind: str = "weekly_questions", **kw: object) -> RitualDue:
    return ritual_due(kind, **{"title": TITLES[kind], **kw})


def first(kind: str) -> tuple[Deck, DeckPrompt]:
    deck = CATALOG.get(default_deck(kind))
    assert deck is not None
    return deck, deck.prompts[0]


@pytest.mark.parametrize("kind", DECK_KINDS)
def test_every_kind_reads_right(kind: str) -> None:
    deck, prompt = first(kind)
    nudge = compose(due(kind), deck, prompt)
    assert nudge.prompt.deck == deck.id and nudge.prompt.prompt_id == prompt.id
    assert not nudge.prompt.simplified and nudge.prompt.text == prompt.text
    assert [m.partner_id for m in nudge.messages] == ["p_alex", "p_sam"]
    alex, sam = nudge.message_for("p_alex"), nudge.message_for("p_sam")
    for me, them, message in (("Alex", "Sam", alex), ("Sam", "Alex", sam)):
        assert len(message.title) <= TITLE_MAX and len(message.body) <= BODY_MAX
        assert TITLES[kind] in message.title
        assert message.body.startswith(f"{me},")
        assert message.long_body and deck.about
        assert " ".join(deck.about.split()) in message.long_body
        if kind != "date_night":
            assert prompt.text in message.body
            assert them in message.body or kind == "custom"
    assert nudge.occurrence_id == "rit_1@20261123T200000Z"  # the occurrence travels along


def test_specific_kinds_say_what_they_should() -> None:
    kiss = compose(due("morning_kiss"), *first("morning_kiss")).message_for("p_alex")
    assert kiss.body.startswith("Alex, before you and Sam head off:")
    assert "six" in kiss.body.lower()
    evening = compose(due("evening_checkin"), *first("evening_checkin")).message_for("p_sam")
    assert "evening check-in with Alex" in evening.body
    hug = compose(due("hug"), *first("hug")).message_for("p_alex")
    assert "twenty seconds" in hug.body.lower()
    stack = compose(due("phone_stack"), *first("phone_stack")).message_for("p_alex")
    assert "stack" in stack.body.lower()
    weekly = compose(due("weekly_questions"), *first("weekly_questions")).message_for("p_alex")
    assert "this week's question for you and Sam" in weekly.body
    checkin = compose(due("relationship_checkin"), *first("relationship_checkin"))
    assert "quarterly check-in with Sam" in checkin.message_for("p_alex").body
    custom = compose(due("custom"), *first("custom")).message_for("p_alex")
    assert custom.body.startswith("Alex, Sunday coffee:")


def test_date_night_planner_line() -> None:
    deck, idea = first("date_night")
    nudge = compose(due("date_night", planner="p_sam"), deck, idea)
    sam, alex = nudge.message_for("p_sam"), nudge.message_for("p_alex")
    assert sam.body.startswith("Sam, it's your turn to plan date night with Alex.")
    assert idea.text in sam.body and "your turn to plan" in sam.title
    assert alex.body.startswith("Alex, Sam is planning date night this time.")
    assert idea.text not in alex.body  # the idea is the planner's surprise
    assert "Sam plans" in alex.title
    # the next week the other one plans
    swapped = compose(due("date_night", planner="p_alex"), deck, idea)
    assert "your turn to plan" in swapped.message_for("p_alex").body
    assert "Alex is planning" in swapped.message_for("p_sam").body


def test_date_night_with_a_question_deck_shows_the_question_to_both() -> None:
    deck, question = first("weekly_questions")
    nudge = compose(due("date_night", planner="p_sam"), deck, question)
    assert question.text in nudge.message_for("p_alex").body


def test_transition_mode_uses_the_simplified_variant() -> None:
    deck, prompt = first("evening_checkin")
    assert prompt.simplified
    nudge = compose(due("evening_checkin", transition_mode=True), deck, prompt)
    assert nudge.prompt.simplified and nudge.prompt.text == prompt.simplified
    body = nudge.message_for("p_alex").body
    assert "two-minute check-in" in body and prompt.simplified in body
    assert prompt.text not in body
    long_body = nudge.message_for("p_alex").long_body or ""
    assert prompt.text in long_body  # e-mail still offers the full question


def test_transition_without_a_variant_keeps_the_text() -> None:
    deck, prompt = first("weekly_questions")
    plain = prompt.model_copy(update={"simplified": None})
    nudge = compose(due(transition_mode=True), deck, plain)
    assert not nudge.prompt.simplified and nudge.prompt.text == plain.text


def test_local_occurrence_has_one_message() -> None:
    deck, prompt = first("morning_kiss")
    nudge = compose(
        due("morning_kiss", delivery="local", recipients=[recipient(SAM)]), deck, prompt
    )
    assert [m.partner_id for m in nudge.messages] == ["p_sam"]
    assert "Sam, before you and Alex" in nudge.messages[0].body


def test_long_names_and_titles_are_clipped() -> None:
    deck, prompt = first("relationship_checkin")
    long_a = PartnerInfo(id="a", name="Maximiliana " * 8, timezone="UTC")
    long_b = PartnerInfo(id="b", name="Bartholomew " * 8, timezone="UTC")
    nudge = compose(
        due(
            "relationship_checkin",
            title="A very long ritual title that goes on and on and on and on forever",
            partners=[long_a, long_b],
            recipients=[recipient(long_a), recipient(long_b)],
        ),
        deck,
        prompt,
    )
    for m in nudge.messages:
        assert len(m.title) <= TITLE_MAX and m.title.endswith(ELLIPSIS)
        assert len(m.body) <= BODY_MAX and m.body.endswith(ELLIPSIS)
        assert prompt.text in (m.long_body or "")


def test_clip() -> None:
    assert clip("short", 10) == "short"
    assert clip("hello world again", 12) == "hello world…"
    assert clip("hello world, again", 13) == "hello world…"
    assert clip("abcdefghijkl", 5) == "abcd…"
    assert clip("  spaced   out  ", 20) == "spaced out"
    text = "word " * 100
    out = clip(text, 240)
    assert len(out) <= 240 and out.endswith("word…")
