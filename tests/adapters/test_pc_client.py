"""PartnerCenterClient against `responses`, with recorded-shape bodies and a fake clock."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from fakes import FakeClock
from structlog.testing import capture_logs

from connector.errors import (
    AuthError,
    ConfigError,
    PermanentError,
    PreconditionFailed,
    RateLimited,
    RecordRejected,
    TransientError,
)
from connector.http.retry import RetryPolicy
from connector.http.session import build_session
from connector.partner_center.client import PartnerCenterClient

BASE = "https://api.partner.test/v1.0/engagements"
REFERRALS = f"{BASE}/referrals"
DATA = Path(__file__).parents[1] / "data" / "partner_center" / "responses"
TOKEN = "at-secret-0001"  # a fake token; the point is that it never gets logged
REFERRAL_ID = "0e3b6c1f-0000-4000-8000-000000000001"


def body(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


class FakeAuth:
    def __init__(self) -> None:
        self.refreshes = 0

    def token(self) -> str:
        return TOKEN if self.refreshes == 0 else f"{TOKEN}-r{self.refreshes}"

    def refresh(self) -> str:
        self.refreshes += 1
        return self.token()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth() -> FakeAuth:
    return FakeAuth()


@pytest.fixture
def client(clock: FakeClock, auth: FakeAuth) -> PartnerCenterClient:
    return PartnerCenterClient(
        BASE,
        auth,
        session=build_session(),
        retry=RetryPolicy(max_attempts=6, max_total_s=300, base_s=1, cap_s=30, jitter=0.5),
        timeout=(3.0, 20.0),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(7),
    )


@pytest.fixture
def mocked():
    with responses.RequestsMock() as rsps:
        yield rsps


def test_iter_pages_follows_next_link_across_three_pages(client, mocked):
    first = body("referrals_page_1.json")
    second = body("referrals_page_2.json")
    mocked.get(REFERRALS, json=first, match=[responses.matchers.query_param_matcher({})])
    mocked.get(first["@odata.nextLink"], json=second)
    mocked.get(second["@odata.nextLink"], json=body("referrals_page_3.json"))

    pages = list(client.iter_pages())

    assert [len(page.items) for page in pages] == [2, 2, 1]
    assert [page.has_more for page in pages] == [True, True, False]
    assert [r["name"] for page in pages for r in page.items] == [
        f"Contoso deal {i}" for i in range(1, 6)
    ]
    assert [call.request.url for call in mocked.calls][1:] == [
        first["@odata.nextLink"],
        second["@odata.nextLink"],
    ]


def test_iter_pages_sends_params_on_the_first_page_only(client, mocked):
    params = {"$filter": "updatedDateTime gt 2024-05-01T00:00:00Z", "$orderby": "updatedDateTime"}
    first = body("referrals_page_1.json")
    mocked.get(REFERRALS, json=first, match=[responses.matchers.query_param_matcher(params)])
    second = body("referrals_page_3.json")
    mocked.get(first["@odata.nextLink"], json=second)

    assert sum(len(page.items) for page in client.iter_pages(params)) == 3
    assert "%24filter" not in mocked.calls[1].request.url


def test_iter_pages_refuses_a_next_link_to_another_host(client, mocked):
    first = body("referrals_page_1.json")
    first["@odata.nextLink"] = "https://evil.example/v1.0/engagements/referrals?$skiptoken=x"
    mocked.get(REFERRALS, json=first)

    pages = client.iter_pages()
    assert len(next(pages).items) == 2
    with pytest.raises(PermanentError, match=r"evil\.example"):
        next(pages)
    assert len(mocked.calls) == 1


def test_iter_pages_refuses_a_plain_http_next_link_to_the_same_host(client, mocked):
    first = body("referrals_page_1.json")
    first["@odata.nextLink"] = first["@odata.nextLink"].replace("https://", "http://")
    mocked.get(REFERRALS, json=first)

    with pytest.raises(PermanentError, match="nextLink"):
        list(client.iter_pages())
    assert len(mocked.calls) == 1


def test_iter_pages_stops_when_next_link_repeats(client, mocked):
    first = body("referrals_page_1.json")
    looping = body("referrals_page_2.json")
    looping["@odata.nextLink"] = first["@odata.nextLink"]
    mocked.get(REFERRALS, json=first)
    mocked.get(first["@odata.nextLink"], json=looping)

    with pytest.raises(PermanentError, match="repeats"):
        list(client.iter_pages())


def test_list_response_without_value_array_is_permanent(client, mocked):
    mocked.get(REFERRALS, json={"items": []})
    with pytest.raises(PermanentError, match="value"):
        list(client.iter_pages())


def test_429_with_retry_after_2_is_not_retried_before_2_seconds(client, mocked, clock):
    mocked.get(REFERRALS, status=429, json=body("throttled.json"), headers={"Retry-After": "2"})
    mocked.get(REFERRALS, json=body("referrals_page_3.json"))

    assert len(next(client.iter_pages()).items) == 1
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 2
    assert len(mocked.calls) == 2


def test_429_without_header_waits_as_long_as_the_throttling_body_says(client, mocked, clock):
    mocked.get(REFERRALS, status=429, json=body("throttled.json"))
    mocked.get(REFERRALS, json=body("referrals_page_3.json"))

    next(client.iter_pages())

    assert clock.sleeps[0] >= 57


def tight_client(auth: FakeAuth, clock: FakeClock) -> PartnerCenterClient:
    """A client whose requests may spend 60 s in all (a Retry-After of 120 is past it)."""
    return PartnerCenterClient(
        BASE,
        auth,
        session=build_session(),
        retry=RetryPolicy(max_attempts=6, max_total_s=60),
        sleep=clock.sleep,
        clock=clock,
    )


def test_a_retry_after_given_up_on_still_keeps_the_next_cycle_from_calling(auth, clock, mocked):
    """The cycle fails (the wait is past its budget) but the server's "come back in 120 s"
    stands: a request before then fails at once without being sent; after it, it goes."""
    tight = tight_client(auth, clock)
    mocked.get(REFERRALS, status=429, json=body("throttled.json"), headers={"Retry-After": "120"})
    with pytest.raises(RateLimited):
        next(tight.iter_pages())
    mocked.replace(responses.GET, REFERRALS, json=body("referrals_page_3.json"))

    clock.sleep(30)  # the next cycle, 30 s later
    with pytest.raises(RateLimited, match="90 s of its Retry-After left") as caught:
        next(tight.iter_pages())
    assert caught.value.retry_after == pytest.approx(90)
    assert len(mocked.calls) == 1

    clock.sleep(90)
    clock.sleeps.clear()
    assert len(next(tight.iter_pages()).items) == 1
    assert clock.sleeps == []


def test_a_retry_after_met_by_one_thread_holds_back_the_others(client, mocked, clock):
    """The write-back threads share the client: a 503 with ``Retry-After`` one of them met
    stops the next request of any of them until it has passed."""
    mocked.get(REFERRALS, status=503, json=body("error_service_unavailable.json"),
               headers={"Retry-After": "3"})  # fmt: skip
    mocked.get(REFERRALS, json=body("referrals_page_3.json"))
    mocked.get(f"{REFERRALS}/abc", json={"id": "abc", "eTag": "1"})
    next(client.iter_pages())  # waited 3 s (it met it)
    client.gate.hold(5)  # another thread meets one now
    clock.sleeps.clear()

    client.get("abc")

    assert clock.sleeps == [pytest.approx(5)]


def test_five_503s_then_200_succeeds(client, mocked, clock):
    for _ in range(5):
        mocked.get(REFERRALS, status=503, json=body("error_service_unavailable.json"))
    mocked.get(REFERRALS, json=body("referrals_page_3.json"))

    assert len(next(client.iter_pages()).items) == 1
    assert len(mocked.calls) == 6
    assert len(clock.sleeps) == 5


def test_transient_failures_past_the_attempt_cap_raise_transient_error(client, mocked):
    mocked.get(REFERRALS, status=503, json=body("error_service_unavailable.json"))  # repeats

    with pytest.raises(TransientError, match="503 serviceNotAvailable"):
        next(client.iter_pages())
    assert len(mocked.calls) == 6


def test_gives_up_at_once_when_retry_after_exceeds_the_time_budget(auth, clock, mocked):
    tight = tight_client(auth, clock)
    mocked.get(REFERRALS, status=429, json=body("throttled.json"), headers={"Retry-After": "120"})

    with pytest.raises(RateLimited) as caught:
        next(tight.iter_pages())
    assert caught.value.retry_after == 120
    assert clock.sleeps == []
    assert len(mocked.calls) == 1


def test_invalid_transition_is_rejected_with_the_servers_message_and_not_retried(client, mocked):
    url = f"{REFERRALS}/{REFERRAL_ID}"
    mocked.patch(url, status=400, json=body("error_invalid_transition.json"))
    ops = [{"op": "replace", "path": "/status", "value": "Active"}]

    with pytest.raises(RecordRejected) as caught:
        client.patch(REFERRAL_ID, ops, if_match='"etag-1"')

    assert "Referral status cannot be changed from Closed to Active." in str(caught.value)
    assert caught.value.status == 400
    assert caught.value.code == "invalidRequest"
    assert len(mocked.calls) == 1


def test_401_then_200_refreshes_the_token_once_and_repeats(client, mocked, auth, clock):
    url = f"{REFERRALS}/{REFERRAL_ID}"
    mocked.get(url, status=401, json=body("error_unauthenticated.json"))
    mocked.get(url, json=body("referral.json"))

    assert client.get(REFERRAL_ID)["id"] == REFERRAL_ID
    assert auth.refreshes == 1
    assert mocked.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}-r1"
    assert clock.sleeps == []


def test_a_token_refused_right_after_its_renewal_is_renewed_again_after_a_back_off(
    client, mocked, auth, clock
):
    url = f"{REFERRALS}/{REFERRAL_ID}"
    for _ in range(3):  # the first token, the renewed one, the renewed one again
        mocked.get(url, status=401, json=body("error_unauthenticated.json"))
    mocked.get(url, json=body("referral.json"))

    assert client.get(REFERRAL_ID)["id"] == REFERRAL_ID
    assert auth.refreshes == 2
    assert [c.request.headers["Authorization"] for c in mocked.calls] == [
        f"Bearer {TOKEN}",
        f"Bearer {TOKEN}-r1",
        f"Bearer {TOKEN}-r1",
        f"Bearer {TOKEN}-r2",
    ]
    assert len(clock.sleeps) == 1


def test_renewed_tokens_refused_in_every_attempt_raise_auth_error(client, mocked, auth, clock):
    mocked.get(f"{REFERRALS}/{REFERRAL_ID}", status=401, json=body("error_unauthenticated.json"))

    with pytest.raises(AuthError, match=r"freshly issued token.*every attempt"):
        client.get(REFERRAL_ID)
    assert auth.refreshes == 6  # one renewal per attempt
    assert len(mocked.calls) == 12
    assert len(clock.sleeps) == 5


def test_403_raises_auth_error_without_refresh_or_retry(client, mocked, auth):
    mocked.get(f"{REFERRALS}/{REFERRAL_ID}", status=403, json=body("error_access_denied.json"))

    with pytest.raises(AuthError, match="not authorized"):
        client.get(REFERRAL_ID)
    assert auth.refreshes == 0
    assert len(mocked.calls) == 1


def test_stale_etag_412_raises_precondition_failed(client, mocked):
    mocked.patch(
        f"{REFERRALS}/{REFERRAL_ID}", status=412, json=body("error_precondition_failed.json")
    )
    ops = [{"op": "replace", "path": "/details/dealValue", "value": "10000"}]

    with pytest.raises(PreconditionFailed) as caught:
        client.patch(REFERRAL_ID, ops, if_match='"stale"')
    assert caught.value.code == "resourceModified"
    assert len(mocked.calls) == 1


def test_404_is_rejected_not_retried(client, mocked):
    mocked.get(f"{REFERRALS}/missing", status=404, json=body("error_not_found.json"))

    with pytest.raises(RecordRejected, match="Referral not found"):
        client.get("missing")
    assert len(mocked.calls) == 1


def test_connection_error_is_retried(client, mocked, clock):
    url = f"{REFERRALS}/{REFERRAL_ID}"
    mocked.get(url, body=requests.exceptions.ConnectionError("connection reset by peer"))
    mocked.get(url, body=requests.exceptions.ReadTimeout("read timed out"))
    mocked.get(url, json=body("referral.json"))

    assert client.get(REFERRAL_ID)["eTag"]
    assert len(clock.sleeps) == 2


def test_every_request_has_a_distinct_client_request_id_and_a_timeout(client, mocked):
    first = body("referrals_page_1.json")
    second = body("referrals_page_2.json")
    mocked.get(REFERRALS, status=503, json=body("error_service_unavailable.json"))
    mocked.get(REFERRALS, json=first)
    mocked.get(first["@odata.nextLink"], json=second)
    mocked.get(second["@odata.nextLink"], json=body("referrals_page_3.json"))
    mocked.get(f"{REFERRALS}/{REFERRAL_ID}", json=body("referral.json"))
    mocked.patch(f"{REFERRALS}/{REFERRAL_ID}", status=204)
    mocked.post(REFERRALS, json=body("referral.json"))

    list(client.iter_pages())
    client.get(REFERRAL_ID)
    client.patch(REFERRAL_ID, [], if_match=None, representation=False)
    client.create({"type": "Independent"})

    ids = [call.request.headers["client-request-id"] for call in mocked.calls]
    assert len(ids) == 7
    assert len(set(ids)) == 7
    assert all(call.request.req_kwargs["timeout"] == (3.0, 20.0) for call in mocked.calls)
    assert all(call.request.headers["Accept"] == "application/json" for call in mocked.calls)
    assert all(call.request.headers["Authorization"] == f"Bearer {TOKEN}" for call in mocked.calls)


def test_patch_sends_if_match_prefer_and_the_json_patch_body(client, mocked):
    url = f"{REFERRALS}/{REFERRAL_ID}"
    ops = [
        {"op": "replace", "path": "/status", "value": "Active"},
        {"op": "replace", "path": "/substatus", "value": "Accepted"},
    ]
    mocked.patch(
        url,
        json=body("referral_patched.json"),
        match=[
            responses.matchers.header_matcher(
                {"If-Match": '"etag-1"', "Prefer": "return=representation"}
            ),
            responses.matchers.json_params_matcher(ops),
        ],
    )

    updated = client.patch(REFERRAL_ID, ops, if_match='"etag-1"')

    assert updated is not None
    assert updated["status"] == "Active"


def test_patch_without_if_match_or_representation_returns_none_on_204(client, mocked):
    mocked.patch(f"{REFERRALS}/{REFERRAL_ID}", status=204)

    assert client.patch(REFERRAL_ID, [], if_match=None, representation=False) is None
    sent = mocked.calls[0].request.headers
    assert "If-Match" not in sent
    assert "Prefer" not in sent


def test_create_posts_the_body_and_returns_the_created_referral(client, mocked):
    new = {"type": "Independent", "name": "Contoso deal 1"}
    mocked.post(
        REFERRALS, json=body("referral.json"), match=[responses.matchers.json_params_matcher(new)]
    )

    assert client.create(new)["id"] == REFERRAL_ID


def test_get_quotes_the_referral_id_into_one_path_segment(client, mocked):
    mocked.get(f"{REFERRALS}/a%2Fb%3Fc", json=body("referral.json"))

    client.get("a/b?c")

    assert mocked.calls[0].request.path_url == "/v1.0/engagements/referrals/a%2Fb%3Fc"


def test_redirects_are_not_followed(client, mocked):
    mocked.get(
        f"{REFERRALS}/{REFERRAL_ID}", status=302, headers={"Location": "https://elsewhere.test/"}
    )

    with pytest.raises(PermanentError, match="302"):
        client.get(REFERRAL_ID)
    assert len(mocked.calls) == 1


def test_non_json_success_body_is_permanent(client, mocked):
    mocked.get(f"{REFERRALS}/{REFERRAL_ID}", body="<html>gateway</html>")

    with pytest.raises(PermanentError, match="not JSON"):
        client.get(REFERRAL_ID)


def test_each_retry_is_logged_and_the_token_never_is(client, mocked):
    mocked.get(REFERRALS, status=429, json=body("throttled.json"), headers={"Retry-After": "2"})
    mocked.get(REFERRALS, status=401, json=body("error_unauthenticated.json"))
    mocked.get(REFERRALS, json=body("referrals_page_3.json"))

    with capture_logs() as logs:
        next(client.iter_pages())

    retries = [e for e in logs if e["event"] == "request_retry"]
    assert len(retries) == 1
    assert retries[0]["service"] == "partner_center"
    assert retries[0]["attempt"] == 1
    assert retries[0]["wait_s"] >= 2
    assert "429" in retries[0]["reason"]
    done = [e for e in logs if e["event"] == "request_done"]
    assert len(done) == 3
    assert all(e["client_request_id"] for e in done)
    assert TOKEN not in repr(logs)
    assert "Bearer" not in repr(logs)


def test_client_refuses_a_non_https_base_url(auth):
    with pytest.raises(ConfigError, match="base_url"):
        PartnerCenterClient(
            "http://api.partner.test/v1.0/engagements",
            auth,
            session=build_session(),
            retry=RetryPolicy(),
        )
