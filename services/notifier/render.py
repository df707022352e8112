"""What one channel shows of one partner's message, action links included. Pure: no I/O.

A :class:`~shared.events.Message` carries a lock-screen ``body`` (<= 240), an optional
``long_body`` and ``actions`` -- signed "done" / "snooze" / "skip" links (``shared.links``).
A link holds only a signed token (couple, occurrence, partner, action, expiry), nothing a
channel URL or a partner wrote, so it is fine to show wherever it fits. Per channel:

* ntfy (``ntfy://``, ``ntfys://``): three action buttons (:func:`ntfy_actions`, sent as the
  ``X-Actions`` header through Apprise's ntfy ``actions`` option); the body stays as it is.
  Each button is an ``http`` action -- the ntfy app POSTs to the link in the background and
  clears the notification -- so "done" is one tap, no browser.
* e-mail: ``long_body`` (else ``body``), then all three links, one per line.
* push and anything else Apprise speaks (json://, Pushover, ...): ``body``, then the links
  on new lines after it.
* SMS: at most the "done" link, and only if the whole text (title, body, link) stays within
  :data:`SMS_MAX` = 320 characters (two segments): a third segment costs the couple money
  and a split text reads badly. A link is ~200 characters, so in practice only short
  nudges carry it; the others go without (the partner can still answer from another
  channel or the inbox).

Every nudge also carries a "stop" link (pause a channel or leave, ``shared.links.stop_link``):
a line like the others in e-mail and push, in the body under ntfy's three buttons, and not
in an SMS (gateways answer STOP themselves).

Links are listed in a fixed order ("done", "snooze", "skip"), then any action this module
does not know yet, so a new action added upstream still reaches the partner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.events import ChannelKind, Message
from shared.links import ACTIONS, SNOOZE_MINUTES, STOP

SMS_MAX = 320
NTFY_MAX_ACTIONS = 3  # ntfy shows at most three buttons per notification
NTFY_SCHEMES = frozenset({"ntfy", "ntfys"})

# As a line in a text ("Done: https://…") and as a button label ("Done").
LINE_LABELS: Mapping[str, str] = {
    "done": "Done",
    "snooze": f"Snooze {SNOOZE_MINUTES} min",
    "skip": "Skip this one",
    STOP: "Stop or pause these nudges",
}
BUTTON_LABELS: Mapping[str, str] = {
    "done": "Done",
    "snooze": f"Snooze {SNOOZE_MINUTES} min",
    "skip": "Skip",
}


@dataclass(frozen=True)
class Rendered:
    """What to hand Apprise: the text, and the ntfy ``X-Actions`` value (None: no buttons)."""

    title: str
    body: str
    buttons: str | None = None


def ordered(actions: Mapping[str, str]) -> list[tuple[str, str]]:
    """``actions`` as (action, url), known actions first in their fixed order."""
    known = [(a, actions[a]) for a in ACTIONS if a in actions]
    rest = sorted((a, u) for a, u in actions.items() if a not in ACTIONS)
    return known + rest


def _label(labels: Mapping[str, str], action: str) -> str:
    return labels.get(action) or action.replace("_", " ").capitalize()


def link_lines(actions: Mapping[str, str]) -> str:
    """The links as text, one ``Label: url`` per line."""
    return "\n".join(f"{_label(LINE_LABELS, a)}: {url}" for a, url in ordered(actions))


def has_buttons(url: str) -> bool:
    """True if the channel ``url`` renders action buttons: ntfy, unless its URL already sets
    ``actions=`` (an integrator's explicit buttons win; ours then go in the body)."""
    parts = urlsplit(url)
    return parts.scheme.lower() in NTFY_SCHEMES and "actions=" not in parts.query


def _quote(value: str) -> str:
    # ntfy's simple action format splits on "," and ";"; a value holding either is quoted.
    # A '"' has no business in a URL or in our labels; escaped, it cannot end the quote.
    if any(c in value for c in ",;\"'"):
        return '"' + value.replace('"', "%22") + '"'
    return value


def ntfy_actions(actions: Mapping[str, str]) -> str:
    """The ``X-Actions`` header for ``actions``, in ntfy's simple format: one ``http``
    action (POST, then clear the notification) per link, at most three."""
    return "; ".join(
        f"http, {_quote(_label(BUTTON_LABELS, a))}, {_quote(url)}, clear=true"
        for a, url in ordered(actions)[:NTFY_MAX_ACTIONS]
    )


def render(message: Message, kind: ChannelKind, *, buttons: bool = False) -> Rendered:
    """What a channel of ``kind`` shows of ``message``; ``buttons``: it is an ntfy channel
    (see :func:`has_buttons`)."""
    title, body, actions = message.title, message.body, message.actions
    if kind == "email":
        text = message.long_body or body
        return Rendered(title, f"{text}\n\n{link_lines(actions)}" if actions else text)
    if not actions:
        return Rendered(title, body)
    if buttons:  # the stop link (issue #13) is a fourth link: past ntfy's buttons, in the text
        stop = f"\n\n{LINE_LABELS[STOP]}: {actions[STOP]}" if STOP in actions else ""
        return Rendered(title, body + stop, ntfy_actions(actions))
    if kind == "sms":
        done = actions.get("done")
        if done is None:
            return Rendered(title, body)
        with_link = f"{body}\n\n{_label(LINE_LABELS, 'done')}: {done}"
        # The gateway sends the title as the text's first line ("title\r\nbody").
        fits = len(title) + 2 + len(with_link) <= SMS_MAX
        return Rendered(title, with_link if fits else body)
    return Rendered(title, f"{body}\n\n{link_lines(actions)}")
