import apprise

from shared.redaction import mask, redact


def test_phone_numbers_and_addresses_are_masked() -> None:
    service = apprise.Apprise.instantiate("signal://127.0.0.1:8080/+15551230001/+15551230002")
    assert service is not None
    shown = redact(service)
    assert "5551230001" not in shown and "5551230002" not in shown
    assert shown.startswith("signal://127.0.0.1:8080/")
    mail = apprise.Apprise.instantiate(
        "mailto://user:hunter2@mail.example.com?to=alex.doe@example.com&from=t@example.com"
    )
    assert mail is not None
    shown = redact(mail)
    assert "hunter2" not in shown and "alex.doe" not in shown and "example.com" in shown


def test_mask_keeps_what_identifies_nothing() -> None:
    assert mask("json://127.0.0.1:9000/hook") == "json://127.0.0.1:9000/hook"
    assert mask("call +49 151 2345 6789 now") == "call ***89 now"
