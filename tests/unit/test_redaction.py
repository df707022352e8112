import io
import json
import logging
from collections.abc import Iterator

import apprise
import pytest

from shared.logs import RedactingFilter, setup_logging
from shared.redaction import KnownSecrets, known, mask, mask_shapes, public_url, redact
from shared.settings import Settings


def test_phone_numbers_and_addresses_are_masked() -> None:
    service = apprise.Apprise.instantiate("signal://127.0.0.1:8080/+15551230001/+15551230002")
    assert service is not None
    shown = redact(service)
    assert "5551230001" not in shown and "5551230002" not in shown
    assert shown.startswith("signal://127.0.0.1:8080/***01/***02")
    mail = apprise.Apprise.instantiate(
        "mailto://user:hunter2@mail.example.com?to=alex.doe@example.com&from=t@example.com"
    )
    assert mail is not None
    shown = redact(mail)
    assert "hunter2" not in shown and "alex.doe" not in shown and "example.com" in shown
    assert "user" not in shown and "a***@example.com" in shown


def test_mask_keeps_what_identifies_nothing() -> None:
    assert mask("json://127.0.0.1:9000/hook") == "json://127.0.0.1:9000/hook"
    assert mask("call +49 151 2345 6789 now") == "call ***89 now"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("json://hooks.example/T0K3N/secret-path", "json://hooks.example/***/s***th"),
        ("ntfy://ntfy.sh/private-topic?priority=high", "ntfy://ntfy.sh/p***ic?priority=high"),
        (
            "mailto://127.0.0.1:2525?to=bob.smith%40example.com&mode=insecure",
            "mailto://127.0.0.1:2525?to=b***@example.com&mode=insecure",
        ),
        (
            "signal://127.0.0.1:8080/+15550000000/%2B15551110001",
            "signal://127.0.0.1:8080/***00/***01",
        ),
        (
            "json://u:hunter2@hooks.example/x?token=abcdef0123456789",
            "json://***@hooks.example/***?token=a***89",
        ),
        ("tgram://123456789:AAbottoken/-100123", "tgram://***"),
        ("discord://123456789012/ABCsecretTOKEN", "discord://***12/A***EN"),
        (
            "json://hooks.example?retry=0&wait=0.5&cto=15.0",
            "json://hooks.example?retry=0&wait=0.5&cto=15.0",
        ),
        (
            "json://hooks.example/h?+X-Token=Zq3x9kP0aB7cD1eF&-ignored=1&:field=x%2By",
            "json://hooks.example/***?+X-Token=Z***eF&-ignored=1&:field=***",
        ),
        ("not a url", "***"),
    ],
)
def test_public_url_keeps_scheme_and_host_and_masks_the_rest(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_redact_masks_path_secrets_after_apprise() -> None:
    for url, secrets in [
        ("json://hooks.example/T0K3N/secret-path", ("T0K3N", "secret-path")),
        ("https://discord.com/api/webhooks/1234567/ABCsecretXYZ", ("1234567", "ABCsecretXYZ")),
        ("ntfy://ntfy.sh/private-topic", ("private-topic",)),
    ]:
        service = apprise.Apprise.instantiate(url)
        assert service is not None
        shown = redact(service)
        assert not [s for s in secrets if s in shown], shown
        assert shown.split("://")[0] == service.url().split("://")[0]


# Lines as the suite's services print them: none of them holds anything private.
HARMLESS = [
    "05:08:52 scheduler INFO fired rit_01JD8XQ3@20261122T200000Z for cpl_7Hq2 (2 partners)",
    "05:08:53 notifier INFO delivered rit_01JD8XQ3@20261122T200000Z to prt_9x via channel "
    "chn_Ab3 (push), attempt 1, 1234567 ms after schedule",
    "holding nudge rit_ab@20261122T200000Z for prt_a,prt_b until 2026-11-23T07:00:00+00:00",
    '{"ts": "2026-11-28T05:08:52.123456+00:00", "level": "info", "offset": 10234567, '
    '"occurrence_id": "rit_x@20261122T200000Z", "latency_ms": 12345678.5}',
    "scheduler: HTTP on http://127.0.0.1:18080 (/healthz /readyz /metrics)",
    "Heartbeat failed for group tandem-notifier, generation 1234567; partition 3 at 1732770000",
    "2026-11-22 20:00:00,123 took 0:00:01.234567",
]


@pytest.mark.parametrize("line", HARMLESS)
def test_shape_masking_leaves_ids_timestamps_and_numbers_alone(line: str) -> None:
    assert mask_shapes(line) == line


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("Sent Email to sam.doe@example.com", "Sent Email to s***@example.com"),
        ("Sent Signal notification to +15551110001.", "Sent Signal notification to ***01."),
        ("recipient %2B15551110001 refused", "recipient ***01 refused"),
        ("SMS to 15551110001 queued", "SMS to ***01 queued"),
        ("POST http://h:9/v2/send/15551110001 ok", "POST http://h:9/v2/send/***01 ok"),
        ("mailto://h?to=bob%40example.org", "mailto://h?to=b***%40example.org"),
    ],
)
def test_shape_masking_finds_numbers_and_addresses_in_free_text(line: str, shown: str) -> None:
    assert mask_shapes(line) == shown


def test_known_secrets_are_masked_by_value_and_bounded() -> None:
    secrets = KnownSecrets(limit=3)
    secrets.remember("ntfy://ntfy.sh/private-topic")
    assert secrets.mask("Sent ntfy notification to 'https://ntfy.sh/private-topic'.") == (
        "Sent ntfy notification to 'https://ntfy.sh/p***ic'."
    )
    assert secrets.mask("ntfy.sh is a host, not a secret") == "ntfy.sh is a host, not a secret"
    secrets.remember("json://h.example/aaaaa1/bbbbb2/ccccc3/ddddd4")
    assert len(secrets._pieces) == 3 and "private-topic" not in secrets._pieces
    secrets.remember("json://h.example/POST/ab")  # short pieces are not kept
    assert "ab" not in secrets._pieces
    # a piece pushed out is no longer masked; the ones kept still are
    assert secrets.mask("to /private-topic and /ddddd4") == "to /private-topic and /***"


def test_the_longest_piece_at_the_leftmost_position_is_masked() -> None:
    secrets = KnownSecrets()
    secrets.remember("ntfy://h.example/abcdefgh/abcdef/xyzabcdefgh")
    # "abcdefgh" over its prefix "abcdef"; "xyzabcdefgh" starts further left than the
    # "abcdefgh" inside it; a piece is found anywhere in a word, as a URL quotes it
    line = "abcdefgh abcdefg xyzabcdefgh zzabcdefzz"
    assert secrets.mask(line) == "a***gh ***g x***gh zz***zz"
    assert secrets.mask("abcd") == "abcd"  # shorter than any piece


LIBRARIES = ("apprise", "uvicorn.error", "faststream", "tandem.x")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger as it was, afterwards; meanwhile the loggers the test writes to
    propagate to it (another test may have configured uvicorn's or FastStream's)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    loggers = [logging.getLogger(name) for name in LIBRARIES]
    state = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.handlers[:], lg.propagate, lg.level = [], True, logging.NOTSET
    yield
    for lg, (handlers, propagate, level) in zip(loggers, state, strict=True):
        lg.handlers[:], lg.propagate, lg.level = handlers, propagate, level
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    known.forget_all()


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_every_record_is_masked_by_the_root_handler(
    fmt: str, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    own = logging.getLogger("some.library")  # a library logger with a handler of its own
    own.propagate = False
    stream = io.StringIO()
    own.handlers[:] = [logging.StreamHandler(stream)]
    setup_logging(Settings(log_format=fmt), service="notifier")
    known.remember("ntfy://ntfy.sh/private-topic?token=tk_0123456789abcdef")
    apprise_log = logging.getLogger("apprise")
    apprise_log.info("Sent ntfy notification to 'https://ntfy.sh/private-topic'.")
    apprise_log.info("Sent Email to %s", "sam.doe@example.com")
    logging.getLogger("uvicorn.error").warning("client +15551110001 said %r", "hi")
    logging.getLogger("tandem.x").info(
        "fired %s", "rit_a@20261122T200000Z", extra={"to": ["bob@example.org"], "n": 3}
    )
    try:
        raise RuntimeError("token tk_0123456789abcdef rejected for +15551110002")
    except RuntimeError:
        logging.getLogger("faststream").exception("handler failed")
    own.info("library says %s", "+15551110003")
    out = capsys.readouterr().err + stream.getvalue()
    for private in (
        "private-topic",
        "sam.doe",
        "5551110001",
        "bob@",
        "tk_0123456789abcdef",
        "5551110002",
        "5551110003",
    ):
        assert private not in out, (private, out)
    assert "rit_a@20261122T200000Z" in out and "RuntimeError" in out
    if fmt == "json":
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        fired = next(e for e in lines if e["msg"].startswith("fired"))
        assert fired["to"] == ["b***@example.org"] and fired["n"] == 3


def test_the_filter_masks_a_record_once() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "to %s", ("+15551110001",), None)
    redacting = RedactingFilter()
    assert redacting.filter(record) and redacting.filter(record)
    assert record.getMessage() == "to ***01"
