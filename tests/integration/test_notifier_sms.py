"""The notifier against an SMS gateway on 127.0.0.1 that fails, answers slowly, or hangs."""

from __future__ import annotations

import asyncio

from tandem.inbox import Fault, Inbox
from tandem.notifier_harness import (
    Couple,
    Partner,
    make_nudge,
    publish_nudges,
    running_notifier,
    store_couple,
    watching,
)
from tests.support.notifier import fast

SAM_PHONE = "+15551110001"
ALEX_PHONE = "+15551110002"


def texting_couple(inbox: Inbox, tag: str) -> Couple:
    """Both partners on SMS first, e-mail as the fallback."""
    return Couple(
        id=f"cpl_{tag}",
        partners=[
            Partner(
                "sam",
                [
                    ("c_sam_sms", "sms", inbox.sms_url(SAM_PHONE)),
                    ("c_sam_mail", "email", inbox.mailto_url("sam@example.com")),
                ],
            ),
            Partner(
                "alex",
                [
                    ("c_alex_sms", "sms", inbox.sms_url(ALEX_PHONE)),
                    ("c_alex_mail", "email", inbox.mailto_url("alex@example.com")),
                ],
            ),
        ],
    )


async def test_sms_gateway_delivers_title_and_body(infra, inbox: Inbox) -> None:
    settings = fast(infra)
    couple = texting_couple(inbox, "sms-ok")
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        nudge = make_nudge(couple)
        await publish_nudges(settings, nudge)
        await out.wait_for(lambda o: len(o.delivered) >= 2)
    for partner, phone in (("sam", SAM_PHONE), ("alex", ALEX_PHONE)):
        [text] = inbox.to(phone)
        message = nudge.message_for(partner)
        assert (text.title, text.body) == (message.title, message.body)
        assert out.delivered_to(partner)[0].channel_kind == "sms"
        # an event never carries the number
        assert "5551110" not in out.delivered_to(partner)[0].model_dump_json()


async def test_failing_sms_gateway_falls_back_to_email_for_that_partner_only(
    infra, inbox: Inbox
) -> None:
    settings = fast(infra)
    couple = texting_couple(inbox, "sms-down")
    inbox.fault(SAM_PHONE, Fault(forever=True, status=503))
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, make_nudge(couple))
        await out.wait_for(lambda o: len(o.delivered) >= 2)
    assert inbox.to(SAM_PHONE) == [] and len(inbox.to("sam@example.com")) == 1
    assert len(inbox.to(ALEX_PHONE)) == 1 and inbox.to("alex@example.com") == []
    assert out.delivered_to("sam")[0].channel_kind == "email"
    assert out.delivered_to("alex")[0].channel_kind == "sms"


async def test_slow_gateway_within_the_read_timeout_is_a_success(infra, inbox: Inbox) -> None:
    settings = fast(infra)  # read timeout 2 s
    couple = texting_couple(inbox, "sms-slow")
    inbox.fault(SAM_PHONE, Fault(delay=0.8))
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, make_nudge(couple))
        await out.wait_for(lambda o: len(o.delivered) >= 2)
    assert out.delivered_to("sam")[0].attempt == 1
    assert inbox.attempts(SAM_PHONE) == 1


async def test_hung_gateway_is_retried_on_the_same_channel(infra, inbox: Inbox) -> None:
    # The gateway hangs past the read timeout on the first request. That attempt's outcome
    # is unknown (the text may still go out), so Tandem retries the SAME channel after
    # backoff rather than buzzing a second device at once.
    settings = fast(infra)
    couple = texting_couple(inbox, "sms-hang")
    inbox.fault(SAM_PHONE, Fault(fail=1, delay=4.0, status=504))
    await store_couple(settings, couple)
    async with watching(settings) as out, running_notifier(settings):
        await publish_nudges(settings, make_nudge(couple))
        await out.wait_for(lambda o: len(o.delivered) >= 2, within=60)
        await asyncio.sleep(0.5)
    sam = out.delivered_to("sam")[0]
    assert (sam.channel_kind, sam.attempt) == ("sms", 2)
    assert inbox.attempts(SAM_PHONE) == 2
    assert inbox.to("sam@example.com") == []
