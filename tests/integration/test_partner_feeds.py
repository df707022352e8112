"""Each partner's calendar feed, read by an independent iCalendar client
(``recurring-ical-events``), holds exactly the instants the scheduler will fire at for that
partner -- DST gaps included -- and the couple's feed holds both partners'; a "local" ritual
is at each partner's own wall-clock time in their own zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from tests.support.scheduler import ADMIN, couple_body

# Spans both 2027 spring changes: New York on 14 March, Berlin on 28 March.
WINDOW = (datetime(2027, 3, 10, tzinfo=UTC), datetime(2027, 4, 5, tzinfo=UTC))
NEW_YORK = ZoneInfo("America/New_York")


async def _ritual(api: Any, couple_id: str, body: dict[str, Any]) -> dict[str, Any]:
    made = await api.post(f"/v1/couples/{couple_id}/rituals", json=body, headers=ADMIN)
    assert made.status_code == 201, made.text
    return dict(made.json())


async def _rituals(api: Any, couple_id: str) -> dict[str, dict[str, Any]]:
    """Together daily in a gap hour in Berlin, a local morning kiss, a weekly one in a gap
    hour in New York with an exdate, a one-off."""
    start = "2027-03-01T00:00:00"
    return {
        "daily": await _ritual(
            api,
            couple_id,
            {
                "kind": "evening_checkin",
                "title": "Night owls",
                "schedule": {
                    "rrule": "FREQ=DAILY;BYHOUR=2;BYMINUTE=30",
                    "timezone": "Europe/Berlin",
                    "start": start,
                },
            },
        ),
        "kiss": await _ritual(
            api,
            couple_id,
            {
                "kind": "morning_kiss",
                "delivery": "local",
                "schedule": {
                    "rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=7;BYMINUTE=30",
                    "start": start,
                },
            },
        ),
        "weekly": await _ritual(
            api,
            couple_id,
            {
                "kind": "weekly_questions",
                "schedule": {
                    "rrule": "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=30",
                    "timezone": "America/New_York",
                    "start": start,
                    "exdates": ["2027-03-21T02:30:00"],
                },
            },
        ),
        "once": await _ritual(
            api,
            couple_id,
            {"kind": "hug", "schedule": {"at": "2027-03-20T12:00:00Z"}},
        ),
    }


def _in_window(instant: datetime) -> bool:
    return WINDOW[0] <= instant < WINDOW[1]


async def _will_fire(api: Any, ritual_id: str) -> dict[str, set[datetime]]:
    """Partner id -> the UTC instants the scheduler says will fire in the window."""
    answer = await api.get(f"/v1/rituals/{ritual_id}/upcoming?count=100", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    found: dict[str, set[datetime]] = {}
    for occurrence in answer.json()["occurrences"]:
        for partner, when in occurrence["scheduled_for"].items():
            instant = datetime.fromisoformat(when)
            if _in_window(instant):
                found.setdefault(partner, set()).add(instant)
    return found


def _expanded(body: bytes) -> list[tuple[str, str, datetime]]:
    """(UID, summary, start) of each instance in the window, as the independent client
    expands the calendar."""
    calendar = icalendar.Calendar.from_ical(body)
    events = recurring_ical_events.of(calendar).between(
        WINDOW[0] - timedelta(days=1), WINDOW[1] + timedelta(days=1)
    )
    found = []
    for event in events:
        start = event.decoded("dtstart")
        if _in_window(start.astimezone(UTC)):
            found.append((str(event["uid"]), str(event["summary"]), start))
    return found


def _instants(expanded: list[tuple[str, str, datetime]], ritual_id: str) -> set[datetime]:
    return {
        start.astimezone(UTC)
        for uid, _, start in expanded
        if uid.removesuffix("@tandem").split("/")[0] == ritual_id
    }


async def _status(api: Any, path: str) -> int:
    return int((await api.get(path)).status_code)


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


async def test_each_partners_feed_is_what_fires_for_them(running) -> None:
    _, api = running
    couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    sam, alex = (p["id"] for p in couple["partners"])
    made = await _rituals(api, couple["id"])
    own = {"Authorization": f"Bearer {couple['token']}"}
    view = (await api.get(f"/v1/couples/{couple['id']}", headers=own)).json()
    feeds = {p["id"]: p["calendar_feed"] for p in view["partners"]}
    assert set(feeds) == {sam, alex} and len({*feeds.values(), view["calendar_feed"]}) == 3

    couple_feed = await api.get(_path(view["calendar_feed"]))
    assert couple_feed.status_code == 200
    partner_feeds = {}
    for partner, url in feeds.items():
        answer = await api.get(_path(url))
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(
            "text/calendar"
        )
        partner_feeds[partner] = _expanded(answer.content)
        # the couple's token opens it too
        path = f"/v1/couples/{couple['id']}/partners/{partner}/calendar.ics"
        by_token = (await api.get(path, headers=own)).content  # DTSTAMP aside, the same
        assert _expanded(by_token) == partner_feeds[partner]
    everyone = _expanded(couple_feed.content)

    for name, ritual in made.items():
        fires = await _will_fire(api, ritual["id"])
        assert fires, name  # every ritual fires in the window
        for partner in (sam, alex):
            assert _instants(partner_feeds[partner], ritual["id"]) == fires[partner], (
                name,
                partner,
            )
        assert _instants(everyone, ritual["id"]) == fires[sam] | fires[alex], name

    # the DST gaps: Berlin's 02:30 on 28 March is 03:30 CEST; New York's on 14 March, 03:30 EDT
    daily = _instants(partner_feeds[sam], made["daily"]["id"])
    assert datetime(2027, 3, 28, 1, 30, tzinfo=UTC) in daily
    weekly = _instants(partner_feeds[alex], made["weekly"]["id"])
    assert datetime(2027, 3, 14, 7, 30, tzinfo=UTC) in weekly
    assert datetime(2027, 3, 21, 6, 30, tzinfo=UTC) not in weekly  # the exdate

    # Alex's morning kiss is at 07:30 in New York in Alex's own feed, before and after DST
    kisses = [start for uid, _, start in partner_feeds[alex] if made["kiss"]["id"] in uid]
    assert len(kisses) == len(fires_kiss := _instants(partner_feeds[alex], made["kiss"]["id"]))
    assert fires_kiss and all(
        (k.astimezone(NEW_YORK).hour, k.astimezone(NEW_YORK).minute) == (7, 30) for k in kisses
    )
    raw = icalendar.Calendar.from_ical((await api.get(_path(feeds[alex]))).content)
    (kiss,) = [e for e in raw.walk("VEVENT") if made["kiss"]["id"] in str(e["uid"])]
    start = kiss.decoded("dtstart")
    assert str(start.tzinfo) == "America/New_York" and (start.hour, start.minute) == (7, 30)
    # the couple's feed has both partners' kisses, each named
    summaries = {summary for uid, summary, _ in everyone if made["kiss"]["id"] in uid}
    assert summaries == {"Six-second kiss (Sam)", "Six-second kiss (Alex)"}


async def test_partner_feed_tokens_open_only_their_feed_and_rotate_with_the_couples(
    running,
) -> None:
    _, api = running
    couple = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    other = (await api.post("/v1/couples", json=couple_body(), headers=ADMIN)).json()
    sam, alex = (p["id"] for p in couple["partners"])
    own = {"Authorization": f"Bearer {couple['token']}"}
    base = f"/v1/couples/{couple['id']}"
    view = (await api.get(base, headers=own)).json()
    token = {p["id"]: p["calendar_feed"].rsplit("feed=", 1)[1] for p in view["partners"]}
    assert await _status(api, f"{base}/partners/{sam}/calendar.ics?feed={token[sam]}") == 200
    # not the other partner's, not the couple's, not another couple's
    assert await _status(api, f"{base}/partners/{alex}/calendar.ics?feed={token[sam]}") == 401
    assert await _status(api, f"{base}/calendar.ics?feed={token[sam]}") == 401
    couple_token = view["calendar_feed"].rsplit("feed=", 1)[1]
    assert await _status(api, f"{base}/partners/{sam}/calendar.ics?feed={couple_token}") == 401
    other_partner = other["partners"][0]["id"]
    elsewhere = f"/v1/couples/{other['id']}/partners/{other_partner}/calendar.ics"
    assert await _status(api, f"{elsewhere}?feed={token[sam]}") == 401
    # without a token; an unknown partner; another couple's partner with this couple's token
    assert await _status(api, f"{base}/partners/{sam}/calendar.ics") == 401
    assert (await api.get(f"{base}/partners/prt_nope/calendar.ics", headers=own)).status_code == 404
    assert (
        await api.get(f"{base}/partners/{other_partner}/calendar.ics", headers=own)
    ).status_code == 404
    # rotating the couple's feed rotates the partners' feeds too
    rotated = await api.post(f"{base}/calendar-feed", headers=own)
    assert rotated.status_code == 200
    new = {p["id"]: p["calendar_feed"] for p in rotated.json()["partners"]}
    assert await _status(api, f"{base}/partners/{sam}/calendar.ics?feed={token[sam]}") == 401
    assert (await api.get(_path(new[sam]))).status_code == 200
    after = (await api.get(base, headers=own)).json()
    assert {p["id"]: p["calendar_feed"] for p in after["partners"]} == new
