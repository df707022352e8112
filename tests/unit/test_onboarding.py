"""Onboarding's fast paths give what the slow ones gave: channel URLs loaded as Apprise loads
them, and the priority flag of the shared contract."""

from __future__ import annotations

import apprise
import pytest

from services.scheduler.api.couples import load
from shared.events import RitualDue

URLS = [
    "json://127.0.0.1:9/hook?token=tok-1",
    "mailto://127.0.0.1:9?to=alex@example.com&from=t@example.com&mode=insecure",
    "mailto://user:pass@gmail.com",
    "mailto://a@b.example?smtp=10.0.0.5",
    "ntfy://topic",
    "ntfy://ntfy.example.com/topic",
    "JSON://Host.example/x",
    "json://host.example/#frag",
    "tgram://123456789:abcdefg_hijklmnop/12315544",
    "https://discord.com/api/webhooks/4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",  # native
    "nope://x",  # no such schema
    "json://",  # no host
    "mailto://",
    "dbus://",
    "json://127.0.0.1:99999/",  # a bad port
    "not a url",
]


@pytest.mark.parametrize("url", URLS)
def test_load_is_what_apprise_instantiate_loads(url: str) -> None:
    asset = apprise.AppriseAsset()
    fast, slow = load(url, asset), apprise.Apprise.instantiate(url, asset=asset)
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert type(fast) is type(slow)
        assert fast.url(privacy=True) == slow.url(privacy=True)
        assert fast.url() == slow.url()
        assert (getattr(fast, "host", None), getattr(fast, "port", None)) == (
            getattr(slow, "host", None),
            getattr(slow, "port", None),
        )
        assert getattr(fast, "smtp_host", None) == getattr(slow, "smtp_host", None)


def _due(**fields: object) -> dict[str, object]:
    return {
        "occurrence_id": "r@x",
        "couple_id": "cpl_1",
        "couple_name": "Sam & Alex",
        "ritual_id": "rit_1",
        "kind": "hug",
        "title": "Hug",
        "delivery": "together",
        "scheduled_for": "2026-11-28T21:00:00Z",
        "wall_time": "2026-11-28T22:00:00",
        "ordinal": 0,
        "partners": [],
        "recipients": [],
        **fields,
    }


def test_urgent_follows_the_trigger_unless_given() -> None:
    assert RitualDue.model_validate(_due()).urgent is False
    assert RitualDue.model_validate(_due(trigger="manual")).urgent is True
    assert RitualDue.model_validate(_due(trigger="snooze")).urgent is True
    assert RitualDue.model_validate(_due(trigger="manual", urgent=False)).urgent is False
    # a record from before the field, and the field through JSON both ways
    event = RitualDue.model_validate_json(
        RitualDue.model_validate(_due(trigger="snooze")).model_dump_json()
    )
    assert event.urgent is True
