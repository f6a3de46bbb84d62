"""Logs never carry secrets, and customer contacts are masked by default."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from connector.observe.logging import REDACTED, Redactor, configure_logging, mask_contacts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jane.doe@contoso.com", "j***@contoso.com"),
        (
            "write to Ana <ana.silva@exemplo.com.br> today",
            "write to Ana <a***@exemplo.com.br> today",
        ),
        ("+1 425 555 0100", "***0100"),
        ("(11) 98765-4321", "***4321"),
        ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00Z"),
        (
            "changed 2026-12-01T23:27:22.4737065+00:00, call +1 425 555 0100",
            "changed 2026-12-01T23:27:22.4737065+00:00, call ***0100",
        ),
        (
            "referral 5f1c2d3e-0000-4000-8000-000000000001",
            "referral 5f1c2d3e-0000-4000-8000-000000000001",
        ),
        ("value 10000", "value 10000"),
    ],
)
def test_contacts_are_masked_and_other_text_is_kept(text, expected):
    assert mask_contacts(text) == expected


@pytest.mark.parametrize(
    "key",
    [
        "access_token",
        "client_secret",
        "password",
        "Authorization",
        "refresh_token",
        "client_assertion",
    ],
)
def test_secret_keys_are_replaced_outright(key):
    event = Redactor()(None, "info", {"event": "x", key: "abc.def.ghi"})
    assert event[key] == REDACTED


def test_nested_values_are_cleaned():
    event = Redactor()(
        None, "info", {"event": "x", "headers": {"Authorization": "Bearer abc"}, "to": ["a@b.com"]}
    )
    assert event["headers"] == {"Authorization": REDACTED}
    assert event["to"] == ["a***@b.com"]


def test_masking_can_be_turned_off_but_secrets_stay_hidden():
    event = Redactor(mask_customer_contacts=False)(None, "info", {"email": "a@b.com", "token": "t"})
    assert event == {"email": "a@b.com", "token": REDACTED}


def test_configured_logger_writes_one_json_object_a_line_without_secrets():
    out = io.StringIO()
    configure_logging(level="info", stream=out)
    try:
        log = structlog.get_logger()
        log.info("token_acquired", access_token="eyJ-secret", contact="jane@contoso.com")
        log.debug("hidden_at_info_level")
    finally:
        structlog.reset_defaults()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "token_acquired"
    assert record["level"] == "info"
    assert record["access_token"] == REDACTED
    assert record["contact"] == "j***@contoso.com"
    assert "eyJ-secret" not in out.getvalue()


def test_standard_library_logs_are_json_lines_through_the_same_redaction():
    import logging  # noqa: PLC0415

    out = io.StringIO()
    configure_logging(level="info", stream=out)
    try:
        logging.getLogger("urllib3.connectionpool").warning(
            "Retrying after %s: header Authorization: Bearer abc.def-ghi for jane@contoso.com",
            "ConnectionResetError",
        )
    finally:
        structlog.reset_defaults()
        logging.basicConfig(force=True)
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["logger"] == "urllib3.connectionpool"
    assert record["level"] == "warning"
    assert "abc.def-ghi" not in line
    assert "jane@contoso.com" not in line
    assert "ConnectionResetError" in record["event"]


def test_a_jwt_or_bearer_token_in_free_text_is_dropped():
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl"
    event = Redactor()(None, "info", {"event": f"sent {jwt}", "detail": "Bearer x-Y_z.1"})
    assert event == {"event": f"sent {REDACTED}", "detail": f"Bearer {REDACTED}"}
