"""The record triage every consumer shares (content's wording): what counts as poison, and
why it says so."""

from __future__ import annotations

import json

from shared.kafka import diagnose as diagnose_for


def diagnose(body: bytes) -> str | None:
    return diagnose_for(body, "content")


def test_malformed_json() -> None:
    assert (diagnose(b"{nope") or "").startswith("malformed JSON")
    assert (diagnose(b"\xff\xfe") or "").startswith("malformed JSON")


def test_unknown_schema_version() -> None:
    reason = diagnose(json.dumps({"schema_version": 2}).encode())
    assert reason == "unknown schema_version 2 (content knows 1)"


def test_not_an_object_and_plain_invalid() -> None:
    assert diagnose(b"[1, 2]") == "expected a JSON object, got list"
    assert diagnose(json.dumps({"schema_version": 1}).encode()) is None  # validation says why
