"""The Partner Center classifier, read as a table: status or exception → error → retried?"""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
import requests

from connector.errors import (
    AuthError,
    PermanentError,
    PreconditionFailed,
    RateLimited,
    RecordRejected,
    TransientError,
)
from connector.partner_center.client import (
    Action,
    classify_exception,
    classify_status,
    error_for_exception,
    error_for_response,
)

DATA = Path(__file__).parents[1] / "data" / "partner_center" / "responses"
ENVELOPE = (DATA / "error_general.json").read_bytes()


def response(status: int, content: bytes = ENVELOPE, **headers: str) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made._content = content  # building a response by hand is requests' own test idiom
    made.headers.update(headers)
    made.reason = "Reason"
    return made


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (201, None),
        (204, None),
        (400, RecordRejected),
        (401, AuthError),
        (403, AuthError),
        (404, RecordRejected),
        (405, PermanentError),
        (409, RecordRejected),
        (410, RecordRejected),
        (412, PreconditionFailed),
        (413, RecordRejected),
        (415, PermanentError),
        (422, RecordRejected),
        (429, RateLimited),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (302, PermanentError),
        (418, PermanentError),
        (501, PermanentError),
        (507, PermanentError),
    ],
)
def test_status_maps_to_exactly_this_error(status, expected):
    error = error_for_response(response(status))
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        *[(400, False), (401, False), (403, False), (404, False), (412, False), (422, False)],
        *[(429, True), (500, True), (502, True), (503, True), (504, True), (501, False)],
    ],
)
def test_only_transient_statuses_are_retried(status, retried):
    assert isinstance(error_for_response(response(status)), TransientError) is retried


def test_401_is_the_one_status_that_refreshes_the_token():
    assert [s for s in range(100, 600) if classify_status(s) is Action.REAUTH] == [401]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.exceptions.ConnectionError("reset"), TransientError),
        (requests.exceptions.ConnectTimeout("connect"), TransientError),
        (requests.exceptions.ReadTimeout("read"), TransientError),
        (requests.exceptions.ChunkedEncodingError("cut"), TransientError),
        (requests.exceptions.SSLError("certificate verify failed"), PermanentError),
        (requests.exceptions.InvalidSchema("refusing plain http"), PermanentError),
        (requests.exceptions.InvalidURL("bad"), PermanentError),
        (ValueError("anything else"), PermanentError),
    ],
)
def test_exception_maps_to_exactly_this_error(exc, expected):
    assert type(error_for_exception(exc)) is expected


def test_ssl_error_is_not_retried_although_it_is_a_connection_error():
    untrusted = requests.exceptions.SSLError(ssl.SSLCertVerificationError(1, "untrusted"))
    assert classify_exception(untrusted) is Action.FAIL
    cut = requests.exceptions.SSLError("EOF occurred in violation of protocol")
    assert classify_exception(cut) is Action.RETRY


def test_error_carries_the_servers_code_and_message():
    content = (DATA / "error_invalid_transition.json").read_bytes()
    error = error_for_response(response(400, content))

    assert isinstance(error, RecordRejected)
    assert error.code == "invalidRequest"
    assert error.status == 400
    assert str(error) == (
        "Partner Center answered 400 invalidRequest: "
        "Referral status cannot be changed from Closed to Active."
    )


def test_error_without_json_body_uses_the_reason_phrase():
    error = error_for_response(response(404, b"<html>not here</html>"))

    assert isinstance(error, RecordRejected)
    assert error.code is None
    assert str(error) == "Partner Center answered 404: Reason"


def test_server_message_is_bounded():
    huge = json.dumps({"error": {"code": "invalidRequest", "message": "x" * 5000}}).encode()
    assert len(str(error_for_response(response(400, huge)))) < 1100


@pytest.mark.parametrize(
    ("headers", "content", "retry_after"),
    [
        ({"Retry-After": "2"}, b"{}", 2.0),
        ({"Retry-After": "1.5"}, b"{}", 1.5),
        (
            {
                "Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT",
                "Date": "Wed, 21 Oct 2026 07:28:00 GMT",
            },
            b"{}",
            30.0,
        ),
        ({}, (DATA / "throttled.json").read_bytes(), 57.0),
        ({"Retry-After": "3"}, (DATA / "throttled.json").read_bytes(), 3.0),
        ({}, b"{}", None),
    ],
)
def test_429_reads_retry_after_from_header_first_then_the_throttling_body(
    headers, content, retry_after
):
    error = error_for_response(response(429, content, **headers))

    assert isinstance(error, RateLimited)
    assert error.retry_after == retry_after


def test_503_with_retry_after_carries_it_and_without_has_none():
    with_header = error_for_response(response(503, **{"Retry-After": "7"}))
    without = error_for_response(response(503))

    assert isinstance(with_header, TransientError)
    assert with_header.retry_after == 7
    assert isinstance(without, TransientError)
    assert without.retry_after is None
