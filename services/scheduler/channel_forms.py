"""Channel forms: what a partner fills in (an ntfy topic, an e-mail address, a phone number,
or any Apprise URL) turned into the Apprise URL Tandem stores. Pure: no I/O.

People don't write Apprise URLs; operators do, once, in settings: ``TANDEM_NTFY_SERVER``
(an ``http(s)://`` base), and for e-mail, SMS and Signal a gateway URL with a placeholder
(``TANDEM_SMTP_RELAY`` holds ``{address}``, ``TANDEM_SMS_GATEWAY`` and
``TANDEM_SIGNAL_GATEWAY`` hold ``{number}``). A form whose gateway is not configured is
refused with :class:`FormError` naming the field, like a bad address or number.
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

import segno
from pydantic import BaseModel, ConfigDict, Field

from shared.events import ChannelKind
from shared.settings import Settings

FormType = Literal["ntfy", "email", "sms", "signal", "url"]

# ntfy topics: letters, digits, "_" and "-", at most 64 (ntfy's own rule).
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")
# E.164: "+", a country code not starting with 0, at most 15 digits in all.
_NUMBER = re.compile(r"\+[1-9][0-9]{6,14}")
# Deliberately loose (one "@", a dot in the domain, no spaces): the code sent to it is the
# real check.
_ADDRESS = re.compile(r"[^@\s/?&#]+@[^@\s/?&#]+\.[^@\s/?&#]+")


class FormError(ValueError):
    """A form that cannot become a channel: ``field`` names the form field, ``reason`` says
    how to fix it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ChannelForm(BaseModel):
    """One channel as a partner describes it; ``type`` says which other field counts:
    ``topic`` (ntfy), ``address`` (email), ``number`` (sms, signal) or ``url`` + ``kind``
    (url: "advanced: any Apprise URL")."""

    model_config = ConfigDict(extra="forbid")

    type: FormType
    topic: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=254)
    number: str | None = Field(default=None, max_length=32)
    url: str | None = Field(default=None, max_length=2048)
    kind: ChannelKind | None = Field(default=None, description="for type url; default push")


@dataclass(frozen=True)
class ChannelChoice:
    """What a form became: the channel's kind and its plain Apprise URL."""

    kind: ChannelKind
    url: str


def random_topic() -> str:
    """A fresh ntfy topic nobody can guess (ntfy topics are public to whoever knows them)."""
    return "tandem-" + secrets.token_hex(10)


def ntfy_url(server: str, topic: str) -> str:
    """The Apprise URL of ``topic`` on the ntfy ``server`` (``https://`` -> ``ntfys://``)."""
    if not _TOPIC.fullmatch(topic):
        raise FormError("topic", "use 1-64 letters, digits, '-' or '_' (e.g. tandem-3f9a1c)")
    parts = urlsplit(server)
    scheme = "ntfys" if parts.scheme == "https" else "ntfy"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/{topic}"


def ntfy_subscribe_link(server: str, topic: str) -> str:
    """The link the ntfy phone app opens to subscribe to ``topic`` (its ``ntfy://`` deep
    link; ``?secure=false`` for a plain-http server)."""
    parts = urlsplit(server)
    insecure = "?secure=false" if parts.scheme == "http" else ""
    return f"ntfy://{parts.netloc}{parts.path.rstrip('/')}/{quote(topic)}{insecure}"


def ntfy_qr_svg(server: str, topic: str) -> str:
    """An SVG QR code of :func:`ntfy_subscribe_link`, to scan with the phone (segno): one
    ``<svg>`` element that works inline in a page and, carrying its namespace, as an image
    of its own (``svg_inline`` leaves the namespace out, which a browser cannot draw from
    ``<img src>``)."""
    ntfy_url(server, topic)  # the same topic rule as the channel itself
    qr = segno.make(ntfy_subscribe_link(server, topic), error="m")
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=4, title="Subscribe in the ntfy app", xmldecl=False, nl=False)
    return out.getvalue().decode()


def _fill(template: str | None, placeholder: str, value: str, field: str) -> str:
    if not template:
        raise FormError(field, "this server has no gateway for it; choose another kind")
    return template.replace("{" + placeholder + "}", quote(value, safe="@+"))


def email_url(relay: str | None, address: str) -> str:
    """The relay's Apprise mailto URL sending to ``address``."""
    if not _ADDRESS.fullmatch(address):
        raise FormError("address", "give an e-mail address like sam@example.com")
    return _fill(relay, "address", address, "address")


def number_url(gateway: str | None, number: str) -> str:
    """The gateway's Apprise URL texting ``number`` (E.164, e.g. +4915112345678)."""
    compact = re.sub(r"[\s()./-]", "", number)
    if not _NUMBER.fullmatch(compact):
        raise FormError("number", "give the number with its country code, e.g. +4915112345678")
    return _fill(gateway, "number", compact, "number")


def _need(value: str | None, field: str, example: str) -> str:
    if not value:
        raise FormError(field, f"fill in `{field}`, e.g. {example}")
    return value


def choose(form: ChannelForm, settings: Settings) -> ChannelChoice:
    """The channel ``form`` describes under ``settings``' servers and gateways;
    :class:`FormError` naming the field otherwise. The URL is not loaded or checked against
    the egress policy here: the caller does that (as for any channel)."""
    if form.type == "ntfy":
        topic = _need(form.topic, "topic", "tandem-3f9a1c")
        return ChannelChoice("push", ntfy_url(settings.ntfy_server, topic))
    if form.type == "email":
        address = _need(form.address, "address", "sam@example.com")
        return ChannelChoice("email", email_url(settings.smtp_relay, address))
    if form.type in ("sms", "signal"):
        number = _need(form.number, "number", "+4915112345678")
        gateway = settings.sms_gateway if form.type == "sms" else settings.signal_gateway
        return ChannelChoice("sms", number_url(gateway, number))
    url = _need(form.url, "url", "ntfys://ntfy.sh/my-topic")
    return ChannelChoice(form.kind or "push", url)


def with_unsubscribe(url: str, stop_url: str) -> str:
    """An e-mail channel URL that sends ``List-Unsubscribe`` (the stop link) and
    ``List-Unsubscribe-Post`` (RFC 8058 one-click) with every message: Apprise's mailto
    plugin turns each ``+Header=value`` query argument into a header."""
    joiner = "&" if urlsplit(url).query else "?"
    headers = (
        f"+List-Unsubscribe={quote('<' + stop_url + '>', safe='')}"
        f"&+List-Unsubscribe-Post={quote('List-Unsubscribe=One-Click', safe='')}"
    )
    return f"{url}{joiner}{headers}"
