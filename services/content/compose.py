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
  nothing a partner wrote is ever quoted into the other's nudge. The one exception is the
  couple's shared goals (the quarterly check-in), which both partners set together: a lock
  screen only counts them ("revisit the 3 goals you set last quarter"); only ``long_body``
  (e-mail, read by the partner alone) lists them.
* Action links ("done", "snooze", "skip") ride in :attr:`Message.actions`, never in the body:
  the body stays a lock-screen line and each channel renders links its own way (notifier).
  Only the ritual itself gets them; a celebration or a summary asks nothing back.
* Celebrations ("you both did it", :func:`celebration_nudge`) and the weekly summary
  (:func:`summary_nudge`) are drawn from no deck; their :class:`Prompt` is
  ``deck="tandem"`` with a fixed ``prompt_id``, so they never touch a deck's history.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.content.decks import Deck, DeckPrompt
from shared.events import (
    Message,
    NudgeReady,
    PartnerInfo,
    Prompt,
    Recipient,
    RitualDue,
    RitualKept,
    WeeklySummary,
)

# The pseudo-deck of what Tandem says on its own behalf (celebrations, the weekly summary).
TANDEM_DECK = "tandem"
CELEBRATION_ID = "celebration"
SUMMARY_ID = "weekly-summary"
GOAL_MAX = 200  # one goal as listed in an e-mail; the partners' own words, kept to a line

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


def _goals(due: RitualDue) -> list[str]:
    """The couple's goals as one tidy line each (the partners' own words: no line breaks
    that could pose as something Tandem wrote), empty ones dropped."""
    if due.kind != "relationship_checkin":
        return []
    return [clip(goal, GOAL_MAX) for goal in due.goals if goal.strip()]


def _checkin_lead(me: str, them: str, goals: int, transition: bool) -> str:
    """The quarterly check-in's lead-in when the couple set goals: it counts them, and never
    quotes them (a lock screen is seen by whoever is nearby)."""
    if transition:
        what = "shared goal" if goals == 1 else f"{goals} shared goals"
        return f"{me}, a short check-in with {them} on your {what}:"
    what = "the goal" if goals == 1 else f"the {goals} goals"
    return (
        f"{me}, time for your quarterly check-in with {them}, and to revisit {what} "
        "you set last quarter. Start here:"
    )


def message_for(
    due: RitualDue,
    deck: Deck,
    prompt: DeckPrompt,
    me: Recipient,
    actions: Mapping[str, str] | None = None,
) -> Message:
    """The words ``me`` reads for ``due`` (and ``actions``, their signed links, if any)."""
    them = _names([p.name for p in _others(due, me)])
    title = due.title.strip() or deck.title
    text = shown_text(prompt, due.transition_mode)
    goals = _goals(due)
    show = True
    if due.kind == "date_night":
        title, lead, show = _date_night(due, deck, me, them)
    elif goals:
        lead = _checkin_lead(me.name, them, len(goals), due.transition_mode)
    else:
        template = _LEADS.get(due.kind, _LEADS["custom"])[int(due.transition_mode)]
        lead = template.format(me=me.name, them=them, title=title)
    body = f"{lead} {text}" if show else lead
    long_parts = [body]
    if show and text != prompt.text:
        long_parts.append(f"If you have a little longer: {prompt.text}")
    if goals:
        long_parts.append(
            "The goals you set last quarter:\n" + "\n".join(f"- {goal}" for goal in goals)
        )
    if deck.about:
        long_parts.append(" ".join(deck.about.split()))
    return Message(
        partner_id=me.id,
        title=clip(title, TITLE_MAX),
        body=clip(body, BODY_MAX),
        long_body="\n\n".join(long_parts),
        actions=dict(actions or {}),
    )


def compose(
    due: RitualDue,
    deck: Deck,
    prompt: DeckPrompt,
    *,
    actions: Mapping[str, Mapping[str, str]] | None = None,
) -> NudgeReady:
    """The ``nudge.ready`` record for ``due`` with ``prompt`` chosen from ``deck``.

    ``actions`` maps a partner id to that partner's signed links (``shared.links``); the
    caller signs them, so composing stays pure.
    """
    actions = actions or {}
    return _nudge(
        due,
        make_prompt(deck, prompt, due.transition_mode),
        [message_for(due, deck, prompt, me, actions.get(me.id)) for me in due.recipients],
    )


def _nudge(due: RitualDue, prompt: Prompt, messages: list[Message]) -> NudgeReady:
    fields = due.model_dump(exclude={"event_id", "emitted_at"})
    return NudgeReady(**fields, prompt=prompt, messages=messages)


# -- "you both did it" -----------------------------------------------------------------


def _when(wall_time: datetime) -> str:
    # The slot's own clock time: an evening ritual was done "tonight", a morning one "today".
    return "tonight" if wall_time.hour >= 17 or wall_time.hour < 4 else "today"


def _streak_line(streak: int) -> str:
    if streak <= 1:
        return "A new streak starts here."
    return f"{streak} in a row."


def celebration_nudge(due: RitualDue) -> NudgeReady:
    """The note both partners get once both marked an occurrence done.

    The same line for both ("Six-second kiss: done together today. 5 in a row."), with the
    couple's streak for the ritual (``due.streak``); no deck, no links.
    """
    ritual = due.title.strip() or "Your ritual"
    line = f"{ritual}: done together {_when(due.wall_time)}. {_streak_line(due.streak)}"
    messages = []
    for me in due.recipients:
        them = _names([p.name for p in _others(due, me)])
        messages.append(
            Message(
                partner_id=me.id,
                title="You both did it",
                body=clip(line, BODY_MAX),
                long_body=f"{line}\n\nNice work, {me.name} and {them}.",
            )
        )
    prompt = Prompt(deck=TANDEM_DECK, prompt_id=CELEBRATION_ID, text=line)
    return _nudge(due, prompt, messages)


# -- the weekly summary ----------------------------------------------------------------


def _zone(name: str) -> tzinfo:
    # The scheduler validated the zone; should a replica lack it, UTC beats a crash.
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _date_night_line(summary: WeeklySummary, due: RitualDue, me: Recipient) -> str | None:
    """ "Next date night: Fri 27 Nov, 19:30, your turn to plan." in ``me``'s own zone."""
    if summary.next_date_night is None:
        return None
    at = summary.next_date_night.astimezone(_zone(me.timezone))
    line = f"Next date night: {at:%a} {at.day} {at:%b}, {at:%H:%M}"
    if summary.next_planner == me.id:
        return line + ", your turn to plan."
    planner = _name_of(due, summary.next_planner)
    return line + (f", {planner} plans." if planner else ".")


def _kept_line(ritual: RitualKept) -> str:
    line = f"- {ritual.title}: {ritual.kept}/{ritual.total} kept"
    return line + (f", {ritual.streak} in a row" if ritual.streak >= 2 else "")


def _fit(parts: list[str], limit: int) -> str:
    """The parts, in order of importance, that fit in ``limit`` whole; the first is clipped
    if it alone is too long. Better a line left out than one cut mid-sentence."""
    text = clip(parts[0], limit)
    for part in parts[1:]:
        if len(text) + 1 + len(part) <= limit:
            text = f"{text} {part}"
    return text


def summary_message(due: RitualDue, summary: WeeklySummary, me: Recipient) -> Message:
    """The weekly summary as ``me`` reads it: kept/total, the best streak, next date night."""
    them = _names([p.name for p in _others(due, me)])
    kept = sum(r.kept for r in summary.rituals)
    total = sum(r.total for r in summary.rituals)
    if total:
        headline = f"{me.name}, your week with {them}: {kept}/{total} rituals kept together."
    else:
        headline = f"{me.name}, a quiet week with {them}: no rituals were due."
    best = max(summary.rituals, key=lambda r: r.streak, default=None)
    streak = None
    if best is not None and best.streak >= 2:
        streak = f"Best streak: {best.title}, {best.streak} in a row."
    date_night = _date_night_line(summary, due, me)
    body = _fit([p for p in (headline, date_night, streak) if p], BODY_MAX)
    week = f"{summary.week_start:%a} {summary.week_start.day} {summary.week_start:%b}"
    long_parts = [f"{headline.removesuffix('.')} (week of {week})."]
    if summary.rituals:
        long_parts.append("\n".join(_kept_line(r) for r in summary.rituals))
    if date_night:
        long_parts.append(date_night)
    return Message(
        partner_id=me.id,
        title="Your week together",
        body=body,
        long_body="\n\n".join(long_parts),
    )


def summary_nudge(due: RitualDue) -> NudgeReady:
    """The opt-in weekly summary, composed from ``due.summary`` (ValueError if it has none)."""
    summary = due.summary
    if summary is None:
        raise ValueError(f"occurrence {due.occurrence_id!r} carries no summary")
    kept = sum(r.kept for r in summary.rituals)
    total = sum(r.total for r in summary.rituals)
    prompt = Prompt(
        deck=TANDEM_DECK,
        prompt_id=SUMMARY_ID,
        text=f"Week of {summary.week_start.isoformat()}: {kept}/{total} rituals kept",
    )
    return _nudge(due, prompt, [summary_message(due, summary, me) for me in due.recipients])
