"""Channel URLs as people and logs may see them.

Apprise's ``url(privacy=True)`` masks passwords and tokens but keeps phone numbers and
e-mail addresses (``signal://host/+15551230001/+15551230002``), which must not reach a log
line, an event or an API response either.
"""

from __future__ import annotations

import re

import apprise

_PHONE = re.compile(r"\+?\d[\d\-() ]{5,}\d")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@|%40)([A-Za-z0-9.-]+)")


def mask(text: str) -> str:
    """Mask phone numbers (keeping the last two digits) and e-mail local parts."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***{m.group(2)}{m.group(3)}", text)
    return _PHONE.sub(lambda m: "***" + re.sub(r"\D", "", m.group(0))[-2:], text)


def redact(service: apprise.plugins.NotifyBase) -> str:
    """The URL of a loaded Apprise service with secrets, numbers and addresses masked."""
    return mask(service.url(privacy=True))
