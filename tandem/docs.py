"""Tandem's contracts as documents, generated from the code (``make docs``, ``tandem docs``).

* ``asyncapi.json``: AsyncAPI 3.0 of the Kafka contracts -- every topic each service
  subscribes to and publishes to, with its payload schema -- from the three services' own
  FastStream brokers, as they are built to run: the typed handlers name what they
  receive, the declared publishers (the ones the code publishes through) what they send.
* ``asyncapi.html``: the same, rendered by the AsyncAPI web component (loaded from a CDN).
* ``openapi.json``: the scheduler's HTTP API, from its FastAPI app.

Promises: the documents depend on the code only, never on the ``TANDEM_*`` environment,
and are byte-for-byte the same on every run, so ``docs/`` can be checked against the code
(``tests/unit/test_docs.py``).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from shared.settings import Settings

TITLE = "Tandem"
DESCRIPTION = (
    "Kafka contracts between Tandem's services. Every record is keyed by couple id; "
    "`occurrence_id` is what every consumer deduplicates on; a record a consumer cannot "
    "handle goes to `<topic>.dlq` as a `DeadLetter`."
)


def _settings() -> Settings:
    # model_construct: defaults only, no environment (the documents depend on the code alone).
    return Settings.model_construct(
        kafka_bootstrap="kafka:9092",
        admin_token="docs",
        secret_key="x0z4PZk2cOrm9dCcZzZbZxkl7S_JHQq1zcx4Nqo1nsI=",
    )


def _brokers() -> list[Any]:
    from services.content.decks import Catalog
    from services.content.worker import build as build_content
    from services.notifier.worker import build as build_notifier
    from services.scheduler.service import Scheduler

    settings = _settings()
    return [
        Scheduler(settings).broker,
        build_content(settings, catalog=Catalog({})).broker,
        build_notifier(settings).service.broker,
    ]


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI document of the three services (see the module docstring)."""
    from faststream.specification import AsyncAPI

    spec = AsyncAPI(
        *_brokers(), title=TITLE, version=version("tandem"), description=DESCRIPTION
    ).to_specification()
    doc: dict[str, Any] = spec.to_jsonable()
    # FastStream lists a broker's publishers in no fixed order; sort, so docs/ is stable.
    for section in (doc, doc["components"]):
        for key in ("channels", "operations", "messages", "schemas"):
            if key in section:
                section[key] = dict(sorted(section[key].items()))
    return doc


def openapi() -> dict[str, Any]:
    """The scheduler's OpenAPI document."""
    from services.scheduler.service import Scheduler

    return Scheduler(_settings()).api.openapi()


def html(doc: dict[str, Any]) -> str:
    """A page rendering ``doc`` with the AsyncAPI web component."""
    from faststream.specification import get_asyncapi_html

    return get_asyncapi_html(_Spec(doc), try_it_out_path=None)  # type: ignore[arg-type]


class _Spec:
    """The little of FastStream's ``Specification`` that its HTML page reads."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.title = doc["info"]["title"]

    def to_json(self) -> str:
        return json.dumps(self.doc)


def render() -> dict[str, str]:
    """Every document, by file name, as written to ``docs/``."""
    doc = asyncapi()
    return {
        "asyncapi.json": _dump(doc),
        "asyncapi.html": html(doc),
        "openapi.json": _dump(openapi()),
    }


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write(out: Path) -> list[Path]:
    """Write the documents into ``out`` (created if missing); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
