"""Composing the words each partner reads. Pure: no I/O.

Promises:

* One :class:`~shared.events.Message` per recipient, with ``title`` <= 60 and ``body`` <= 240
  characters; anything longer is cut on a word boundary and ends with an ellipsis.
  ``long_body`` (e-mail) carries the full prompt and a line about the ritual.
* Personal: the partners' names, and for date night the planner's turn ("Alex, it's your
  turn to plan date night" for the planner, "Alex is planning date night" for the other).
* Transition mode uses a prompt's simplified variant when it has one and marks the
  :class:`~shared.events.Prompt` as simplified.
* Safe: the words come only from deck text, the partners' names and the ritual title;
  nothing a partner wrote is ever quoted into the other's nudge.
"""

from __future__ import annotations

from shared.events import Message, NudgeReady, PartnerInfo, Prompt, Recipient, RitualDue

from .decks import Deck, DeckPrompt

TITLE_MAX = 60
BODY_MAX = 240
ELLIPSIS = "…"

# The lead-in before the prompt, per ritual kind: (usual, transition mode). ``{me}`` is the
# reader, ``{them}`` their partner(s).
_LEADS: dict[str, tuple[str, str]] = {
    "morning_kiss": ("{me}, before you and {them} head off:", "{me}, before you go:"),
    "evening_checkin": (
        "{me}, evening check-in with {them}.",
        "{me}, just a two-minute check-in with {them} tonight.",
    ),
    "hug": ("{me}, hug break with {them}:", "{me}, a quick hug with {them}:"),
    "date_night": ("{me}, it's date night with {them}.", "{me}, a simple date night with {them}."),
    "phone_stack": ("{me}, mealtime with {them}:", "{me}, mealtime with {them}:"),
    "weekly_questions": (
        "{me}, this week's question for you and {them}:",
        "{me}, a quick one for you and {them} this week:",
    ),
    "relationship_checkin": (
        "{me}, time for your quarterly check-in with {them}. Start here:",
        "{me}, a short check-in with {them} on your shared goals:",
    ),
    "custom": ("{me}, {title}:", "{me}, {title}:"),
}


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters on a word boundary, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: limit - len(ELLIPSIS) + 1]  # one extra char: is the cut mid-word?
    if head[-1] != " " and " " in head:
        head = head[: head.rindex(" ")]
    head = head[: limit - len(ELLIPSIS)].rstrip(" ,;:.-\u2013\u2014")
    return head + ELLIPSIS


def _names(names: list[str]) -> str:
    if not names:
        return "your partner"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _others(due: RitualDue, me: Recipient) -> list[PartnerInfo]:
    return [p for p in due.partners if p.id != me.id]


def _name_of(due: RitualDue, partner_id: str | None) -> str | None:
    if partner_id is None:
        return None
    for person in (*due.partners, *due.recipients):
        if person.id == partner_id:
            return person.name
    return None


def shown_text(prompt: DeckPrompt, transition: bool) -> str:
    """The prompt's words as read: the simplified variant in transition mode, if any."""
    return prompt.simplified if transition and prompt.simplified else prompt.text


def make_prompt(deck: Deck, prompt: DeckPrompt, transition: bool) -> Prompt:
    simplified = bool(transition and prompt.simplified)
    return Prompt(
        deck=deck.id,
        prompt_id=prompt.id,
        text=shown_text(prompt, transition),
        level=prompt.level,
        simplified=simplified,
    )


def _date_night(due: RitualDue, deck: Deck, me: Recipient, them: str) -> tuple[str, str, bool]:
    """(title, lead, show the prompt?) for date night: whose turn it is to plan."""
    planner = _name_of(due, due.planner)
    title = due.title or deck.title
    if due.planner == me.id:
        lead = f"{me.name}, it's your turn to plan date night with {them}."
        return f"{title}: your turn to plan", lead + " An idea:", True
    if planner is not None:
        lead = f"{me.name}, {planner} is planning date night this time. Keep the evening free."
        # An idea deck is for the planner; keep the surprise. Questions are for both.
        show = deck.style != "idea"
        return f"{title}: {planner} plans", lead, show
    lead = _LEADS["date_night"][int(due.transition_mode)].format(me=me.name, them=them)
    return title, lead + (" An idea:" if deck.style == "idea" else ""), True


def message_for(due: RitualDue, deck: Deck, prompt: DeckPrompt, me: Recipient) -> Message:
    """The words ``me`` reads for ``due``."""
    them = _names([p.name for p in _others(due, me)])
    title = due.title.strip() or deck.title
    text = shown_text(prompt, due.transition_mode)
    show = True
    if due.kind == "date_night":
        title, lead, show = _date_night(due, deck, me, them)
    else:
        template = _LEADS.get(due.kind, _LEADS["custom"])[int(due.transition_mode)]
        lead = template.format(me=me.name, them=them, title=title)
    body = f"{lead} {text}" if show else lead
    long_parts = [body]
    if show and text != prompt.text:
        long_parts.append(f"If you have a little longer: {prompt.text}")
    if deck.about:
        long_parts.append(" ".join(deck.about.split()))
    return Message(
        partner_id=me.id,
        title=clip(title, TITLE_MAX),
        body=clip(body, BODY_MAX),
        long_body="\n\n".join(long_parts),
    )


def compose(due: RitualDue, deck: Deck, prompt: DeckPrompt) -> NudgeReady:
    """The ``nudge.ready`` record for ``due`` with ``prompt`` chosen from ``deck``."""
    fields = due.model_dump(exclude={"event_id", "emitted_at"})
    return NudgeReady(
        **fields,
        prompt=make_prompt(deck, prompt, due.transition_mode),
        messages=[message_for(due, deck, prompt, me) for me in due.recipients],
    )
