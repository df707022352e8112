"""How the scheduler stores a couple or a ritual in Redis: compact, and readable in both
layouts a deployment may hold.

A record is a few hundred bytes of JSON that repeats the same field names and Apprise URL
options in every couple. The stored form (layout 1) is ``"1"`` followed by the URL-safe
base64 (unpadded) of that JSON, without the ``id`` (the key carries it) and without fields at
their defaults, raw-deflated with a preset dictionary of those repeated fragments: about
40% of the JSON. Base64 because the services' Redis clients decode every reply as UTF-8
(inside a pipeline or MULTI there is no way to read one reply as bytes).

Records written before (layout 0, up to c44b517) are plain JSON with the id, starting with
``{``: :func:`decode` reads both, and every write stores layout 1, so an old record is
rewritten the next time it changes. Nothing else needs migrating: the keys are the same.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_LAYOUT = "1"
# Frozen: records written with it must stay readable, so a change of the dictionary needs a
# new layout mark. Deflate finds matches closer to its end more cheaply, so the fragments
# every record holds come last.
_ZDICT = (
    b'"deck":"rotation":"alternate","quiet_hours_policy":"per_partner","celebrate":true,'
    b'"celebrate_sms":true,"delivery":"local","exdates":["2026-"grace_seconds":'
    b'"at":"2026-"morning_kiss","hug","date_night","phone_stack","weekly_questions",'
    b'"relationship_checkin","custom","weekly_summary",'
    b'"kind":"sms","redacted":"twilio://***@***/***/?"kind":"push","redacted":"ntfys://ntfy.sh/'
    b"***?priority=default&mode=private&image=yes&auth=***&format=text"
    b"tgram://***/***/?image=False&detect=no&silent=no&preview=no&album=no&content=before"
    b"&mdv=v1pover://***@***//?priority=normal&sound=discord://***/***/?tts=no&avatar=yes"
    b"&footer=no&footer_logo=yes&image=no&fields=yes&batch=yes&method=sms"
    b'"kind":"email","redacted":"mailtos://***@gmail.com/?'
    b"&cto=15.0&smtp=s***om&mode=starttls&from=***@"
    b'"paused":true,"transition_mode":true,"resume_at":"2026-'
    b'"quiet_hours":{"start":"22:00:00","end":"07:00:00"}'
    b'"couple_id":"cpl_","kind":"evening_checkin","title":"Evening check-in",'
    b'"schedule":{"rrule":"FREQ=WEEKLY;BYDAY=SU;BYHOUR=19;BYMINUTE=0",'
    b'"timezone":"America/New_York","start":"2026-11-28T00:00:00"},'
    b'{"name":"","partners":[{"id":"prt_","name":"","timezone":"Europe/Berlin",'
    b'"channels":[{"id":"chn_","kind":"push","redacted":"json://***?method=POST'
    b'&overflow=upstream&retry=0&wait=0.5&optional=no"}]}],"created_at":"2026-11-28T21:00:00.'
)


def encode(record: BaseModel) -> str:
    """The stored form of ``record`` (layout 1): read back by :func:`decode` with its id,
    equal to ``record``."""
    plain = record.model_dump_json(exclude_defaults=True, exclude={"id"}).encode()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=_ZDICT)
    packed = deflate.compress(plain) + deflate.flush()
    return _LAYOUT + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def decode(model: type[M], record_id: str, stored: str) -> M:
    """The record stored under ``record_id`` as ``stored`` (either layout)."""
    if stored.startswith("{"):  # layout 0: JSON with its id
        return model.model_validate_json(stored)
    if not stored.startswith(_LAYOUT):
        raise ValueError(f"record {record_id!r} has an unknown layout {stored[:1]!r}")
    body = stored[1:]
    packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    inflate = zlib.decompressobj(-15, zdict=_ZDICT)
    plain = inflate.decompress(packed) + inflate.flush()
    # the JSON object without its id is never empty (every record has required fields)
    with_id = b'{"id":' + json.dumps(record_id).encode() + b"," + plain[1:]
    return model.model_validate_json(with_id)
