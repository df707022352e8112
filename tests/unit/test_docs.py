"""The documents in docs/ are generated from the code (``make docs``): they name every
topic and stay in step with the code."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from shared.kafka import CONTRACTS
from shared.topics import ALL_TOPICS
from tandem import docs

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return docs.render()


def test_asyncapi_names_every_topic_with_its_payload(rendered: dict[str, str]) -> None:
    doc = json.loads(rendered["asyncapi.json"])
    channels = doc["channels"].values()
    assert {c["address"] for c in channels} == set(ALL_TOPICS)
    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    for channel in channels:
        contract = f"#/components/schemas/{CONTRACTS[channel['address']].__name__}"
        for ref in channel["messages"].values():
            payload = messages[unquote(ref["$ref"].rsplit("/", 1)[-1])]["payload"]
            if payload == {"$ref": contract}:
                continue
            # The scheduler's history consumer is one subscriber for four topics (one
            # group join) whose handler takes the union of their contracts.
            union = schemas[payload["$ref"].rsplit("/", 1)[-1]]
            assert {"$ref": contract} in union["anyOf"], (channel["address"], union)
    assert set(schemas) >= {model.__name__ for model in CONTRACTS.values()}
    # each service's side: who publishes and who receives
    actions = {
        (o["action"], o["channel"]["$ref"].split("/")[-1]) for o in doc["operations"].values()
    }
    assert ("send", "ritual.due:scheduler") in actions
    assert ("send", "nudge.ready:content") in actions
    assert ("send", "nudge.delivered:notifier") in actions
    received = {a for act, a in actions if act == "receive"}
    assert {c.split(":")[0] for c in received} >= {"ritual.due", "nudge.ready", "nudge.delivered"}


def test_documents_do_not_depend_on_the_environment(
    rendered: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_KAFKA_BOOTSTRAP", "elsewhere:9093")
    monkeypatch.setenv("TANDEM_API_PORT", "9999")
    assert docs.render() == rendered


@pytest.mark.parametrize("name", ["asyncapi.json", "asyncapi.html", "openapi.json"])
def test_docs_folder_is_up_to_date(rendered: dict[str, str], name: str) -> None:
    path = DOCS / name
    assert path.exists(), f"{path} is missing: run `make docs`"
    assert path.read_text(encoding="utf-8") == rendered[name], f"{path} is stale: run `make docs`"


def test_openapi_has_the_ops_endpoints(rendered: dict[str, str]) -> None:
    paths = json.loads(rendered["openapi.json"])["paths"]
    assert {"/healthz", "/readyz", "/metrics", "/v1/couples"} <= set(paths)
