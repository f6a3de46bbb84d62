"""make_webhook_handler: the status codes, what reaches on_event, and what is (not) logged."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from connector.webhooks import MAX_BODY_BYTES, WebhookEvent, WebhookRejected, make_webhook_handler

EVENT = WebhookEvent("referral-created", "0f8fad5b-d9cb-469f-a165-70867728950e", datetime.now(UTC))
SECRET_BODY = b'{"EventName":"referral-created","secret":"do-not-log-me"}'


class FakeVerifier:
    """Accepts a body containing ``ok``; rejects anything else with ``bad_signature``."""

    def __init__(self) -> None:
        self.seen: list[tuple[Mapping[str, str], bytes]] = []

    def verify(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        self.seen.append((headers, body))
        if b"ok" not in body:
            raise WebhookRejected("bad_signature")
        return EVENT


def _request(method: str = "POST", body: bytes = b'{"ok": 1}', **headers: str) -> Request:
    builder = EnvironBuilder(
        path="/webhooks/partner-center",
        method=method,
        data=body,
        headers={"Content-Type": "application/json", **headers},
    )
    return Request(builder.get_environ())


@pytest.fixture
def received() -> list[WebhookEvent]:
    return []


@pytest.fixture
def verifier() -> FakeVerifier:
    return FakeVerifier()


@pytest.fixture
def handler(verifier, received):
    return make_webhook_handler(verifier, received.append)


def test_a_verified_event_is_handed_on_and_answered_202(handler, received, verifier):
    response = handler(_request(Authorization="Signature abc"))

    assert response.status_code == 202
    assert received == [EVENT]
    headers, body = verifier.seen[0]
    assert body == b'{"ok": 1}'
    assert headers["Authorization"] == "Signature abc"


def test_a_rejected_event_is_401_with_its_reason_logged_without_the_body(handler, received):
    with capture_logs() as logs:
        response = handler(_request(body=SECRET_BODY))

    assert response.status_code == 401
    assert json.loads(response.get_data()) == {
        "error": "webhook_rejected",
        "reason": "bad_signature",
    }
    assert received == []
    rejected = [entry for entry in logs if entry["event"] == "webhook_rejected"]
    assert [entry["reason"] for entry in rejected] == ["bad_signature"]
    assert "do-not-log-me" not in repr(logs)


def test_a_body_over_64_kib_is_400_and_never_verified(handler, verifier):
    response = handler(_request(body=b"ok" + b" " * MAX_BODY_BYTES))

    assert response.status_code == 400
    assert verifier.seen == []


def test_a_body_over_64_kib_without_a_content_length_is_400_too(handler, verifier):
    request = _request(body=b"ok" + b" " * MAX_BODY_BYTES)
    del request.environ["CONTENT_LENGTH"]
    request.environ["wsgi.input_terminated"] = True  # a chunked request, as a server passes it

    assert handler(request).status_code == 400
    assert verifier.seen == []


def test_a_body_of_exactly_64_kib_is_verified(handler, verifier):
    body = b"ok" + b" " * (MAX_BODY_BYTES - 2)

    assert handler(_request(body=body)).status_code == 202
    assert len(verifier.seen[0][1]) == MAX_BODY_BYTES


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_anything_but_post_is_405(handler, verifier, method):
    response = handler(_request(method=method))

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert verifier.seen == []


def test_a_failing_hand_off_is_503_so_partner_center_tries_again(verifier):
    def full(_event: WebhookEvent) -> None:
        raise RuntimeError("queue full")

    with capture_logs() as logs:
        response = make_webhook_handler(verifier, full)(_request())

    assert response.status_code == 503
    assert [entry["event"] for entry in logs] == ["webhook_handoff_failed"]
