import subprocess
import sys

import pytest
from apprise import Apprise
from apprise.logger import NotifyLogEntry
from apprise.result import AppriseResult, AppriseResultStatus, NotifyAttempt, NotifyResult

from services.notifier.channels import (
    Channels,
    Outcome,
    SendResult,
    _notify_in_thread,
    _scrub,
    _senders,
    classify,
)
from tandem.notifier_harness import HttpSink

S = AppriseResultStatus


def result(
    overall: AppriseResultStatus, *services: tuple[AppriseResultStatus, float]
) -> AppriseResult:
    return AppriseResult(
        status=overall,
        results=[
            NotifyResult(
                name="JSON",
                url="json://***",
                attempts=[
                    NotifyAttempt(
                        status=st,
                        elapsed=elapsed,
                        logs=[NotifyLogEntry("WARNING", f"boom {st.name}")],
                    )
                ],
            )
            for st, elapsed in services
        ],
    )


def test_success_is_delivered() -> None:
    assert classify(result(S.SUCCESS, (S.SUCCESS, 0.01))).ok


def test_failure_is_a_definite_failure() -> None:
    r = classify(result(S.FAILURE, (S.FAILURE, 0.01)), read_timeout=2.0)
    assert r.outcome is Outcome.FAILED and "boom FAILURE" in r.error


def test_timeout_is_unknown_not_success() -> None:
    r = classify(result(S.TIMEOUT, (S.TIMEOUT, 3.0)))
    assert r.outcome is Outcome.UNKNOWN and not r.ok


def test_failure_after_the_read_timeout_is_unknown() -> None:
    # Apprise plugins report a socket read timeout as FAILURE; the request was sent.
    r = classify(result(S.FAILURE, (S.FAILURE, 2.0)), read_timeout=2.0)
    assert r.outcome is Outcome.UNKNOWN


def test_partial_is_not_success() -> None:
    r = classify(result(S.PARTIAL, (S.SUCCESS, 0.01), (S.FAILURE, 0.01)))
    assert r.outcome is Outcome.FAILED and r.error.startswith("partial")


def test_nomatch_is_failure() -> None:
    assert classify(AppriseResult(status=S.NOMATCH)).outcome is Outcome.FAILED


def test_success_with_a_failed_service_is_not_trusted() -> None:
    assert not classify(result(S.SUCCESS, (S.FAILURE, 0.01))).ok


def test_scrub_removes_url_secrets() -> None:
    url = "twilio://ACsid:tok3n@+15551234567/+15557654321?apikey=s3cr3t"
    error = "Failed to send to +15557654321 with ACsid:tok3n (key s3cr3t)"
    scrubbed = _scrub(SendResult(Outcome.FAILED, error), url).error
    for secret in ("+15557654321", "tok3n", "s3cr3t"):
        assert secret not in scrubbed


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1:8090/sam?format=markdown",
        "ntfy://user:pass@127.0.0.1:8090/sam?priority=high",
        "ntfys://ntfy.example.com/a-topic/#with-hash",
        "mailto://127.0.0.1:2525?to=bob@example.com&from=t@example.com&mode=insecure",
        "https://discord.com/api/webhooks/4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
    ],
)
def test_a_channel_loads_as_apprise_instantiate_loads_it(url: str) -> None:
    """The notifier's own loading (plugin parser and constructor, without Apprise's eager
    log lines) gives the very service ``Apprise.instantiate`` gives, native URLs too."""
    channels = Channels(connect_timeout=1, read_timeout=2)
    ours = channels._instantiate(url, None)
    theirs = Apprise.instantiate(url, asset=channels.asset)
    assert ours is not None and isinstance(theirs, type(ours))
    # ... then given the deployment's socket timeouts (and no throttle), as ours was.
    theirs.socket_connect_timeout = ours.socket_connect_timeout
    theirs.socket_read_timeout = ours.socket_read_timeout
    assert ours.url(privacy=False) == theirs.url(privacy=False)


@pytest.mark.parametrize("url", ["nope://x", "json://", "not a url", "ntfy:/x"])
def test_a_bad_channel_does_not_load(url: str) -> None:
    assert Channels(connect_timeout=1, read_timeout=2)._instantiate(url, None) is None


def test_a_send_thread_keeps_no_service_after_its_send() -> None:
    """The send thread's reused ``Apprise`` object holds a service (and its secrets) only
    while sending to it, and sends to each service it is given."""
    sink = HttpSink().start()
    try:
        channels = Channels(connect_timeout=1, read_timeout=2)
        for topic in ("one", "two"):
            service = channels._instantiate(sink.ntfy_url(topic), None)
            assert service is not None
            result = _notify_in_thread(service, "Hug", "Hug time")
            assert isinstance(result, AppriseResult) and classify(result).ok
            assert len(_senders.apprise) == 0
    finally:
        sink.stop()
    assert sink.paths == ["one", "two"]


def test_a_notifier_loads_apprises_plugin_table_before_its_first_send() -> None:
    # In a process of its own: any earlier test here may have loaded the table already.
    script = (
        "from services.notifier.channels import _PLUGINS\n"
        "from services.notifier.worker import build\n"
        "from shared.settings import Settings\n"
        "from cryptography.fernet import Fernet\n"
        "assert not _PLUGINS, 'loaded by the import alone'\n"
        "build(Settings(secret_key=Fernet.generate_key().decode()))\n"
        "assert _PLUGINS and 'json' in _PLUGINS._schema_map\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
