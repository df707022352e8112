"""The catalogue of rituals the web app offers: the seed's rituals, each with a one-line
"why" and a sensible default time. Pure data; the rules come from
:data:`services.scheduler.rituals.KIND_DEFAULTS` unless a card names its own."""

from __future__ import annotations

from dataclasses import dataclass

from services.scheduler.rituals import KIND_DEFAULTS


@dataclass(frozen=True)
class Card:
    key: str  # the card's id in forms
    kind: str  # the ritual kind it creates
    title: str
    why: str
    deck: str | None = None  # None: the kind's default deck
    rrule: str | None = None  # None: the kind's default rule
    delivery: str = "together"
    cadence: str = ""  # its days in words, when the form cannot edit them

    @property
    def default_rule(self) -> str:
        return self.rrule or KIND_DEFAULTS[self.kind].rrule


CARDS: tuple[Card, ...] = (
    Card(
        "kiss",
        "morning_kiss",
        "Six-second kiss",
        "Long enough to be a pause in the rush: it says “I see you” before the day pulls you "
        "apart.",
        delivery="local",
    ),
    Card(
        "checkin",
        "evening_checkin",
        "Evening check-in",
        "Trade the high and the low of your day, so neither of you carries it alone.",
    ),
    Card(
        "hug",
        "hug",
        "20-second hug",
        "Twenty seconds is long enough to actually settle into each other.",
    ),
    Card(
        "date",
        "date_night",
        "Date night",
        "One of you plans, the other just shows up; you take turns, so it never stalls.",
    ),
    Card(
        "phones",
        "phone_stack",
        "Phones down at meals",
        "A stack of phones, screens down, turns a meal back into time together.",
    ),
    Card(
        "questions",
        "weekly_questions",
        "Weekly questions",
        "One question a week, asked on purpose, keeps you curious about each other.",
    ),
    Card(
        "deeper",
        "weekly_questions",
        "A deeper question series",
        "Questions that open up a little more each time, from light to personal to deep.",
        deck="closer-by-degrees",
        rrule="FREQ=WEEKLY;BYDAY=WE;BYHOUR=20;BYMINUTE=30",
    ),
    Card(
        "quarterly",
        "relationship_checkin",
        "Quarterly check-in on shared goals",
        "Once a season, look at the goals you share: what is on track, and what comes next.",
        cadence="the first Sunday of every third month",
    ),
)

BY_KEY = {card.key: card for card in CARDS}
