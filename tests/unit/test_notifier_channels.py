from apprise.logger import NotifyLogEntry
from apprise.result import AppriseResult, AppriseResultStatus, NotifyAttempt, NotifyResult

from services.notifier.channels import Outcome, SendResult, _scrub, classify

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
