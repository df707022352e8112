"""The ``tandem`` command's answers to good and bad input, without a running stack."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from tandem.cli import app
from tandem.dev import parse_replicas
from tandem.embedded import free_port

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_aiokafka_logging() -> Iterator[None]:
    """The Kafka commands quiet aiokafka's logger for their process; not for the suite's."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture
def unreachable_kafka(monkeypatch: pytest.MonkeyPatch) -> str:
    """TANDEM_KAFKA_BOOTSTRAP pointing at a port where nothing listens."""
    bootstrap = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("TANDEM_KAFKA_BOOTSTRAP", bootstrap)
    return bootstrap


def test_keygen_prints_a_fernet_key() -> None:
    result = runner.invoke(app, ["keygen"])
    assert result.exit_code == 0
    key = result.output.strip()
    token = Fernet(key.encode()).encrypt(b"json://example")
    assert Fernet(key.encode()).decrypt(token) == b"json://example"
    assert runner.invoke(app, ["keygen"]).output.strip() != key


def test_parse_replicas() -> None:
    assert parse_replicas(None) == {"scheduler": 1, "content": 1, "notifier": 1}
    assert parse_replicas(" notifier=3, scheduler=2 ") == {
        "scheduler": 2,
        "content": 1,
        "notifier": 3,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("notifier", "is not SERVICE=COUNT"),
        ("mailer=2", "is not SERVICE=COUNT"),
        ("notifier=0", "whole number >= 1"),
        ("notifier=lots", "whole number >= 1"),
        ("notifier=2,notifier=3", "given twice"),
    ],
)
def test_bad_replicas_spec_is_a_usage_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_replicas(spec)
    result = runner.invoke(app, ["dev", "--replicas", spec])
    assert result.exit_code == 2
    assert "--replicas" in result.output and message.split()[-1] in result.output
    assert "Traceback" not in result.output


def test_unknown_service_and_topic_are_usage_errors() -> None:
    result = runner.invoke(app, ["run", "mailer"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = runner.invoke(app, ["dlq", "list", "no.such.topic"])
    assert result.exit_code == 2
    assert "has no dead-letter topic" in result.output and "nudge.ready" in result.output


@pytest.mark.timeout(60)
def test_dlq_list_with_unreachable_kafka_fails_cleanly(unreachable_kafka: str) -> None:
    result = runner.invoke(app, ["dlq", "list", "nudge.ready", "--timeout", "10"])
    assert result.exit_code == 1, result.output
    assert f"error: cannot read nudge.ready.dlq from Kafka at {unreachable_kafka}" in (
        result.output
    )
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.timeout(60)
def test_dlq_replay_with_unreachable_kafka_fails_cleanly(unreachable_kafka: str) -> None:
    result = runner.invoke(app, ["dlq", "replay", "nudge.ready.dlq", "--offset", "3"])
    assert result.exit_code == 1, result.output
    assert "error: cannot replay nudge.ready.dlq" in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.timeout(60)
def test_topics_with_unreachable_kafka_fails_cleanly(unreachable_kafka: str) -> None:
    result = runner.invoke(app, ["topics", "--wait", "0"])
    assert result.exit_code == 1
    assert f"error: cannot create the topics on {unreachable_kafka}" in result.output
    assert isinstance(result.exception, SystemExit)


def test_invalid_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_TOPIC_PARTITIONS", "many")
    result = runner.invoke(app, ["topics", "--wait", "0"])
    assert result.exit_code == 1
    assert "invalid setting: TANDEM_TOPIC_PARTITIONS" in result.output


def test_rotate_keys_needs_a_key_and_says_when_redis_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TANDEM_SECRET_KEY", raising=False)
    result = runner.invoke(app, ["rotate-keys"])
    assert result.exit_code == 1 and "TANDEM_SECRET_KEY must be set" in result.output
    monkeypatch.setenv("TANDEM_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("TANDEM_OLD_SECRET_KEYS", "not-a-key")
    result = runner.invoke(app, ["rotate-keys"])
    assert result.exit_code == 1 and "TANDEM_OLD_SECRET_KEYS" in result.output
    monkeypatch.delenv("TANDEM_OLD_SECRET_KEYS")
    monkeypatch.setenv("TANDEM_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    result = runner.invoke(app, ["rotate-keys"])
    assert result.exit_code == 1 and "cannot rotate the keys in Redis" in result.output
    assert "hunter2" not in result.output
