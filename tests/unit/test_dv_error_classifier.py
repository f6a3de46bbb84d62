"""The Dataverse error classifier, as a table: (status, error code) → what the caller does."""

from __future__ import annotations

import ssl

import pytest
import requests

from connector.crm.dynamics.client import Action, classify, classify_exception, error_for
from connector.errors import (
    AuthError,
    PermanentError,
    RateLimited,
    RecordRejected,
    TransientError,
)


@pytest.mark.parametrize(
    ("status", "code", "action"),
    [
        (400, "0x80044331", Action.REJECT),  # validation: this row is refused
        (400, "0x8004431A", Action.REJECT),  # option value out of range
        (400, "0x80060888", Action.FAIL),  # our OData is wrong for this org: no row to blame
        (400, "0x80044352", Action.FAIL),  # expired delta token: the adapter re-baselines
        (404, "0x80040217", Action.REJECT),
        (412, "0x80040237", Action.REJECT),  # duplicate alternate key value
        (401, "0x8004A101", Action.REAUTH),
        (401, None, Action.REAUTH),
        (403, "0x80040220", Action.DENY),
        (403, None, Action.DENY),
        (429, "0x80072322", Action.RATE_LIMITED),  # service protection: request count
        (429, "0x80072321", Action.RATE_LIMITED),  # execution time
        (429, "0x80072326", Action.RATE_LIMITED),  # concurrency
        (503, "0x80072326", Action.RATE_LIMITED),  # the code wins over the status
        (500, "0x80040216", Action.RETRY),
        (502, None, Action.RETRY),
        (503, None, Action.RETRY),
        (504, None, Action.RETRY),
        (405, None, Action.FAIL),
        (413, None, Action.FAIL),
        (501, None, Action.FAIL),
        (418, None, Action.FAIL),  # unknown: never retried
    ],
)
def test_a_refusal_is_classified_by_code_then_status(status, code, action):
    assert classify(status, code) is action


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        (requests.exceptions.SSLError(ssl.SSLCertVerificationError(1, "untrusted")), Action.FAIL),
        (requests.exceptions.SSLError("EOF occurred in violation of protocol"), Action.RETRY),
        (requests.exceptions.ConnectionError(), Action.RETRY),
        (requests.exceptions.ReadTimeout(), Action.RETRY),
        (requests.exceptions.ChunkedEncodingError(), Action.RETRY),
        (requests.exceptions.InvalidSchema(), Action.FAIL),
    ],
)
def test_a_transport_failure_is_classified(exc, action):
    assert classify_exception(exc) is action


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (429, "0x80072322", RateLimited),
        (503, None, TransientError),
        (401, None, AuthError),
        (403, None, AuthError),
        (400, "0x80044331", RecordRejected),
        (400, "0x80044352", PermanentError),
    ],
)
def test_each_action_raises_its_error(status, code, kind):
    error = error_for(status, {"error": {"code": code or "", "message": "m"}})

    assert type(error) is kind


def test_service_protection_carries_retry_after():
    error = error_for(
        429, {"error": {"code": "0x80072322", "message": "slow down"}}, {"Retry-After": "17"}
    )

    assert isinstance(error, RateLimited)
    assert error.retry_after == 17
    assert "0x80072322" in str(error)


def test_a_rejection_keeps_the_code_and_the_message():
    error = error_for(400, {"error": {"code": "0x80044331", "message": "'name' is missing"}})

    assert isinstance(error, RecordRejected)
    assert (error.status, error.code) == (400, "0x80044331")
    assert "'name' is missing" in str(error)
