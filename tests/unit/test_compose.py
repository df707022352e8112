"""docker-compose.yml cannot run here (no Docker engine), so check what a typo would break:
the services, Redis durability, one image, and that every TANDEM_* variable is a setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
TANDEM = ("scheduler", "content", "notifier")
# What each service reads (see shared.settings); the secret key decrypts channel URLs.
NEEDS = {
    "scheduler": {"kafka_bootstrap", "redis_url", "admin_token", "secret_key"},
    "content": {"kafka_bootstrap", "redis_url", "secret_key"},  # signs action links
    "notifier": {"kafka_bootstrap", "redis_url", "secret_key"},
    "topics": {"kafka_bootstrap"},
}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_every_service_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "redis", "topics", *TANDEM} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "broker,controller" in str(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"])


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    command = services["redis"]["command"]
    command = command if isinstance(command, str) else " ".join(command)
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


def test_the_services_share_one_image(services: dict[str, dict[str, Any]]) -> None:
    images = {(services[n].get("image"), str(services[n].get("build"))) for n in TANDEM}
    assert len(images) == 1
    for name in TANDEM:
        assert services[name]["command"][-1] == name
        assert services[name]["restart"] == "unless-stopped"
    assert "/healthz" in str(services["scheduler"]["healthcheck"]["test"])
    assert services["topics"]["command"][:2] == ["tandem", "topics"]


@pytest.mark.parametrize("name", [*TANDEM, "topics"])
def test_tandem_variables_are_settings(services: dict[str, dict[str, Any]], name: str) -> None:
    env = _environment(services[name])
    fields = set(Settings.model_fields)
    for key in env:
        if key.startswith("TANDEM_"):
            assert key.removeprefix("TANDEM_").lower() in fields, f"{name}: {key} is no setting"
    given = {k.removeprefix("TANDEM_").lower() for k in env if k.startswith("TANDEM_")}
    assert NEEDS[name] <= given, f"{name} lacks {NEEDS[name] - given}"
    assert env["TANDEM_KAFKA_IDEMPOTENCE"] == "true"
    for secret in ("TANDEM_ADMIN_TOKEN", "TANDEM_SECRET_KEY"):
        if secret in env:  # taken from the host's environment or .env, never written here
            assert env[secret].startswith(f"${{{secret}:?"), env[secret]


def test_scalable_services_have_no_fixed_name_or_host_port(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("notifier", "content"):
        assert "container_name" not in services[name]
        assert "ports" not in services[name]
    assert services["scheduler"]["ports"] == ["8080:8080"]
    assert _environment(services["scheduler"])["TANDEM_API_HOST"] == "0.0.0.0"


def test_prometheus_scrapes_every_service_where_it_serves_metrics(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus")
    mount = next(
        v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro")
    )
    config = yaml.safe_load((COMPOSE.parent / mount.split(":")[0]).read_text())
    targets = {
        name: sd["port"]
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    # the scheduler serves /metrics on its API; content and notifier on their ops port
    assert targets["scheduler"] == int(_environment(services["scheduler"])["TANDEM_API_PORT"])
    for name in ("content", "notifier"):
        env = _environment(services[name])
        assert env["TANDEM_OPS_HOST"] == "0.0.0.0", name  # reachable from Prometheus
        assert targets[name] == int(env["TANDEM_OPS_PORT"]), name
        assert f":{env['TANDEM_OPS_PORT']}/healthz" in str(services[name]["healthcheck"]["test"])


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert "prometheus" in grafana["depends_on"]
    mounts = {}
    for volume in grafana["volumes"]:
        host, _, inside = volume.partition(":")
        if host.startswith("./"):
            assert (COMPOSE.parent / host).is_dir(), f"{host} does not exist"
            mounts[inside.removesuffix(":ro")] = COMPOSE.parent / host
    provisioning = mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"  # the compose service
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "tandem.yml").read_text())[
        "providers"
    ]
    dashboards = mounts[provider["options"]["path"]]  # the provider reads what is mounted
    assert list(dashboards.glob("*.json")), dashboards
    home = _environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).name).is_file()
    assert home.startswith(provider["options"]["path"] + "/")
