"""The Salesforce classifier, read as a table: what simple-salesforce raises → our error."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import requests
from simple_salesforce.util import exception_handler

from connector.crm.salesforce.client import (
    DEFAULT_QUOTA_WAIT_S,
    Action,
    classify,
    error_for,
)
from connector.errors import (
    AuthError,
    PermanentError,
    RateLimited,
    RecordRejected,
    TransientError,
)

DATA = Path(__file__).parents[1] / "data" / "salesforce"
LIMIT = "REQUEST_LIMIT_EXCEEDED"


def raised(status: int, body: str | bytes) -> BaseException:
    """What simple-salesforce raises for this response (its own exception_handler)."""
    response = requests.Response()
    response.status_code = status
    response._content = (DATA / body).read_bytes() if isinstance(body, str) else body
    response.url = "https://org.example/services/data/v62.0/query/?q=SELECT+Email+FROM+Contact"
    try:
        exception_handler(response, name="query")
    except Exception as exc:  # noqa: BLE001 - capturing what the library raises is the point
        return exc
    raise AssertionError("exception_handler always raises")


@pytest.mark.parametrize(
    ("status", "body", "action", "error", "code"),
    [
        (
            300,
            "error_duplicate_external_id.json",
            Action.REJECT,
            RecordRejected,
            "MULTIPLE_CHOICES",
        ),
        (400, "error_required_field.json", Action.REJECT, RecordRejected, "REQUIRED_FIELD_MISSING"),
        (400, "error_malformed_query.json", Action.FAIL, PermanentError, "MALFORMED_QUERY"),
        (400, "error_invalid_field.json", Action.FAIL, PermanentError, "INVALID_FIELD"),
        (401, "error_invalid_session.json", Action.REAUTH, AuthError, "INVALID_SESSION_ID"),
        (403, "error_request_limit.json", Action.QUOTA, RateLimited, LIMIT),
        (403, "error_concurrent_limit.json", Action.RATE_LIMITED, RateLimited, LIMIT),
        (429, "error_request_limit.json", Action.RATE_LIMITED, RateLimited, LIMIT),
        (403, "error_insufficient_access.json", Action.DENY, AuthError, "INSUFFICIENT_ACCESS"),
        (404, "error_not_found.json", Action.REJECT, RecordRejected, "NOT_FOUND"),
        (500, "error_unknown_exception.json", Action.RETRY, TransientError, "UNKNOWN_EXCEPTION"),
        (503, "error_server_unavailable.json", Action.RETRY, TransientError, "SERVER_UNAVAILABLE"),
        (502, b"<html>Bad Gateway</html>", Action.RETRY, TransientError, None),
        (405, b"[]", Action.FAIL, PermanentError, None),
        (418, b"teapot", Action.FAIL, PermanentError, None),
    ],
)
def test_simple_salesforce_errors_map_to_our_tree(status, body, action, error, code):
    exc = raised(status, body)
    assert classify(exc)[0] is action
    ours = error_for(exc)
    assert type(ours) is error
    if isinstance(ours, PermanentError):
        assert (ours.status, ours.code) == (status, code)
    if code is not None:
        assert code in str(ours)


@pytest.mark.parametrize(
    ("exc", "action", "error"),
    [
        (requests.exceptions.ConnectionError("reset"), Action.RETRY, TransientError),
        (requests.exceptions.ConnectTimeout("slow"), Action.RETRY, TransientError),
        (requests.exceptions.ReadTimeout("slow"), Action.RETRY, TransientError),
        (requests.exceptions.ChunkedEncodingError("cut"), Action.RETRY, TransientError),
        (
            requests.exceptions.SSLError(ssl.SSLCertVerificationError(1, "untrusted")),
            Action.FAIL,
            PermanentError,
        ),
        (ValueError("anything else"), Action.FAIL, PermanentError),
    ],
)
def test_transport_errors_map_to_our_tree(exc, action, error):
    assert classify(exc)[0] is action
    assert type(error_for(exc)) is error


def test_spent_org_quota_waits_long_instead_of_hammering():
    ours = error_for(raised(403, "error_request_limit.json"))
    assert isinstance(ours, RateLimited)
    assert ours.retry_after == DEFAULT_QUOTA_WAIT_S
    assert "quota" in str(ours)
    configured = error_for(raised(403, "error_request_limit.json"), quota_wait_s=3600)
    assert configured.retry_after == 3600


def test_retry_after_header_is_honoured_when_the_response_had_one():
    ours = error_for(raised(503, "error_server_unavailable.json"), headers={"Retry-After": "7"})
    assert isinstance(ours, TransientError)
    assert ours.retry_after == 7


def test_error_text_never_carries_the_url_with_its_query():
    ours = error_for(raised(400, "error_required_field.json"))
    assert "Email" not in str(ours)
    assert "services/data" not in str(ours)
    assert "LastName" in str(ours)
