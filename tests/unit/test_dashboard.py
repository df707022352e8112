"""The Grafana dashboard (deploy/grafana/dashboards) asks only for what Tandem exports: every
metric a PromQL expression names is registered by the services' code, with the labels the
expression uses; its datasource is the one provisioned."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
# Where the services register their metrics (imported so the registry holds them).
METRIC_MODULES = (
    "services.scheduler.metrics",
    "services.notifier.metrics",
    "services.content.metrics",
    "shared.kafka",
    "shared.ops",
)
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS |= {"and", "or", "unless", "bool", "offset"}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def registered() -> dict[str, set[str]]:
    """Every sample name the code registers (``x_total``, ``x_bucket``...) -> its labels."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    found: dict[str, set[str]] = {}
    for name, collector in REGISTRY._names_to_collectors.items():
        labels = set(getattr(collector, "_labelnames", ()))
        found[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    return found


def expressions() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"], target


def parse(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """The metric names of ``expr``, the labels each is matched on, and the labels it
    groups by."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    matched: dict[str, set[str]] = {}
    for name, body in re.findall(rf"({_NAME})\s*\{{([^}}]*)\}}", expr):
        matched.setdefault(name, set()).update(re.findall(rf"({_NAME})\s*[=!]", body))
    grouped: set[str] = set()
    for body in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        grouped |= {label.strip() for label in body.split(",") if label.strip()}
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    names = {n for n in re.findall(rf"(?<![\w.$])({_NAME})\b(?!\s*\()", bare) if n not in KEYWORDS}
    return names, matched, grouped


def test_there_is_a_dashboard_with_expressions() -> None:
    assert DASHBOARDS, "no dashboard under deploy/grafana/dashboards"
    assert len(list(expressions())) >= 10


@pytest.mark.parametrize(
    ("where", "expr", "target"), list(expressions()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_expression_names_only_exported_metrics_and_labels(
    where: str, expr: str, target: dict[str, Any]
) -> None:
    metrics = registered()
    names, matched, grouped = parse(expr)
    assert names, f"{where}: no metric in {expr!r}"
    for name in names:
        assert name in metrics, f"{where}: {name} is not exported by Tandem ({expr})"
    for name, labels in matched.items():
        assert labels <= metrics[name], f"{where}: {name} has no label {labels - metrics[name]}"
    known = set().union(*(metrics[n] for n in names))
    assert grouped <= known, f"{where}: grouped by {grouped - known}, not a label of {names}"
    legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    assert legend <= known | grouped, f"{where}: legend names {legend - known}"


def test_the_parser_finds_names_and_labels() -> None:
    names, matched, grouped = parse(
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="1"}[$__rate_interval]))) + b'
    )
    assert names == {"a_bucket", "b"}
    assert matched == {"a_bucket": {"x"}}
    assert grouped == {"le"}
    assert "tandem_occurrences_fired_total" in registered()


def test_panels_use_the_provisioned_datasource() -> None:
    config = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == source["uid"], panel["title"]
