"""SalesforceAuth and SalesforceClient against `responses`, with recorded-shape bodies."""

from __future__ import annotations

import base64
import json
import random
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fakes import FakeClock
from structlog.testing import capture_logs

from connector.crm.salesforce.auth import JWT_GRANT, SalesforceAuth
from connector.crm.salesforce.client import SalesforceClient
from connector.errors import (
    AuthError,
    ConfigError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    TransientError,
)
from connector.http.retry import RetryPolicy
from connector.http.session import build_session

INSTANCE = "https://contoso.my.sf.test"
API = f"{INSTANCE}/services/data/v62.0"
TOKEN_URL = "https://login.sf.test/services/oauth2/token"
SECRET = "cs-very-secret"
DATA = Path(__file__).parents[1] / "data" / "salesforce"
TOKEN = json.loads((DATA / "token.json").read_text())["access_token"]
UPSERT_URL = f"{API}/composite/sobjects/Opportunity/Partner_Center_Referral_Id__c"


def body(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def token_reply(n: int) -> dict[str, Any]:
    return {**body("token.json"), "access_token": f"{TOKEN}-{n}"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mocked():
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_auth(**overrides: Any) -> SalesforceAuth:
    options: dict[str, Any] = {
        "token_url": TOKEN_URL,
        "client_id": "3MVG9-consumer-key",
        "session": build_session(),
        "client_secret": SECRET,
    }
    options.update(overrides)
    return SalesforceAuth(**options)


def make_client(auth: SalesforceAuth, clock: FakeClock, **overrides: Any) -> SalesforceClient:
    options: dict[str, Any] = {
        "instance_url": INSTANCE,
        "api_version": "62.0",
        "session": build_session(),
        "retry": RetryPolicy(max_attempts=4, max_total_s=120, base_s=1, cap_s=8, jitter=0),
        "sleep": clock.sleep,
        "clock": clock,
        "rng": random.Random(3),
    }
    options.update(overrides)
    return SalesforceClient(auth, **options)


def tokens_issued(mocked: responses.RequestsMock) -> int:
    return sum(1 for call in mocked.calls if call.request.url == TOKEN_URL)


# -- auth ---------------------------------------------------------------------------------------


def test_client_credentials_sends_the_secret_as_http_basic_and_keeps_the_token(mocked):
    mocked.post(TOKEN_URL, json=token_reply(1))
    auth = make_auth()
    assert auth.token() == f"{TOKEN}-1"
    assert auth.token() == f"{TOKEN}-1"
    assert len(mocked.calls) == 1
    request = mocked.calls[0].request
    expected = base64.b64encode(f"3MVG9-consumer-key:{SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert parse_qs(request.body) == {"grant_type": ["client_credentials"]}
    assert auth.instance_url == "https://contoso.my.salesforce.com"


def test_jwt_bearer_assertion_is_rs256_with_iss_sub_aud_and_three_minute_expiry(mocked, rsa_key):
    mocked.post(TOKEN_URL, json=token_reply(1))
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    auth = make_auth(
        mode="jwt",
        client_secret=None,
        username="integration@contoso.example",
        private_key_pem=pem,
        wall_clock=lambda: 1_700_000_000.0,
    )
    assert auth.token() == f"{TOKEN}-1"
    form = parse_qs(mocked.calls[0].request.body)
    assert form["grant_type"] == [JWT_GRANT]
    assert "Authorization" not in mocked.calls[0].request.headers
    claims = jwt.decode(
        form["assertion"][0],
        rsa_key.public_key(),
        algorithms=["RS256"],
        audience="https://login.sf.test",
        options={"verify_exp": False},
    )
    assert claims == {
        "iss": "3MVG9-consumer-key",
        "sub": "integration@contoso.example",
        "aud": "https://login.sf.test",
        "exp": 1_700_000_180,
    }
    assert jwt.get_unverified_header(form["assertion"][0])["alg"] == "RS256"


def test_jwt_with_a_key_file_that_is_not_a_key_is_a_config_error(tmp_path):
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError) as caught:
        make_auth(mode="jwt", client_secret=None, username=None, private_key_file=bad)
    keys = {p.key for p in caught.value.problems}
    assert keys == {"username", "private_key_file"}


def test_refused_credentials_are_an_auth_error_naming_the_reason_not_the_secret(mocked):
    mocked.post(TOKEN_URL, status=400, json=body("token_invalid_client.json"))
    with pytest.raises(AuthError, match="invalid_client") as caught:
        make_auth().token()
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("status", "error"), [(503, TransientError), (429, RateLimited)])
def test_a_failing_token_endpoint_is_transient(mocked, status, error):
    mocked.post(TOKEN_URL, status=status, json={"error": "server_error"})
    with pytest.raises(error):
        make_auth().token()


# -- requests -----------------------------------------------------------------------------------


def test_collections_upsert_patches_the_external_id_route_with_typed_values(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    mocked.patch(UPSERT_URL, json=body("collections_upsert_mixed.json")[:1])
    client = make_client(make_auth(), clock)
    results = client.upsert_collection(
        "Opportunity",
        "Partner_Center_Referral_Id__c",
        [{"Partner_Center_Referral_Id__c": "R-1", "Amount": Decimal("1250.50"),
          "CloseDate": date(2025, 6, 30), "Probability": Decimal(10)}],
    )  # fmt: skip
    assert results[0]["created"] is True
    request = mocked.calls[1].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}-1"
    assert json.loads(request.body) == {
        "allOrNone": False,
        "records": [
            {
                "attributes": {"type": "Opportunity"},
                "Partner_Center_Referral_Id__c": "R-1",
                "Amount": 1250.5,
                "CloseDate": "2025-06-30",
                "Probability": 10,
            }
        ],
    }


def test_collections_refuse_more_than_200_records_before_sending(mocked, clock):
    client = make_client(make_auth(), clock)
    with pytest.raises(ValueError, match=r"1\.\.200"):
        client.upsert_collection("Opportunity", "X__c", [{"X__c": str(i)} for i in range(201)])
    assert len(mocked.calls) == 0


def test_a_result_count_that_does_not_match_the_records_is_a_permanent_error(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    mocked.patch(UPSERT_URL, json=body("collections_upsert_mixed.json"))
    client = make_client(make_auth(), clock)
    with pytest.raises(PermanentError, match="3 results for 1 records"):
        client.upsert_collection("Opportunity", "Partner_Center_Referral_Id__c", [{"a": 1}])


def test_expired_session_re_authenticates_exactly_once_and_repeats(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    mocked.post(TOKEN_URL, json=token_reply(2))
    mocked.get(
        f"{API}/sobjects/Opportunity/describe", status=401, json=body("error_invalid_session.json")
    )
    mocked.get(f"{API}/sobjects/Opportunity/describe", json=body("describe_opportunity.json"))
    client = make_client(make_auth(), clock)
    with capture_logs() as logs:
        described = client.describe("Opportunity")
    assert described["name"] == "Opportunity"
    assert tokens_issued(mocked) == 2
    assert mocked.calls[3].request.headers["Authorization"] == f"Bearer {TOKEN}-2"
    assert [e["event"] for e in logs].count("token_refresh_after_401") == 1
    assert not any(TOKEN in json.dumps(e, default=str) for e in logs)


def test_a_fresh_token_refused_again_is_renewed_again_after_a_back_off(mocked, clock):
    for n in (1, 2, 3):
        mocked.post(TOKEN_URL, json=token_reply(n))
    describe = f"{API}/sobjects/Opportunity/describe"
    for _ in range(3):  # the first token, the renewed one, the renewed one again
        mocked.get(describe, status=401, json=body("error_invalid_session.json"))
    mocked.get(describe, json={"name": "Opportunity", "fields": []})
    client = make_client(make_auth(), clock)

    assert client.describe("Opportunity")["name"] == "Opportunity"
    assert tokens_issued(mocked) == 3
    assert clock.sleeps == [1.0]


def test_fresh_tokens_refused_in_every_attempt_are_an_auth_error(mocked, clock):
    for n in range(1, 6):
        mocked.post(TOKEN_URL, json=token_reply(n))
    mocked.get(
        f"{API}/sobjects/Opportunity/describe", status=401, json=body("error_invalid_session.json")
    )
    client = make_client(make_auth(), clock)
    with pytest.raises(AuthError, match=r"INVALID_SESSION_ID.*every attempt"):
        client.describe("Opportunity")
    assert tokens_issued(mocked) == 5  # the first, then one renewal in each of the 4 attempts
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_server_unavailable_is_retried_with_backoff_then_succeeds(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    url = f"{API}/sobjects/Opportunity/describe"
    mocked.get(
        url, status=503, json=body("error_server_unavailable.json"), headers={"Retry-After": "5"}
    )
    mocked.get(url, status=500, json=body("error_unknown_exception.json"))
    mocked.get(url, json=body("describe_opportunity.json"))
    client = make_client(make_auth(), clock)
    assert client.describe("Opportunity")["name"] == "Opportunity"
    assert clock.sleeps == [5.0, 2.0]


def test_spent_api_quota_raises_rate_limited_at_once_without_retrying(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    mocked.get(
        f"{API}/sobjects/Opportunity/describe",
        status=403,
        json=body("error_request_limit.json"),
        headers={"Sforce-Limit-Info": "api-usage=15000/15000"},
    )
    client = make_client(make_auth(), clock, quota_wait_s=1800)
    with pytest.raises(RateLimited) as caught:
        client.describe("Opportunity")
    assert caught.value.retry_after == 1800
    assert clock.sleeps == []
    assert len(mocked.calls) == 2
    assert client.api_usage is not None
    assert (client.api_usage.used, client.api_usage.total, client.api_usage.remaining) == (
        15000, 15000, 0,
    )  # fmt: skip


def test_api_usage_is_read_from_every_response(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    mocked.get(
        f"{API}/sobjects/Opportunity/describe",
        json=body("describe_opportunity.json"),
        headers={"Sforce-Limit-Info": "api-usage=18/5000"},
    )
    client = make_client(make_auth(), clock)
    assert client.api_usage is None
    client.describe("Opportunity")
    assert client.api_usage is not None
    assert (client.api_usage.used, client.api_usage.total) == (18, 5000)


def test_query_pages_follow_the_relative_next_records_url(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    mocked.get(f"{API}/queryAll/", json=body("query_opportunities_page1.json"))
    mocked.get(f"{API}/query/01gD0000002HU6KIAW-2000", json=body("query_opportunities_page2.json"))
    client = make_client(make_auth(), clock)
    pages = list(client.query_pages("SELECT Id FROM Opportunity", include_deleted=True))
    assert [len(p["records"]) for p in pages] == [2, 1]
    first = urlsplit(mocked.calls[1].request.url)
    assert parse_qs(first.query) == {"q": ["SELECT Id FROM Opportunity"]}
    # simple-salesforce keeps JSON decimals exact for us
    assert pages[0]["records"][0]["Amount"] == Decimal("125000.50")


def test_an_absolute_next_records_url_is_refused(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    page = {**body("query_opportunities_page1.json"), "nextRecordsUrl": "https://evil.test/x"}
    mocked.get(f"{API}/query/", json=page)
    client = make_client(make_auth(), clock)
    with pytest.raises(PermanentError, match="nextRecordsUrl"):
        list(client.query_pages("SELECT Id FROM Opportunity"))


def test_create_returns_the_new_id_and_a_refusal_is_record_rejected(mocked, clock):
    mocked.post(TOKEN_URL, json=token_reply(1))
    mocked.post(
        f"{API}/sobjects/Account/", status=201, json={"id": "001A", "success": True, "errors": []}
    )
    mocked.post(f"{API}/sobjects/Contact/", status=400, json=body("error_required_field.json"))
    client = make_client(make_auth(), clock)
    assert client.create("Account", {"Name": "Contoso"}) == "001A"
    with pytest.raises(PermanentError, match="REQUIRED_FIELD_MISSING") as caught:
        client.create("Contact", {"Email": "a@b.example"})
    assert caught.value.status == 400


def test_a_create_whose_reply_is_lost_is_not_sent_again(mocked, clock):
    """A read timeout or a 500 after a create may have made it: sending it again could make a
    second account. The cycle fails instead; the next one finds what exists first."""
    mocked.post(TOKEN_URL, json=token_reply(1))
    url = f"{API}/composite/sobjects"
    mocked.post(url, body=requests.exceptions.ReadTimeout("read timed out"))
    client = make_client(make_auth(), clock)

    with pytest.raises(OutcomeUnknown, match="not sent again"):
        client.create_collection([("Account", {"Name": "Contoso"})])
    assert sum(1 for call in mocked.calls if call.request.url == url) == 1

    mocked.replace(responses.POST, url, status=500, json=body("error_unknown_exception.json"))
    with pytest.raises(OutcomeUnknown):
        client.create_collection([("Account", {"Name": "Contoso"})])
    assert sum(1 for call in mocked.calls if call.request.url == url) == 2
    assert clock.sleeps == []


def test_an_upsert_whose_reply_is_lost_is_sent_again(mocked, clock):
    """An upsert by external id is safe to repeat (creates go through the collections create,
    create-only on the unique external id, instead)."""
    mocked.post(TOKEN_URL, json=token_reply(1))
    url = f"{API}/composite/sobjects/Opportunity/Ref__c"
    mocked.patch(url, body=requests.exceptions.ReadTimeout("read timed out"))
    mocked.patch(url, json=[{"id": "006A", "success": True, "created": False}])
    client = make_client(make_auth(), clock)

    [result] = client.upsert_collection("Opportunity", "Ref__c", [{"Ref__c": "r1"}])

    assert result["id"] == "006A"
    assert sum(1 for call in mocked.calls if call.request.url == url) == 2


def test_a_create_refused_before_it_was_done_is_retried(mocked, clock):
    """A 503 with Retry-After (or a connection never made) did nothing: safe to send again."""
    mocked.post(TOKEN_URL, json=token_reply(1))
    url = f"{API}/composite/sobjects"
    mocked.post(
        url, status=503, json=body("error_server_unavailable.json"), headers={"Retry-After": "2"}
    )
    mocked.post(url, body=requests.exceptions.ConnectTimeout("connect timed out"))
    mocked.post(url, json=[{"id": "001A", "success": True, "errors": []}])
    client = make_client(make_auth(), clock)

    assert client.create_collection([("Account", {"Name": "Contoso"})])[0]["id"] == "001A"
    assert sum(1 for call in mocked.calls if call.request.url == url) == 3


def test_a_token_endpoint_503_with_retry_after_keeps_the_client_back_that_long(mocked, clock):
    mocked.post(TOKEN_URL, status=503, json={"error": "server_error"}, headers={"Retry-After": "3"})
    mocked.post(TOKEN_URL, json=token_reply(1))
    mocked.get(f"{API}/sobjects/Opportunity/describe", json=body("describe_opportunity.json"))
    client = make_client(make_auth(), clock)

    assert client.describe("Opportunity")["name"] == "Opportunity"
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 3
