"""The whole-suite log scan can fail: a planted secret, token or unmasked e-mail is found, the
session's exit status says so, and the report never repeats the secret it found."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reliability.logscan import LogScanner, sandbox_secrets

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEiLCJhdWQiOiJwYyJ9.c2lnbmF0dXJlLWJ5dGVz"
PLANTED = "planted-client-secret-4f1c"  # registered by the inner session's conftest


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (f'{{"event": "token_refreshed", "url": "https://x/?t={JWT}"}}', "JWT"),
        (f"auth failed for {PLANTED}", "registered secret (planted)"),
        ("headers={'Authorization': 'Bearer abcdefghijklmnopqrstuvwxyz0123'}", "bearer token"),
        ("-----BEGIN RSA PRIVATE KEY-----", "private key"),
        ("refresh with 0.sbx.AbCdEfGhIjKlMnOpQrStUvWxYz0123", "Entra refresh token"),
        ("sid 00D000000000001!AQabcdefghijklmnopqrstuvwxyz", "Salesforce session id"),
        ("password: Hunter2Hunter2", "secret assignment"),
        ("state: postgresql+psycopg://sync:s3cr3t@db:5432/rs", "password in a URL"),
        ('{"event": "contact_created", "email": "ada.ng@contoso.example"}', "unmasked e-mail"),
    ],
)
def test_the_scanner_flags_each_kind_of_leak(line, kind):
    scanner = LogScanner()
    scanner.register(PLANTED, "planted")

    [finding] = scanner.scan(line, "t", log_lines=True)

    assert finding.kind == kind
    assert PLANTED not in finding.excerpt
    assert JWT not in finding.excerpt


@pytest.mark.parametrize(
    ("line", "log_lines"),
    [
        ('{"event": "contact_created", "email": "a***@contoso.example"}', True),
        ('{"event": "x", "access_token": "[redacted]", "password": "[redacted]"}', True),
        ("client_secret_env = REFERRAL_SYNC_SECRET", True),
        ("#3 inbound 9f1c (open): customerProfile.team[0].email: ada@contoso.example", False),
        ("fingerprint 0f8fad5bd9cb469fa16570867728950e", True),
        ("state: postgresql+psycopg://sync:***@db:5432/rs", True),
    ],
)
def test_masked_redacted_and_printed_values_are_not_findings(line, log_lines):
    assert LogScanner().scan(line, "t", log_lines=log_lines) == []


def test_every_credential_of_a_started_sandbox_is_registered(sandbox):
    secrets = dict(sandbox_secrets(sandbox.info))
    entra = sandbox.info["entra"]

    assert entra["partner_center"]["client_secret"] in secrets
    assert entra["partner_center"]["password"] in secrets
    assert entra["dataverse"]["client_secret"] in secrets
    assert sandbox.info["salesforce"]["client_secret"] in secrets
    key_lines = [v for v, label in secrets.items() if label.endswith("private_key_path")]
    assert len(key_lines) >= 10, "the Salesforce signing key's base64 lines"


INNER_CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from reliability.logscan import LogScanPlugin

def pytest_configure(config):
    plugin = LogScanPlugin()
    plugin.scanner.register({PLANTED!r}, "planted")
    config.pluginmanager.register(plugin, "logscan")
"""

INNER_TESTS = f"""
import logging, subprocess, sys
import structlog
from connector.observe.logging import processors

def log():
    structlog.configure(processors=processors(),
                        logger_factory=lambda *a: structlog.PrintLogger(sys.stderr))
    return structlog.get_logger()

def test_a_token_printed_where_the_redactor_does_not_know():
    print("callback https://login.example/cb?code={JWT}", file=sys.stderr)

def test_a_registered_secret_in_an_exception_message():
    log().warning("auth_failed", error="invalid client {PLANTED}")

def test_an_email_through_the_stdlib_which_is_not_redacted():
    logging.getLogger("somewhere").warning("contact ada.ng@contoso.example refused")

def test_a_subprocess_that_logs_a_token_on_stderr():
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('{JWT}')"], check=True,
                   capture_output=True)

def test_the_redactor_at_work_is_clean():
    log().info("signed_in", access_token="{JWT}", user="ada.ng@contoso.example")
"""


def run_inner(tmp_path: Path, tests: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(INNER_CONFTEST), encoding="utf-8")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(tests), encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return subprocess.run(  # noqa: S603 - our own interpreter and a file we wrote
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_session_that_logs_secrets_fails_with_a_report_that_does_not_repeat_them(tmp_path):
    result = run_inner(tmp_path, INNER_TESTS)

    report = result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, report
    assert "5 passed" in report  # every test passed: the scan alone failed the session
    assert "log scan: secrets or customer e-mails in the logs" in report
    assert "redactor_does_not_know [Captured stderr call]: JWT" in report
    assert "registered secret (planted)" in report
    assert "[Captured log call]: unmasked e-mail" in report
    assert "[subprocess -c import sys; sys.stderr.write" in report
    assert "test_the_redactor_at_work_is_clean" not in report
    assert "4 finding(s)" in report
    assert JWT not in report
    assert PLANTED not in report
    assert "ada.ng@contoso.example" not in report


def test_a_clean_session_passes_and_says_how_much_it_read(tmp_path):
    preamble = INNER_TESTS.split("def test_a_token", maxsplit=1)[0]
    clean = preamble + (
        "def test_clean():\n"
        '    log().info("signed_in", access_token="x", user="ada@contoso.example")\n'
    )

    result = run_inner(tmp_path, clean)

    assert result.returncode == 0, result.stdout
    assert "log scan: 1 lines, no secret and no unmasked e-mail" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("referral 00000000-0000-4000-8000-000000000149", None),  # a GUID, not a phone
        ("crm_id 006000000000000301", None),  # 18 digits: longer than any phone number
        ("call +1 425 555 0100 re 9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f", "call ***0100 re "),
    ],
)
def test_the_production_redactor_masks_phones_but_keeps_ids_readable(text, expected):
    from connector.observe.logging import mask_contacts  # noqa: PLC0415

    masked = mask_contacts(text)

    assert masked == text if expected is None else masked.startswith(expected)
