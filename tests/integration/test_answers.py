"""Partners answering back, over a real Redis and a real broker: signed links, streaks,
snooze, "you both did it", goals, the weekly summary and the calendar feed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import icalendar

from services.scheduler import recurrence
from services.scheduler.firing import Firer
from shared import links
from shared.ids import OccurrenceId, slot_key
from shared.topics import RITUAL_DUE, RITUAL_DUE_URGENT
from tests.support.kafka import TopicReader
from tests.support.scheduler import ADMIN, couple_body


async def _couple_and_daily(api, **ritual: object) -> tuple[dict, dict, list[recurrence.Slot]]:
    """A couple with a daily 07:00 (Berlin) ritual that started ten days ago, and its past
    firings, newest last."""
    couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    start = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%dT00:00:00")
    body = {
        "kind": "evening_checkin",
        "schedule": {
            "rrule": "FREQ=DAILY;BYHOUR=7;BYMINUTE=0",
            "timezone": "Europe/Berlin",
            "start": start,
        },
        **ritual,
    }
    made = (await api.post(f"/v1/couples/{couple['id']}/rituals", json=body, headers=ADMIN)).json()
    schedule = recurrence.Schedule(
        timezone="Europe/Berlin",
        rrule="FREQ=DAILY;BYHOUR=7;BYMINUTE=0",
        start=datetime.fromisoformat(start),
    )
    now = datetime.now(UTC)
    past = recurrence.slots_between(schedule, "Europe/Berlin", now - timedelta(days=5), now)
    return couple, made, past


def _occurrence(ritual: dict, slot: recurrence.Slot) -> str:
    return str(OccurrenceId(ritual["id"], slot.instant))


async def test_signed_links_keep_the_couples_streak(infra, running) -> None:
    scheduler, api = running
    key = scheduler.settings.secret_key
    couple, ritual, past = await _couple_and_daily(api)
    sam, alex = (p["id"] for p in couple["partners"])
    # both partners did the last three days' check-ins, through the API
    for slot in past[-4:-1]:
        for partner in (sam, alex):
            answer = await api.post(
                f"/v1/occurrences/{_occurrence(ritual, slot)}/ack",
                json={"action": "done", "partner_id": partner},
                headers=ADMIN,
            )
            assert answer.status_code == 200, answer.text
    assert (await api.get(f"/v1/rituals/{ritual['id']}", headers=ADMIN)).json()["streak"] == 3
    # today's, by the links in each partner's nudge (no token needed)
    today = _occurrence(ritual, past[-1])
    for partner in (sam, alex):
        url = links.action_links(key, "http://x", couple["id"], today, partner)["done"]
        path = "/a/" + url.split("/a/")[1]
        opened = await api.get(path)  # opening the link (or a link preview) changes nothing
        assert opened.status_code == 200 and "Mark it done" in opened.text
        slot = scheduler.store._slot(ritual["id"], slot_key(past[-1].wall_time))
        assert f"answer:{partner}" not in await scheduler.redis.hgetall(slot)
        page = await api.post(path, headers={"accept": "text/html"})  # its button
        assert page.status_code == 200 and "Marked done" in page.text
    assert "You both did it (4 in a row)" in page.text
    assert (await api.get(f"/v1/rituals/{ritual['id']}", headers=ADMIN)).json()["streak"] == 4
    # a missed day breaks it: two days ago only Sam answered
    other, ritual2, past2 = await _couple_and_daily(api)
    a, b = (p["id"] for p in other["partners"])
    for slot, who in ((past2[-2], (a, b)), (past2[-3], (a,)), (past2[-4], (a, b))):
        for partner in who:
            await api.post(
                f"/v1/occurrences/{_occurrence(ritual2, slot)}/ack",
                json={"action": "done", "partner_id": partner},
                headers=ADMIN,
            )
    assert (await api.get(f"/v1/rituals/{ritual2['id']}", headers=ADMIN)).json()["streak"] == 1


async def test_bad_expired_and_foreign_links_are_refused(infra, running) -> None:
    scheduler, api = running
    key = scheduler.settings.secret_key
    couple, ritual, past = await _couple_and_daily(api)
    other, other_ritual, other_past = await _couple_and_daily(api)
    sam = couple["partners"][0]["id"]
    occurrence = _occurrence(ritual, past[-1])
    expired = links.sign(
        key, links.Grant(couple["id"], occurrence, sam, "done", int(time.time()) - 5)
    )
    assert (await api.post(f"/a/{expired}")).status_code == 410
    good = links.sign(
        key, links.Grant(couple["id"], occurrence, sam, "done", int(time.time()) + 60)
    )
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    assert (await api.post(f"/a/{tampered}")).status_code == 403
    assert (await api.post("/a/garbage")).status_code in (400, 403)
    # a link minted for this couple naming the other couple's occurrence acts on nothing
    foreign = links.sign(
        key,
        links.Grant(
            couple["id"],
            _occurrence(other_ritual, other_past[-1]),
            sam,
            "done",
            int(time.time()) + 60,
        ),
    )
    answer = await api.post(f"/a/{foreign}")
    assert answer.status_code == 404, answer.text
    page = await api.get(f"/a/{expired}")
    assert page.status_code == 410 and "expired" in page.text
    # the API ack needs the couple's own token and a real partner
    token = {"Authorization": f"Bearer {other['token']}"}
    assert (
        await api.post(
            f"/v1/occurrences/{occurrence}/ack",
            json={"action": "done", "partner_id": sam},
            headers=token,
        )
    ).status_code == 404
    assert (
        await api.post(f"/v1/occurrences/{occurrence}/ack", json={"action": "done"}, headers=ADMIN)
    ).status_code == 422
    assert (
        await api.post(
            f"/v1/occurrences/{occurrence}/ack",
            json={"action": "nap", "partner_id": sam},
            headers=ADMIN,
        )
    ).status_code == 422


async def test_snooze_refires_once_for_that_partner(infra, running) -> None:
    scheduler, api = running
    settings = scheduler.settings
    couple, ritual, _ = await _couple_and_daily(api)
    sam, alex = (p["id"] for p in couple["partners"])
    trigger = (await api.post(f"/v1/rituals/{ritual['id']}/trigger", headers=ADMIN)).json()
    occurrence = trigger["occurrence_id"]
    answer = await api.post(
        f"/v1/occurrences/{occurrence}/ack",
        json={"action": "snooze", "minutes": 5, "partner_id": sam},
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.text
    refire = answer.json()["refire"]
    again = await api.post(
        f"/v1/occurrences/{occurrence}/ack",
        json={"action": "snooze", "partner_id": sam},
        headers=ADMIN,
    )
    assert again.status_code == 409
    # five minutes later (a publisher with its clock moved on) the re-fire goes out, once
    later = Firer(scheduler.store, scheduler.broker, settings, clock=lambda: time.time() + 301)
    async with TopicReader(settings, RITUAL_DUE, RITUAL_DUE_URGENT) as reader:
        await later.publish_outbox()
        records = await reader.until(lambda rs: any(r["occurrence_id"] == refire for r in rs))
        await reader.quiet(1.0)
    refired = [r for r in records if r["occurrence_id"] == refire]
    assert len(refired) == 1
    event = refired[0]
    assert event["trigger"] == "snooze" and event["origin_occurrence_id"] == occurrence
    assert [r["id"] for r in event["recipients"]] == [sam]
    assert datetime.fromisoformat(event["scheduled_for"]) > datetime.now(UTC) + timedelta(minutes=4)
    # the re-fire itself cannot be snoozed again
    assert (
        await api.post(f"/v1/occurrences/{refire}/ack", json={"action": "snooze"}, headers=ADMIN)
    ).status_code == 409
    assert alex  # the other partner is untouched: nothing was re-fired for them
    assert not any(
        r.get("origin_occurrence_id") and r["recipients"][0]["id"] == alex for r in records
    )


async def test_both_done_sends_you_both_did_it_without_sms(infra, running) -> None:
    scheduler, api = running
    settings = scheduler.settings
    body = couple_body()
    body["partners"][1]["channels"].insert(
        0, {"url": "signal://127.0.0.1:9/+15550000000/+15551112222", "kind": "sms"}
    )
    couple = (await api.post("/v1/couples", json=body, headers=ADMIN)).json()
    made = (
        await api.post(
            f"/v1/couples/{couple['id']}/rituals",
            json={"kind": "hug", "celebrate": True},
            headers=ADMIN,
        )
    ).json()
    occurrence = (await api.post(f"/v1/rituals/{made['id']}/trigger", headers=ADMIN)).json()[
        "occurrence_id"
    ]
    async with TopicReader(settings, RITUAL_DUE, RITUAL_DUE_URGENT) as reader:
        for partner in couple["partners"]:
            done = await api.post(
                f"/v1/occurrences/{occurrence}/ack",
                json={"action": "done", "partner_id": partner["id"]},
                headers=ADMIN,
            )
        assert done.json()["completion"] == "both" and done.json()["celebrated"]
        records = await reader.until(lambda rs: any(r["purpose"] == "celebration" for r in rs))
        await reader.quiet(1.0)
    notes = [r for r in records if r["purpose"] == "celebration" and r["couple_id"] == couple["id"]]
    assert len(notes) == 1
    kinds = {c["kind"] for r in notes[0]["recipients"] for c in r["channels"]}
    assert "sms" not in kinds and len(notes[0]["recipients"]) == 2
    history = (await api.get(f"/v1/couples/{couple['id']}/nudges", headers=ADMIN)).json()
    assert history is not None  # history fills from nudge.* events once content/notifier run


async def test_checkin_names_last_quarters_goals_and_summary_counts_the_week(
    infra, running
) -> None:
    scheduler, api = running
    settings = scheduler.settings
    couple, daily, past = await _couple_and_daily(api)
    sam, alex = (p["id"] for p in couple["partners"])
    for partner in (sam, alex):
        await api.post(
            f"/v1/occurrences/{_occurrence(daily, past[-1])}/ack",
            json={"action": "done", "partner_id": partner},
            headers=ADMIN,
        )
    today = datetime.now(UTC).date()
    previous = (
        f"{today.year - 1}-Q4" if today.month <= 3 else f"{today.year}-Q{(today.month - 1) // 3}"
    )
    for text in ("Cook together on Sundays", "Plan the spring trip"):
        made = await api.post(
            f"/v1/couples/{couple['id']}/goals",
            json={"text": text, "quarter": previous},
            headers=ADMIN,
        )
        assert made.status_code == 201
    await api.post(
        f"/v1/couples/{couple['id']}/goals", json={"text": "This quarter's"}, headers=ADMIN
    )
    bad = await api.post(
        f"/v1/couples/{couple['id']}/goals", json={"text": "x", "quarter": "Q9"}, headers=ADMIN
    )
    assert bad.status_code == 422
    # both fire in two seconds (the running firing loop sends them)
    soon = {"at": (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0).isoformat()}
    rituals_url = f"/v1/couples/{couple['id']}/rituals"
    checkin = (
        await api.post(
            rituals_url, json={"kind": "relationship_checkin", "schedule": soon}, headers=ADMIN
        )
    ).json()
    summary = (
        await api.post(
            rituals_url, json={"kind": "weekly_summary", "schedule": soon}, headers=ADMIN
        )
    ).json()
    await api.post(rituals_url, json={"kind": "date_night"}, headers=ADMIN)
    async with TopicReader(settings, RITUAL_DUE, RITUAL_DUE_URGENT) as reader:
        records = await reader.until(
            lambda rs: {checkin["id"], summary["id"]} <= {r["ritual_id"] for r in rs}
        )
    by_ritual = {r["ritual_id"]: r for r in records}
    assert by_ritual[checkin["id"]]["goals"] == ["Cook together on Sundays", "Plan the spring trip"]
    week = by_ritual[summary["id"]]
    assert week["purpose"] == "summary"
    kept = {k["ritual_id"]: k for k in week["summary"]["rituals"]}
    assert (
        kept[daily["id"]]["kept"] >= 1 and kept[daily["id"]]["total"] >= kept[daily["id"]]["kept"]
    )
    assert week["summary"]["next_planner"] in (sam, alex)
    assert datetime.fromisoformat(week["summary"]["next_date_night"]) > datetime.now(UTC)


async def test_calendar_feed_parses_back_with_rules_and_zones(infra, running) -> None:
    _, api = running
    couple, ritual, _ = await _couple_and_daily(api)
    await api.post(
        f"/v1/couples/{couple['id']}/rituals", json={"kind": "date_night"}, headers=ADMIN
    )
    at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    await api.post(
        f"/v1/couples/{couple['id']}/rituals",
        json={"kind": "hug", "schedule": {"at": at.isoformat()}},
        headers=ADMIN,
    )
    token = {"Authorization": f"Bearer {couple['token']}"}
    answer = await api.get(f"/v1/couples/{couple['id']}/calendar.ics", headers=token)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/calendar")
    cal = icalendar.Calendar.from_ical(answer.content)
    events = {str(e["uid"]): e for e in cal.walk("VEVENT")}
    assert len(events) == 3
    daily = events[f"{ritual['id']}@tandem"]
    rrule = daily["rrule"]
    assert isinstance(rrule, icalendar.vRecur)
    assert rrule["FREQ"] == ["DAILY"] and rrule["BYHOUR"] == [7]
    start = daily.decoded("dtstart")
    assert str(start.tzinfo) == "Europe/Berlin" and (start.hour, start.minute) == (7, 0)
    assert {str(tz["tzid"]) for tz in cal.walk("VTIMEZONE")} >= {"Europe/Berlin"}
    # the secret feed URL works without a token; a wrong one does not
    feed = (await api.get(f"/v1/couples/{couple['id']}", headers=token)).json()["calendar_feed"]
    path = feed.split("://", 1)[1].split("/", 1)[1]
    assert (await api.get("/" + path)).status_code == 200
    assert (await api.get(f"/v1/couples/{couple['id']}/calendar.ics?feed=nope")).status_code == 401
    assert (await api.get(f"/v1/couples/{couple['id']}/calendar.ics")).status_code == 401
