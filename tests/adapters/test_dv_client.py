"""DynamicsClient and the $batch codec against `responses` (recorded-shape bodies in
tests/data/dynamics/): retries with Retry-After first, one token refresh, per-part answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from fakes import FakeClock

from connector.crm.dynamics import batch
from connector.crm.dynamics.client import DynamicsClient
from connector.errors import (
    AuthError,
    OutcomeUnknown,
    RateLimited,
    RecordRejected,
    TransientError,
)
from connector.http.retry import RetryPolicy
from connector.http.session import build_session

BASE = "https://contoso.crm.dynamics.com/api/data/v9.2"
DATA = Path(__file__).parents[1] / "data" / "dynamics"


def body(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


class Tokens:
    def __init__(self) -> None:
        self.refreshes = 0

    def token(self) -> str:
        return f"token-{self.refreshes}"

    def refresh(self) -> str:
        self.refreshes += 1
        return self.token()


def client(tokens: Tokens | None = None, clock: FakeClock | None = None) -> DynamicsClient:
    clock = clock or FakeClock()
    return DynamicsClient(
        tokens or Tokens(),
        base_url=BASE,
        session=build_session(),
        retry=RetryPolicy(max_attempts=4, max_total_s=120, base_s=1, cap_s=8, jitter=0),
        sleep=clock.sleep,
        clock=clock,
    )


@responses.activate
def test_service_protection_waits_as_long_as_retry_after_says_then_succeeds():
    clock = FakeClock()
    url = f"{BASE}/WhoAmI"
    responses.get(url, json=body("error_429.json"), status=429, headers={"Retry-After": "7"})
    responses.get(url, json={"UserId": "u"})

    assert client(clock=clock).get("whoami", "WhoAmI") == {"UserId": "u"}
    assert clock.sleeps == [7]


@responses.activate
def test_service_protection_longer_than_the_retry_budget_raises_rate_limited_at_once():
    clock = FakeClock()
    responses.get(
        f"{BASE}/WhoAmI", json=body("error_429.json"), status=429, headers={"Retry-After": "300"}
    )

    with pytest.raises(RateLimited) as raised:
        client(clock=clock).get("whoami", "WhoAmI")

    assert raised.value.retry_after == 300
    assert clock.sleeps == []
    assert len(responses.calls) == 1


@responses.activate
def test_a_401_refreshes_the_token_once_and_repeats_the_request():
    tokens = Tokens()
    url = f"{BASE}/WhoAmI"
    responses.get(url, json=body("error_401.json"), status=401)
    responses.get(url, json={"UserId": "u"})

    client(tokens).get("whoami", "WhoAmI")

    assert tokens.refreshes == 1
    assert [c.request.headers["Authorization"] for c in responses.calls] == [
        "Bearer token-0",
        "Bearer token-1",
    ]


@responses.activate
def test_a_token_refused_right_after_its_renewal_is_renewed_again_in_the_next_attempt():
    tokens, clock = Tokens(), FakeClock()
    url = f"{BASE}/WhoAmI"
    responses.get(url, json=body("error_401.json"), status=401)
    responses.get(url, json=body("error_401.json"), status=401)  # the renewed one: revoked too
    responses.get(url, json=body("error_401.json"), status=401)  # still, in the next attempt
    responses.get(url, json={"UserId": "u"})

    assert client(tokens, clock).get("whoami", "WhoAmI") == {"UserId": "u"}

    assert tokens.refreshes == 2
    assert [c.request.headers["Authorization"] for c in responses.calls] == [
        "Bearer token-0",
        "Bearer token-1",
        "Bearer token-1",  # the next attempt starts with the current token...
        "Bearer token-2",  # ...and renews it once more
    ]
    assert clock.sleeps == [1]


@responses.activate
def test_renewed_tokens_refused_in_every_attempt_are_an_auth_error():
    tokens, clock = Tokens(), FakeClock()
    responses.get(f"{BASE}/WhoAmI", json=body("error_401.json"), status=401)

    with pytest.raises(AuthError, match=r"freshly issued token.*every attempt"):
        client(tokens, clock).get("whoami", "WhoAmI")

    assert tokens.refreshes == 4  # one renewal in each of the 4 attempts
    assert len(responses.calls) == 8
    assert clock.sleeps == [1, 2, 4]


@responses.activate
def test_5xx_backs_off_exponentially_then_succeeds():
    clock = FakeClock()
    url = f"{BASE}/WhoAmI"
    responses.get(url, status=503)
    responses.get(url, status=500)
    responses.get(url, json={})

    client(clock=clock).get("whoami", "WhoAmI")

    assert clock.sleeps == [1, 2]


@responses.activate
def test_a_validation_error_is_not_retried():
    responses.get(
        f"{BASE}/accounts",
        json={"error": {"code": "0x80044331", "message": "bad"}},
        status=400,
    )

    with pytest.raises(RecordRejected):
        client().get("query", "accounts")

    assert len(responses.calls) == 1


@responses.activate
def test_a_batch_is_one_post_with_continue_on_error_and_answers_each_part_in_order():
    recorded = (DATA / "batch_upsert_response.txt").read_bytes()
    responses.post(
        f"{BASE}/$batch",
        body=recorded,
        content_type="multipart/mixed; boundary=batchresponse_7d6b0a5c-1e1f-4c3e-9d6b-0a5c1e1f4c3e",
    )
    parts = [batch.Part("PATCH", f"{BASE}/opportunities(k='{n}')", {"name": n}) for n in "abc"]

    answers = client().batch("upsert", parts)

    assert [a.status for a in answers] == [201, 400, 200]
    assert answers[0].body["opportunityid"].endswith("0001")
    assert answers[1].body["error"]["code"] == "0x80044331"
    sent = responses.calls[0].request
    assert sent.headers["Prefer"] == "odata.continue-on-error"
    assert sent.headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")


def test_a_batch_request_encodes_each_part_as_an_http_request():
    content_type, payload = batch.encode(
        [batch.Part("PATCH", f"{BASE}/opportunities(k='a')", {"name": "Zoë"}, {"Prefer": "x"})]
    )

    boundary = content_type.split("boundary=")[1]
    text = payload.decode()
    assert text.startswith(f"--{boundary}\r\nContent-Type: application/http\r\n")
    assert f"PATCH {BASE}/opportunities(k='a') HTTP/1.1\r\n" in text
    assert "Prefer: x\r\n" in text
    assert '{"name": "Zoë"}' in text
    assert text.endswith(f"--{boundary}--\r\n")


def test_a_batch_holds_at_most_a_thousand_requests():
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        batch.encode([batch.Part("GET", f"{BASE}/WhoAmI")] * 1001)


@responses.activate
def test_a_batch_of_patches_is_sent_again_after_a_lost_reply_and_one_holding_a_post_is_not():
    """Upserts by key and create-only ``PATCH`` parts are safe to repeat; a ``POST`` create sent
    again after a lost reply could make a second record, so that batch fails the cycle."""
    responses.post(f"{BASE}/$batch", body=requests.exceptions.ReadTimeout("read timed out"))
    patch = batch.Part(
        "PATCH", f"{BASE}/opportunities(k='a')", {"name": "a"}, {"If-None-Match": "*"}
    )
    post = batch.Part("POST", f"{BASE}/accounts", {"name": "Contoso"})

    with pytest.raises(TransientError):  # retried (4 attempts), then the timeout
        client().batch("upsert", [patch])
    assert len(responses.calls) == 4

    with pytest.raises(OutcomeUnknown, match="not sent again"):
        client().batch("create_accounts", [post])
    assert len(responses.calls) == 4 + 1
