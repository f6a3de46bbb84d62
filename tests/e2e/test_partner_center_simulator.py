"""The Partner Center simulator over real HTTPS: every documented behaviour of spec §7.

Each test seeds its own referrals under a fresh ``engagementId`` and filters on it, so tests
sharing the session's sandbox do not see each other's data. Every response body is checked
against the swagger (:mod:`swagger_check`, as a ``requests`` hook).
"""

from __future__ import annotations

import base64
import json
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from swagger_check import swagger_hook, validate_referral

from sandbox.app import Sandbox
from sandbox.partner_center import AUDIENCE, generate_referrals
from sandbox.partner_center.wiretime import format_wire
from sandbox.testing import ca_session as ca_session_for
from sandbox.testing import random_loopback_host

pytestmark = pytest.mark.e2e


class PartnerCenter:
    """A thin test client: the sandbox's base URL, a user token, swagger checks on every reply."""

    def __init__(self, sandbox: Sandbox, session: requests.Session) -> None:
        self.sandbox = sandbox
        self.store = sandbox.partner_center.store
        self.base = sandbox.info["partner_center"]["base_url"]
        self.session = session
        session.hooks["response"].append(swagger_hook)
        self.token = self.issue_token()

    def issue_token(self, *, user: bool = True) -> str:
        tenant = self.sandbox.tenant
        token, _ = self.sandbox.tokens.issue_access_token(
            client_id=tenant.partner_center_app.client_id,
            audience=AUDIENCE,
            scopes=[f"{AUDIENCE}/user_impersonation"],
            user=tenant.user if user else None,
        )
        return token

    def call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        if not url.startswith("https://"):
            url = f"{self.base}{url}"
        return self.session.request(method, url, headers=headers, timeout=10, **kwargs)

    def list(self, **params: str) -> requests.Response:
        return self.call("GET", "/referrals", params={f"${k}": v for k, v in params.items()})

    def patch(self, referral_id: str, ops: Any, **headers: str) -> requests.Response:
        return self.call("PATCH", f"/referrals/{referral_id}", json=ops, headers=headers)

    def seed(self, n: int, **overrides: Any) -> tuple[str, list[dict[str, Any]]]:
        """``n`` generated referrals sharing a fresh engagementId (returned) plus ``overrides``."""
        engagement = str(uuid.uuid4())
        referrals = generate_referrals(n, uuid.uuid4().int % 10**6, self.sandbox.clock)
        for raw in referrals:
            raw.update(engagementId=engagement, **overrides)
        self.store.seed_raw(referrals)
        return engagement, referrals

    def seed_new(self) -> dict[str, Any]:
        """One New/Pending referral created an hour ago (so it expires in 14 days)."""
        created = self.sandbox.clock.now() - timedelta(hours=1)
        _, [raw] = self.seed(
            1,
            status="New",
            substatus="Pending",
            createdDateTime=format_wire(created),
            expirationDateTime=format_wire(created + timedelta(days=14)),
            acceptedDateTime=None,
            closedDateTime=None,
        )
        return raw

    def walk(self, first: requests.Response) -> list[dict[str, Any]]:
        """Every page from ``first`` on, following @odata.nextLink as given."""
        pages, response = [], first
        while True:
            assert response.status_code == 200, response.text
            pages.append(response.json())
            link = pages[-1].get("@odata.nextLink")
            if link is None:
                return pages
            response = self.call("GET", link)


@pytest.fixture
def pc(sandbox: Sandbox, ca_session: requests.Session) -> PartnerCenter:
    return PartnerCenter(sandbox, ca_session)


def error_of(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()["error"]


def lifecycle(status: str, substatus: str) -> list[dict[str, str]]:
    return [
        {"op": "replace", "path": "/status", "value": status},
        {"op": "replace", "path": "/substatus", "value": substatus},
    ]


ACCEPT = lifecycle("Active", "Accepted")


# -- listing and paging --------------------------------------------------------------------


def test_250_referrals_come_in_three_pages_linked_by_https_next_links(pc):
    engagement, referrals = pc.seed(250)
    pages = pc.walk(pc.list(filter=f"engagementId eq {engagement}"))
    assert [len(page["value"]) for page in pages] == [100, 100, 50]
    ids = [raw["id"] for page in pages for raw in page["value"]]
    assert sorted(ids) == sorted(raw["id"] for raw in referrals)
    for page in pages[:-1]:
        link = urlsplit(page["@odata.nextLink"])
        assert (link.scheme, link.netloc) == ("https", urlsplit(pc.base).netloc)
        assert list(parse_qs(link.query)) == ["$skiptoken"]
    assert pc.sandbox.log.count(service="partner_center", route="referrals_list") == 3


def test_changes_since_over_ties_returns_each_referral_once_in_11_pages(pc):
    engagement, referrals = pc.seed(1050)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    for index, raw in enumerate(referrals):
        stamp = since + timedelta(minutes=index)
        pc.store.stamp_updated([raw["id"]], stamp)
    tie = since + timedelta(days=3)
    pc.store.stamp_updated([raw["id"] for raw in referrals[500:520]], tie)
    pages = pc.walk(
        pc.list(
            filter=f"engagementId eq '{engagement}' and updatedDateTime ge 2026-01-01T00:00:00Z",
            orderby="updatedDateTime asc",
        )
    )
    assert len(pages) == 11
    ids = [raw["id"] for page in pages for raw in page["value"]]
    assert len(ids) == len(set(ids)) == 1050
    stamps = [raw["updatedDateTime"] for page in pages for raw in page["value"]]
    assert stamps == sorted(stamps)
    tied = [
        raw["id"]
        for page in pages
        for raw in page["value"]
        if raw["updatedDateTime"] == format_wire(tie)
    ]
    assert tied == sorted(
        tied
    )  # the simulator's tie order: id ascending (the real one is undocumented)


def test_top_and_skip_take_a_window_of_the_ordered_result(pc):
    engagement, referrals = pc.seed(40)
    expected = sorted(referrals, key=lambda r: (r["createdDateTime"], r["id"]), reverse=True)
    response = pc.list(
        filter=f"engagementId eq {engagement}", orderby="createdDateTime desc", top="15", skip="10"
    )
    body = response.json()
    assert [r["id"] for r in body["value"]] == [r["id"] for r in expected[10:25]]
    assert "@odata.nextLink" not in body


def test_top_above_a_page_is_paged_by_100(pc):
    engagement, _ = pc.seed(180)
    pages = pc.walk(pc.list(filter=f"engagementId eq {engagement}", top="150", count="true"))
    assert [len(page["value"]) for page in pages] == [100, 50]
    assert all(page["@odata.count"] == 180 for page in pages)


def test_filters_on_status_country_and_direction_match_only_those(pc):
    engagement, referrals = pc.seed(120)
    wanted = {
        r["id"]
        for r in referrals
        if r["status"] == "New" and r["customerProfile"]["address"]["country"] == "BR"
    }
    response = pc.list(
        filter=f"engagementId eq '{engagement}' and status eq 'New'"
        " and customerProfile/address/country eq 'BR' and direction eq 'Incoming'"
    )
    assert {r["id"] for r in response.json()["value"]} == wanted
    assert wanted


def test_select_returns_only_the_chosen_properties(pc):
    engagement, _ = pc.seed(3)
    response = pc.list(filter=f"engagementId eq {engagement}", select="id,status,customerProfile")
    assert {tuple(sorted(r)) for r in response.json()["value"]} == {
        ("customerProfile", "id", "status")
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"filter": "name eq 'x'"}, "field 'name' cannot be filtered on"),
        ({"filter": "status eq 'New' or status eq 'Active'"}, "operator 'or' is not supported"),
        ({"filter": "updatedDateTime between 2026-01-01T00:00:00Z"}, "unknown operator"),
        ({"orderby": "name"}, "'name' cannot be used in $orderby"),
        ({"top": "many"}, "$top must be a non-negative integer"),
        ({"expand": "team"}, "$expand is not supported"),
    ],
)
def test_bad_queries_are_400_invalid_request(pc, params, message):
    error = error_of(pc.list(**params), 400)
    assert error["code"] == "invalidRequest"
    assert message in error["message"]


def test_a_tampered_skiptoken_is_400(pc):
    engagement, _ = pc.seed(101)
    link = pc.list(filter=f"engagementId eq {engagement}").json()["@odata.nextLink"]
    token = parse_qs(urlsplit(link).query)["$skiptoken"][0]
    payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["p"] = 0
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    error = error_of(pc.list(skiptoken=f"{forged}.{signature}"), 400)
    assert "$skiptoken is not valid" in error["message"]


# -- get -----------------------------------------------------------------------------------


def test_get_returns_the_referral_with_its_etag_header(pc):
    raw = pc.seed_new()
    response = pc.call("GET", f"/referrals/{raw['id']}")
    body = response.json()
    assert body["id"] == raw["id"]
    assert response.headers["ETag"] == body["eTag"] == raw["eTag"]
    assert body["@odata.context"].endswith("/referrals/$metadata#Referrals/$entity")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["request-id"]


def test_unknown_id_is_404_item_not_found(pc):
    error = error_of(pc.call("GET", f"/referrals/{uuid.uuid4()}"), 404)
    assert error["code"] == "itemNotFound"


def test_client_request_id_is_echoed(pc):
    response = pc.call(
        "GET", "/referrals", params={"$top": "1"}, headers={"client-request-id": "abc-123"}
    )
    assert response.headers["client-request-id"] == "abc-123"


# -- patch ---------------------------------------------------------------------------------


def test_patch_answers_204_empty_and_the_change_shows_on_get(pc):
    raw = pc.seed_new()
    ops = [
        {"op": "replace", "path": "/details/dealValue", "value": "10000"},
        {"op": "replace", "path": "/details/notes", "value": "Lorem ipsum dolor sit amet."},
    ]
    response = pc.patch(raw["id"], ops)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["request-id"]
    after = pc.call("GET", f"/referrals/{raw['id']}").json()
    assert after["details"]["dealValue"] == 10000
    assert after["eTag"] != raw["eTag"]
    assert after["updatedDateTime"] > raw["updatedDateTime"]


def test_patch_with_prefer_representation_returns_the_referral(pc):
    raw = pc.seed_new()
    member = {"email": "jane.doe@contoso.com", "firstName": "Jane", "lastName": "Doe",
              "phoneNumber": "0000000001"}  # fmt: skip
    response = pc.patch(
        raw["id"],
        [{"op": "add", "path": "/team/-", "value": member}],
        Prefer="return=representation",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["team"][-1] == member
    assert response.headers["ETag"] == body["eTag"] != raw["eTag"]


def test_accepting_then_winning_stamps_accepted_and_closed_times(pc):
    raw = pc.seed_new()
    accepted = pc.patch(raw["id"], ACCEPT, Prefer="return=representation").json()
    assert accepted["acceptedDateTime"] == accepted["updatedDateTime"]
    won = pc.patch(
        raw["id"],
        lifecycle("Closed", "Won"),
        Prefer="return=representation",
    ).json()
    assert won["closedDateTime"] == won["updatedDateTime"]
    assert won["acceptedDateTime"] == accepted["acceptedDateTime"]


def test_stale_if_match_is_412_precondition_failed(pc):
    raw = pc.seed_new()
    pc.store.edit(raw["id"], details={"notes": "Microsoft changed it"})
    response = pc.patch(raw["id"], ACCEPT, **{"If-Match": raw["eTag"]})
    assert error_of(response, 412)["code"] == "preconditionFailed"
    current = pc.call("GET", f"/referrals/{raw['id']}").headers["ETag"]
    assert pc.patch(raw["id"], ACCEPT, **{"If-Match": current}).status_code == 204


def test_an_invalid_transition_is_400_with_the_reason(pc):
    raw = pc.seed_new()
    response = pc.patch(
        raw["id"],
        lifecycle("Closed", "Won"),
    )
    error = error_of(response, 400)
    assert error["code"] == "invalidRequest"
    assert error["message"] == (
        "Invalid status transition: Closed/Won needs a referral that is Active,"
        " but it is New/Pending"
    )


def test_a_closed_referral_takes_no_more_writes(pc):
    raw = pc.seed_new()
    assert pc.patch(raw["id"], lifecycle("Closed", "Declined")).status_code == 204
    error = error_of(pc.patch(raw["id"], ACCEPT), 400)
    assert "terminal state" in error["message"]


def test_a_partner_cannot_set_expired(pc):
    raw = pc.seed_new()
    response = pc.patch(raw["id"], lifecycle("Closed", "Expired"))
    assert "only Partner Center expires" in error_of(response, 400)["message"]


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "replace", "path": "/customerProfile/name", "value": "Other"}],
        [{"op": "remove", "path": "/details/notes"}],
        [],
        {"op": "replace", "path": "/details/notes", "value": "x"},
    ],
)
def test_patches_outside_the_documented_subset_are_400(pc, ops):
    raw = pc.seed_new()
    assert error_of(pc.patch(raw["id"], ops), 400)["code"] == "invalidRequest"


def test_malformed_json_is_400_and_a_non_json_body_is_415(pc):
    raw = pc.seed_new()
    url = f"/referrals/{raw['id']}"
    bad = pc.call("PATCH", url, data=b"[{", headers={"Content-Type": "application/json"})
    assert "not valid JSON" in error_of(bad, 400)["message"]
    text = pc.call("PATCH", url, data=b"x", headers={"Content-Type": "text/plain"})
    assert error_of(text, 415)["code"] == "invalidRequest"


def test_patch_of_an_unknown_referral_is_404(pc):
    assert error_of(pc.patch(str(uuid.uuid4()), ACCEPT), 404)["code"] == "itemNotFound"


# -- put (obsolete) ------------------------------------------------------------------------


def test_put_needs_if_match_and_returns_the_updated_referral(pc):
    raw = pc.seed_new()
    body = {k: v for k, v in raw.items() if k != "links"} | {"name": "Renamed by PUT"}
    missing = pc.call("PUT", f"/referrals/{raw['id']}", json=body)
    assert "If-Match" in error_of(missing, 400)["message"]
    stale = pc.call("PUT", f"/referrals/{raw['id']}", json=body, headers={"If-Match": '"x"'})
    assert error_of(stale, 412)["code"] == "preconditionFailed"
    response = pc.call(
        "PUT", f"/referrals/{raw['id']}", json=body, headers={"If-Match": raw["eTag"]}
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed by PUT"


# -- create --------------------------------------------------------------------------------


def test_create_returns_200_with_an_accepted_outgoing_referral(pc):
    body = {
        "name": "Contoso - Azure migration",
        "type": "Shared",
        "status": "New",
        "substatus": "Pending",
        "customerProfile": {
            "name": "Contoso",
            "address": {"city": "Redmond", "country": "US"},
            "team": [{"firstName": "Ann", "lastName": "Lee", "email": "ann@contoso.com"}],
        },
        "consent": {"consentToShareReferralWithMicrosoftSellers": True},
        "details": {"dealValue": 25000, "currency": "USD", "notes": "Co-sell with Microsoft"},
        "target": [{"type": "BusinessProfileLocation", "id": "msft"}],
    }
    response = pc.call("POST", "/referrals", json=body)
    assert response.status_code == 200
    created = response.json()
    assert (created["status"], created["substatus"]) == ("Active", "Accepted")
    assert created["acceptedDateTime"] == created["createdDateTime"]
    assert response.headers["ETag"] == created["eTag"]
    fetched = pc.call("GET", f"/referrals/{created['id']}").json()
    assert fetched["engagementId"] == created["engagementId"]


def test_create_without_required_properties_is_400(pc):
    error = error_of(pc.call("POST", "/referrals", json={"type": "Shared"}), 400)
    assert error["message"] == "'customerProfile' is required"


# -- auth and transport --------------------------------------------------------------------


def test_no_token_is_401_unauthenticated(pc):
    response = pc.session.get(f"{pc.base}/referrals", timeout=10)
    assert error_of(response, 401)["code"] == "unauthenticated"


def test_an_expired_token_is_401(pc):
    pc.sandbox.tokens.expire_all()
    error = error_of(pc.list(top="1"), 401)
    assert error["message"] == "The access token has expired."
    pc.token = pc.issue_token()
    assert pc.list(top="1").status_code == 200


def test_an_app_only_token_is_403(pc):
    pc.token = pc.issue_token(user=False)
    assert error_of(pc.list(top="1"), 403)["code"] == "accessDenied"


def test_throttling_is_429_with_retry_after_on_the_named_route(pc):
    pc.sandbox.faults.script("partner_center", "referrals_list", "429:7")
    response = pc.list(top="1")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert pc.list(top="1").status_code == 200


def test_an_unsupported_method_is_405(pc):
    raw = pc.seed_new()
    response = pc.call("DELETE", f"/referrals/{raw['id']}")
    assert error_of(response, 405)["code"] == "invalidRequest"


# -- expiry (its own sandbox: the clock jumps 15 days) ----------------------------------------


@pytest.fixture(scope="module")
def private_sandbox() -> Iterator[Sandbox]:
    with (
        tempfile.TemporaryDirectory() as state,
        Sandbox(state, host=random_loopback_host(), user_realm_port=None) as running,
    ):
        yield running


def test_new_referrals_expire_after_14_days_of_sandbox_time(private_sandbox):
    with ca_session_for(str(private_sandbox.ca_path)) as session:
        pc = PartnerCenter(private_sandbox, session)
        raw = pc.seed_new()
        accepted = pc.seed_new()
        assert pc.patch(accepted["id"], ACCEPT).status_code == 204
        private_sandbox.clock.advance(timedelta(days=15))
        expired = pc.call("GET", f"/referrals/{raw['id']}").json()
        assert (expired["status"], expired["substatus"]) == ("Closed", "Expired")
        assert expired["closedDateTime"] == expired["updatedDateTime"]
        assert expired["eTag"] != raw["eTag"]
        validate_referral(expired)
        still = pc.call("GET", f"/referrals/{accepted['id']}").json()
        assert still["status"] == "Active"
        late = pc.patch(raw["id"], ACCEPT)
        assert "terminal state" in error_of(late, 400)["message"]
