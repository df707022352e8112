"""Action links as partners get them, over a real broker and Redis into the local inbox:
buttons on ntfy, lines of text in an e-mail."""

from __future__ import annotations

from shared.links import action_links, verify
from tandem.inbox import Inbox
from tandem.notifier_harness import (
    Couple,
    Partner,
    make_nudge,
    publish_nudges,
    running_notifier,
    store_couple,
    watching,
)
from tests.support.notifier import fast, received

PUBLIC = "https://tandem.example"


async def test_ntfy_shows_buttons_and_email_lists_the_links(infra, inbox: Inbox) -> None:
    settings = fast(infra)
    key = settings.secret_key or ""
    couple = Couple(
        id="cpl_answers",
        partners=[
            Partner("sam", [("c_sam_push", "push", inbox.ntfy_url("sam-answers"))]),
            Partner("alex", [("c_alex_mail", "email", inbox.mailto_url("alex@example.com"))]),
        ],
    )
    await store_couple(settings, couple)
    nudge = make_nudge(couple)
    links = {
        p.id: action_links(key, PUBLIC, couple.id, nudge.occurrence_id, p.id)
        for p in couple.partners
    }
    nudge = nudge.model_copy(
        update={
            "messages": [
                m.model_copy(update={"actions": dict(links[m.partner_id])}) for m in nudge.messages
            ]
        }
    )
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, nudge)
        await out.wait_for(lambda o: len(o.delivered) >= 2)
        await received(inbox, lambda r: len(r) >= 2)

    [sam] = inbox.to("sam-answers")
    # the body as written, then the stop link (ntfy shows three buttons at most)
    stop = f"Stop or pause these nudges: {links['sam']['stop']}"
    assert (sam.title, sam.body) == ("Hug", f"{nudge.message_for('sam').body}\n\n{stop}")
    buttons = [[part.strip() for part in b.split(",")] for b in sam.actions.split(";")]
    assert [b[:2] for b in buttons] == [
        ["http", "Done"],
        ["http", "Snooze 15 min"],
        ["http", "Skip"],
    ]
    for (_, _, url, clear), action in zip(buttons, ("done", "snooze", "skip"), strict=True):
        assert url == links["sam"][action] and clear == "clear=true"
        grant = verify(key, url.removeprefix(f"{PUBLIC}/a/"))
        assert (grant.partner_id, grant.action) == ("sam", action)

    [alex] = inbox.to("alex@example.com")
    assert alex.body.startswith(nudge.message_for("alex").long_body or "")
    assert alex.actions == ""
    assert f"Done: {links['alex']['done']}" in alex.body
    assert f"Snooze 15 min: {links['alex']['snooze']}" in alex.body
    assert f"Skip this one: {links['alex']['skip']}" in alex.body
