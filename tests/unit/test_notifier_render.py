"""What each channel shows of a message's action links (services/notifier/render.py)."""

from __future__ import annotations

from services.notifier.channels import Channels
from services.notifier.render import SMS_MAX, has_buttons, ntfy_actions, render
from shared.events import Message
from shared.links import action_links

LINKS = action_links("k", "https://tandem.example", "cpl_1", "rit_1@20261123T200000Z", "p_sam")


def message(body: str = "Sam, evening check-in with Alex. What made you laugh today?") -> Message:
    return Message(
        partner_id="p_sam",
        title="Evening check-in",
        body=body,
        long_body=body + "\n\nA longer word about the ritual.",
        actions=dict(LINKS),
    )


STOP_LINE = f"Stop or pause these nudges: {LINKS['stop']}"


def test_email_gets_the_long_body_and_all_three_links() -> None:
    shown = render(message(), "email")
    assert shown.buttons is None
    assert shown.body.startswith(message().long_body or "")
    assert shown.body.endswith(
        f"Done: {LINKS['done']}\nSnooze 15 min: {LINKS['snooze']}\nSkip this one: {LINKS['skip']}"
        f"\n{STOP_LINE}"
    )


def test_push_gets_the_links_on_new_lines_after_the_body() -> None:
    shown = render(message(), "push")
    body, links = shown.body.split("\n\n")
    assert body == message().body
    assert links.splitlines() == [
        f"Done: {LINKS['done']}",
        f"Snooze 15 min: {LINKS['snooze']}",
        f"Skip this one: {LINKS['skip']}",
        STOP_LINE,
    ]


def test_ntfy_gets_buttons_and_a_clean_body() -> None:
    shown = render(message(), "push", buttons=True)
    assert shown.body == f"{message().body}\n\n{STOP_LINE}" and shown.title == "Evening check-in"
    assert shown.buttons == (
        f"http, Done, {LINKS['done']}, clear=true; "
        f"http, Snooze 15 min, {LINKS['snooze']}, clear=true; "
        f"http, Skip, {LINKS['skip']}, clear=true"
    )
    assert has_buttons("ntfy://127.0.0.1:8090/sam") and has_buttons("NTFYS://ntfy.sh/sam")
    assert not has_buttons("ntfy://ntfy.sh/sam?actions=view,Open,https://x")  # theirs win
    assert not has_buttons("json://127.0.0.1/sam") and not has_buttons("mailto://x")


def test_ntfy_quotes_what_its_format_would_split_and_keeps_three() -> None:
    header = ntfy_actions({"extra": "https://x/e", **LINKS, "done": "https://x/a/t,1"})
    parts = header.split("; ")
    assert len(parts) == 3  # ntfy shows at most three; the known ones come first
    assert parts[0] == 'http, Done, "https://x/a/t,1", clear=true'


def test_sms_gets_the_done_link_only_when_it_fits_in_two_segments() -> None:
    wordy = message("Sam, evening check-in with Alex. " + "What made you laugh today? " * 5)
    assert render(wordy, "sms").body == wordy.body  # 16 + 2 + 163 + 8 + 150 > 320: no link
    short = message("Hug?")
    shown = render(short, "sms")
    assert shown.body == f"Hug?\n\nDone: {LINKS['done']}"
    assert len(shown.title) + 2 + len(shown.body) <= SMS_MAX
    assert LINKS["snooze"] not in shown.body and LINKS["skip"] not in shown.body


def test_no_actions_renders_as_before() -> None:
    plain = message().model_copy(update={"actions": {}})
    assert render(plain, "push").body == plain.body
    assert render(plain, "email").body == plain.long_body
    assert render(plain, "push", buttons=True).buttons is None


def test_buttons_reach_the_ntfy_plugin_byte_for_byte_and_no_other() -> None:
    channels = Channels(connect_timeout=1, read_timeout=1)
    header = ntfy_actions({**LINKS, "done": "https://x/a/b%2Fc"})  # survives no unquoting
    ntfy = channels._instantiate("ntfy://user:pass@127.0.0.1:8090/sam?priority=high", header)
    assert ntfy is not None and ntfy._NotifyNtfy__actions == header  # type: ignore[attr-defined]
    assert ntfy.priority == "high"  # type: ignore[attr-defined]  # the rest of the URL as usual
    theirs = channels._instantiate("ntfy://127.0.0.1/sam?actions=view,Open,https://y", header)
    assert theirs is not None
    assert theirs._NotifyNtfy__actions == "view,Open,https://y"  # type: ignore[attr-defined]
    assert channels._instantiate("json://127.0.0.1:8090/sam", header) is not None
    assert channels._instantiate("nope://", header) is None
