"""Channel forms -> Apprise URLs (services/scheduler/channel_forms.py)."""

from __future__ import annotations

import apprise
import pytest

from services.scheduler.channel_forms import (
    ChannelForm,
    FormError,
    choose,
    ntfy_qr_svg,
    ntfy_subscribe_link,
    ntfy_url,
    random_topic,
    with_unsubscribe,
)
from shared.settings import Settings

RELAY = "mailto://127.0.0.1:2525?to={address}&from=tandem@example.com&mode=insecure"
SMS = "signal://127.0.0.1:8080/+15550000000/{number}"


def settings(**overrides: object) -> Settings:
    return Settings(**{"smtp_relay": RELAY, "sms_gateway": SMS, **overrides})  # type: ignore[arg-type]


def test_ntfy_topic_on_https_and_http_servers() -> None:
    assert ntfy_url("https://ntfy.sh", "tandem-ab12") == "ntfys://ntfy.sh/tandem-ab12"
    assert ntfy_url("http://127.0.0.1:8090/", "t") == "ntfy://127.0.0.1:8090/t"
    assert ntfy_subscribe_link("https://ntfy.sh", "t") == "ntfy://ntfy.sh/t"
    assert ntfy_subscribe_link("http://10.0.0.2", "t") == "ntfy://10.0.0.2/t?secure=false"
    with pytest.raises(FormError) as refused:
        ntfy_url("https://ntfy.sh", "no spaces/or slashes")
    assert refused.value.field == "topic"


def test_random_topics_are_valid_and_differ() -> None:
    topics = {random_topic() for _ in range(20)}
    assert len(topics) == 20
    for topic in topics:
        ntfy_url("https://ntfy.sh", topic)


def test_qr_code_is_an_svg_of_the_subscribe_link() -> None:
    svg = ntfy_qr_svg("https://ntfy.sh", "tandem-ab12")
    assert svg.startswith("<svg") and "Subscribe in the ntfy app" in svg
    with pytest.raises(FormError):
        ntfy_qr_svg("https://ntfy.sh", "bad topic")


def test_forms_become_loadable_apprise_urls() -> None:
    s = settings()
    ntfy = choose(ChannelForm(type="ntfy", topic="tandem-x"), s)
    email = choose(ChannelForm(type="email", address="alex@example.com"), s)
    sms = choose(ChannelForm(type="sms", number="+49 151 1234-5678"), s)
    url = choose(ChannelForm(type="url", url="json://127.0.0.1:9/hook", kind="push"), s)
    assert (ntfy.kind, email.kind, sms.kind, url.kind) == ("push", "email", "sms", "push")
    assert email.url == RELAY.replace("{address}", "alex@example.com")
    assert sms.url == "signal://127.0.0.1:8080/+15550000000/+4915112345678"
    for choice in (ntfy, email, sms, url):
        assert apprise.Apprise.instantiate(choice.url) is not None, choice.url


@pytest.mark.parametrize(
    ("form", "field"),
    [
        (ChannelForm(type="email", address="not-an-address"), "address"),
        (ChannelForm(type="email"), "address"),
        (ChannelForm(type="sms", number="0151 123"), "number"),
        (ChannelForm(type="signal", number="+4915112345678"), "number"),  # no gateway set
        (ChannelForm(type="url"), "url"),
        (ChannelForm(type="ntfy"), "topic"),
    ],
)
def test_a_bad_form_names_its_field(form: ChannelForm, field: str) -> None:
    with pytest.raises(FormError) as refused:
        choose(form, settings())
    assert refused.value.field == field and refused.value.reason


def test_no_relay_no_email_form() -> None:
    with pytest.raises(FormError, match="no gateway"):
        choose(ChannelForm(type="email", address="a@example.com"), settings(smtp_relay=None))


def test_unsubscribe_headers_reach_apprise_mailto() -> None:
    """Apprise's mailto plugin makes a header of each ``+Name=value`` argument."""
    stop = "https://tandem.example/s/abc.def"
    url = with_unsubscribe(RELAY.replace("{address}", "alex@example.com"), stop)
    service = apprise.Apprise.instantiate(url)
    assert service is not None and not isinstance(service, bool)
    headers = {k.lower(): v for k, v in service.headers.items()}  # type: ignore[attr-defined]
    assert headers["list-unsubscribe"] == f"<{stop}>"
    assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
