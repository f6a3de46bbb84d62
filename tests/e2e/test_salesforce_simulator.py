"""The Salesforce simulator over real HTTPS: the request/response shapes of crm-apis §A.

Plain ``requests`` checks the wire; real simple-salesforce 1.12.10 checks that the library the
adapter uses gets along with it. Tests share the session's sandbox, so each one uses its own
external ids (``uuid``) and filters on them.
"""

from __future__ import annotations

import stat
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, format_external_id
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
)

from sandbox.app import Sandbox
from sandbox.salesforce import EXTERNAL_ID_FIELD, PARTNER_FIELDS, SALES_USER_ID

pytestmark = pytest.mark.e2e

EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
EXT = EXTERNAL_ID_FIELD


class SF:
    """A thin client: the org's URLs and a fresh client-credentials session."""

    def __init__(self, sandbox: Sandbox, session: requests.Session) -> None:
        self.sandbox = sandbox
        self.sim = sandbox.salesforce
        self.info = sandbox.info["salesforce"]
        self.session = session
        self.base = f"{self.info['instance_url']}/services/data/v62.0"
        self.token = self.login().json()["access_token"]

    def login(self, **form: str) -> requests.Response:
        data = {"grant_type": "client_credentials", **form}
        auth = None if "client_id" in form else (self.info["client_id"], self.info["client_secret"])
        return self.session.post(self.info["token_url"], data=data, auth=auth, timeout=10)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        url = path if path.startswith("https://") else f"{self.base}{path}"
        return self.session.request(method, url, headers=headers, timeout=30, **kwargs)

    def upsert_many(self, records: list[dict[str, Any]], **body: Any) -> requests.Response:
        payload = {"allOrNone": False, **body, "records": records}
        return self.call("PATCH", f"/composite/sobjects/Opportunity/{EXT}", json=payload)

    def query(self, soql: str, **headers: str) -> requests.Response:
        return self.call("GET", "/query", params={"q": soql}, headers=headers)


@pytest.fixture
def sf(sandbox, ca_session):
    return SF(sandbox, ca_session)


def ref() -> str:
    return f"R-{uuid.uuid4().hex[:12]}"


def opp(ref_id: str | None = None, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "attributes": {"type": "Opportunity"},
        "Name": "Contoso referral",
        "StageName": "Prospecting",
        "CloseDate": "2026-12-31",
        **fields,
    }
    if ref_id is not None:
        record[EXT] = ref_id
    return record


# -- sandbox.json and the token endpoint ---------------------------------------------------------


def test_sandbox_json_describes_the_org(sandbox):
    info = sandbox.info["salesforce"]
    assert info["instance_url"] == sandbox.servers["salesforce"].url
    assert info["token_url"] == f"{info['instance_url']}/services/oauth2/token"
    assert info["api_version"] == "62.0"
    assert info["external_id_field"] == "Partner_Center_Referral_Id__c"
    key = Path(info["private_key_path"])
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert {"client_id", "client_secret", "username"} <= set(info)


def test_client_credentials_token_has_the_documented_shape(sf):
    response = sf.login()
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {
        "access_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
    }
    assert body["access_token"].startswith("00D")
    assert "!" in body["access_token"]
    assert body["instance_url"] == sf.info["instance_url"]
    assert body["token_type"] == "Bearer"
    assert body["id"].startswith("https://login.salesforce.com/id/00D")


def test_client_credentials_also_work_as_form_fields(sf):
    response = sf.login(client_id=sf.info["client_id"], client_secret=sf.info["client_secret"])
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_id": "nobody", "client_secret": "x"}, "invalid_client_id"),
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_bad_token_requests_get_oauth_errors(sf, form, error):
    if form.get("client_secret") == "wrong":
        form = {"client_id": sf.info["client_id"], **form}
    response = sf.login(**form)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert "error_description" in response.json()


def assertion(sf: SF, **claims: Any) -> str:
    payload = {
        "iss": sf.info["client_id"],
        "sub": sf.info["username"],
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 180,
        **claims,
    }
    key = Path(sf.info["private_key_path"]).read_bytes()
    return jwt.encode(payload, key, algorithm="RS256")


def jwt_login(sf: SF, token: str) -> requests.Response:
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": token}
    return sf.session.post(sf.info["token_url"], data=data, timeout=10)


@pytest.mark.parametrize(
    "aud", ["https://login.salesforce.com", "https://test.salesforce.com", "INSTANCE"]
)
def test_jwt_bearer_with_the_sandbox_key_gets_a_session(sf, aud):
    aud = sf.info["instance_url"] if aud == "INSTANCE" else aud
    response = jwt_login(sf, assertion(sf, aud=aud))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    sf.token = token
    assert sf.call("GET", "/limits").status_code == 200


def test_jwt_bearer_refuses_bad_assertions(sf):
    other_key = jwt.encode(
        {"iss": sf.info["client_id"], "sub": sf.info["username"], "aud": "x", "exp": 9e9},
        _other_private_key(),
        algorithm="RS256",
    )
    cases = [
        assertion(sf, aud="https://evil.example"),
        assertion(sf, sub="someone@else"),
        assertion(sf, exp=int(time.time()) - 60),
        other_key,
        "not-a-jwt",
    ]
    for token in cases:
        response = jwt_login(sf, token)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
    wrong_iss = jwt_login(sf, assertion(sf, iss="someone-else"))
    assert wrong_iss.json()["error"] == "invalid_client_id"


def _other_private_key() -> bytes:
    from sandbox.salesforce import generate_key_and_certificate  # noqa: PLC0415

    return generate_key_and_certificate()[0]


# -- sessions and limits ---------------------------------------------------------------------------


def test_missing_unknown_and_expired_sessions_get_401_invalid_session_id(sf):
    no_header = sf.session.get(f"{sf.base}/limits", timeout=10)
    assert (no_header.status_code, no_header.json()) == (401, EXPIRED)
    sf_bad = sf.call("GET", "/limits", headers={"Authorization": "Bearer 00Dnope!nope"})
    assert (sf_bad.status_code, sf_bad.json()) == (401, EXPIRED)
    assert sf.call("GET", "/limits").status_code == 200
    sf.sim.expire_tokens()
    expired = sf.call("GET", "/limits")
    assert (expired.status_code, expired.json()) == (401, EXPIRED)


def test_sessions_expire_after_their_lifetime(sf):
    sf.sim.tokens.lifetime_s = 0.5
    sf.token = sf.login().json()["access_token"]
    assert sf.call("GET", "/limits").status_code == 200
    time.sleep(0.6)
    assert sf.call("GET", "/limits").status_code == 401


def test_every_reply_says_the_api_usage_and_the_quota_is_enforced(sf):
    first = sf.call("GET", "/limits")
    used, quota = map(int, first.headers["Sforce-Limit-Info"].removeprefix("api-usage=").split("/"))
    assert first.json()["DailyApiRequests"] == {"Max": quota, "Remaining": quota - used}
    error = sf.call("GET", "/sobjects/Nope/describe")
    assert error.status_code == 404
    assert error.headers["Sforce-Limit-Info"] == f"api-usage={used + 1}/{quota}"
    sf.sim.set_api_usage(quota)
    refused = sf.call("GET", "/limits")
    assert refused.status_code == 403
    assert refused.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert refused.headers["Sforce-Limit-Info"] == f"api-usage={quota}/{quota}"


def test_unknown_paths_and_methods_answer_error_arrays(sf):
    missing = sf.call("GET", "/nothing/here")
    assert missing.status_code == 404
    assert missing.json()[0]["errorCode"] == "NOT_FOUND"
    wrong = sf.call("PUT", "/query")
    assert wrong.status_code == 405
    assert wrong.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"
    future = sf.call("GET", f"{sf.info['instance_url']}/services/data/v99.0/limits")
    assert future.status_code == 404


# -- describe --------------------------------------------------------------------------------------


def field_map(sf: SF, sobject: str) -> dict[str, dict[str, Any]]:
    response = sf.call("GET", f"/sobjects/{sobject}/describe")
    assert response.status_code == 200
    return {f["name"]: f for f in response.json()["fields"]}


def test_describe_opportunity_shows_types_lengths_and_flags(sf):
    fields = field_map(sf, "Opportunity")
    assert {f.name for f in PARTNER_FIELDS} <= set(fields)
    name = fields["Name"]
    assert (name["type"], name["length"], name["nillable"]) == ("string", 120, False)
    stage = fields["StageName"]
    assert stage["restrictedPicklist"] is True
    assert [v["value"] for v in stage["picklistValues"]][-2:] == ["Closed Won", "Closed Lost"]
    ext = fields[EXT]
    assert (ext["externalId"], ext["unique"], ext["caseSensitive"]) == (True, True, False)
    assert fields["IsWon"]["createable"] is False
    assert fields["IsWon"]["updateable"] is False
    assert fields["CloseDate"]["type"] == "date"
    assert fields["Amount"]["type"] == "currency"
    assert fields["Partner_Center_Hot__c"]["type"] == "boolean"
    assert fields["Partner_Center_Expires__c"]["type"] == "datetime"
    currencies = [v["value"] for v in fields["CurrencyIsoCode"]["picklistValues"]]
    assert currencies[:5] == ["USD", "EUR", "BRL", "GBP", "JPY"]


@pytest.mark.parametrize(
    ("sobject", "prefix"),
    [("Account", "001"), ("Contact", "003"), ("OpportunityContactRole", "00K")],
)
def test_describe_other_objects(sf, sobject, prefix):
    response = sf.call("GET", f"/sobjects/{sobject}/describe")
    assert response.json()["keyPrefix"] == prefix


def test_describe_reflects_admin_changes(sandbox, sf):
    org = sandbox.salesforce.org
    org.remove_picklist_value("Opportunity", "Loss_Reason__c", "Timing")
    org.remove_field("Opportunity", "Partner_Center_Link__c")
    fields = field_map(sf, "Opportunity")
    assert "Partner_Center_Link__c" not in fields
    assert "Timing" not in [v["value"] for v in fields["Loss_Reason__c"]["picklistValues"]]
    sandbox.reset()
    assert "Partner_Center_Link__c" in field_map(sf, "Opportunity")


# -- single records --------------------------------------------------------------------------------


def test_create_get_update(sf):
    created = sf.call("POST", "/sobjects/Opportunity", json=opp(ref(), Amount=1000))
    assert created.status_code == 201
    body = created.json()
    assert body == {"id": body["id"], "success": True, "errors": []}
    assert body["id"].startswith("006")
    assert len(body["id"]) == 18
    got = sf.call("GET", f"/sobjects/Opportunity/{body['id']}").json()
    assert got["attributes"]["type"] == "Opportunity"
    assert got["Amount"] == 1000.0
    assert got["CloseDate"] == "2026-12-31"
    assert got["SystemModstamp"].endswith("+0000")
    sf.sandbox.clock.advance(timedelta(seconds=5))
    updated = sf.call("PATCH", f"/sobjects/Opportunity/{body['id']}", json={"Amount": 2000.5})
    assert (updated.status_code, updated.content) == (204, b"")
    again = sf.call(
        "GET", f"/sobjects/Opportunity/{body['id']}", params={"fields": "Amount,SystemModstamp"}
    )
    assert list(again.json()) == ["attributes", "Amount", "SystemModstamp"]
    assert again.json()["Amount"] == 2000.5
    assert again.json()["SystemModstamp"] > got["SystemModstamp"]


def test_write_errors_are_arrays_with_codes_and_fields(sf):
    response = sf.call("POST", "/sobjects/Opportunity", json={"Amount": 5})
    assert response.status_code == 400
    [error] = response.json()
    assert error["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert set(error["fields"]) == {"Name", "StageName", "CloseDate"}
    readonly = sf.call("POST", "/sobjects/Opportunity", json=opp(IsWon=True))
    assert readonly.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    long_name = sf.call("POST", "/sobjects/Opportunity", json=opp(Name="n" * 121))
    assert long_name.json()[0]["errorCode"] == "STRING_TOO_LONG"
    unknown = sf.call("POST", "/sobjects/Opportunity", json=opp(Bogus__c=1))
    assert unknown.json()[0]["errorCode"] == "INVALID_FIELD"
    missing = sf.call("GET", "/sobjects/Opportunity/006000000000000AAA")
    assert (missing.status_code, missing.json()[0]["errorCode"]) == (404, "NOT_FOUND")


def test_upsert_answers_201_then_200_with_a_body(sf):
    ref_id = ref()
    url = f"/sobjects/Opportunity/{EXT}/{ref_id}"
    fields = {k: v for k, v in opp().items() if k != "attributes"}
    created = sf.call("PATCH", url, json=fields)
    assert created.status_code == 201
    body = created.json()
    assert body == {"id": body["id"], "success": True, "errors": [], "created": True}
    updated = sf.call("PATCH", f"/sobjects/Opportunity/{EXT}/{ref_id.lower()}", json={"Amount": 9})
    assert updated.status_code == 200
    assert updated.json() == {"id": body["id"], "success": True, "errors": [], "created": False}
    by_ext = sf.call("GET", url)
    assert by_ext.json()["Id"] == body["id"]


def test_upsert_before_api_46_answers_204_on_update(sf):
    ref_id = ref()
    fields = {k: v for k, v in opp().items() if k != "attributes"}
    url = f"{sf.info['instance_url']}/services/data/v45.0/sobjects/Opportunity/{EXT}/{ref_id}"
    assert sf.call("PATCH", url, json=fields).status_code == 201
    assert sf.call("PATCH", url, json={"Amount": 1}).status_code == 204


def test_upsert_refuses_the_external_id_in_the_body_and_update_only_misses(sf):
    ref_id = ref()
    url = f"/sobjects/Opportunity/{EXT}/{ref_id}"
    in_body = sf.call("PATCH", url, json={EXT: ref_id, "Name": "x"})
    assert in_body.status_code == 400
    assert in_body.json()[0]["errorCode"] == "INVALID_FIELD"
    update_only = sf.call("PATCH", url, params={"updateOnly": "true"}, json={"Name": "x"})
    assert update_only.status_code == 404


def test_upsert_of_a_duplicated_external_id_answers_300_with_the_matches(sandbox, sf):
    org = sandbox.salesforce.org
    ref_id = ref()
    org.set_unique("Opportunity", EXT, False)
    try:
        ids = [
            sandbox.salesforce.store.create("Opportunity", {**opp(ref_id), EXT: value})
            for value in (ref_id, ref_id.upper())
        ]
        response = sf.call("PATCH", f"/sobjects/Opportunity/{EXT}/{ref_id}", json={"Amount": 1})
    finally:
        org.set_unique("Opportunity", EXT, True)
    assert response.status_code == 300
    assert sorted(response.json()) == sorted(
        f"/services/data/v62.0/sobjects/Opportunity/{i}" for i in ids
    )


# -- sObject Collections ---------------------------------------------------------------------------


def test_collection_upsert_returns_results_in_order_with_created(sf):
    existing = ref()
    assert sf.upsert_many([opp(existing)]).json()[0]["created"] is True
    new = [ref(), ref()]
    response = sf.upsert_many([opp(new[0]), opp(existing, Amount=5), opp(new[1])])
    assert response.status_code == 200
    results = response.json()
    assert [(r["success"], r["created"], r["errors"]) for r in results] == [
        (True, True, []),
        (True, False, []),
        (True, True, []),
    ]
    stored = {r[EXT]: r["Id"] for r in sf.sim.store.records("Opportunity") if r[EXT] in new}
    assert [results[0]["id"], results[2]["id"]] == [stored[new[0]], stored[new[1]]]


def test_collection_failures_are_per_record_with_status_codes(sf):
    good, bad = ref(), ref()
    results = sf.upsert_many([opp(good), opp(bad, StageName="Maybe")]).json()
    assert results[0]["success"] is True
    assert results[1] == {
        "id": None,
        "success": False,
        "errors": [
            {
                "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                "message": "Stage: bad value for restricted picklist field: Maybe",
                "fields": ["StageName"],
            }
        ],
        "created": False,
    }


def test_all_or_none_rolls_the_whole_batch_back(sf):
    good, bad = ref(), ref()
    results = sf.upsert_many([opp(good), opp(bad, CloseDate=None)], allOrNone=True).json()
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert not any(r["success"] for r in results)
    refs = {r[EXT] for r in sf.sim.store.records("Opportunity")}
    assert good not in refs
    assert bad not in refs


def test_the_same_external_id_twice_in_one_request_fails_both(sf):
    ref_id = ref()
    results = sf.upsert_many([opp(ref_id), opp(ref_id.lower())]).json()
    for result in results:
        assert result["success"] is False
        assert result["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
        assert "Duplicate external id specified" in result["errors"][0]["message"]


def test_collections_take_at_most_200_records(sf):
    response = sf.upsert_many([opp(ref()) for _ in range(201)])
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_collection_records_need_attributes_of_the_url_type(sf):
    no_type = {k: v for k, v in opp(ref()).items() if k != "attributes"}
    assert sf.upsert_many([no_type]).status_code == 400
    assert sf.upsert_many([{**opp(ref()), "attributes": {"type": "Account"}}]).status_code == 400
    not_ext = sf.call("PATCH", "/composite/sobjects/Opportunity/Name", json={"records": []})
    assert not_ext.status_code == 400


def test_a_thousand_upserts_cost_five_collection_calls(sandbox, sf):
    records = [opp(ref()) for _ in range(1000)]
    for start in range(0, 1000, 200):
        response = sf.upsert_many(records[start : start + 200])
        assert all(r["success"] for r in response.json())
    assert sandbox.log.count(service="salesforce", route="collections_upsert") == 5


def create_many(sf: SF, records: list[dict[str, Any]], **body: Any) -> requests.Response:
    return sf.call(
        "POST", "/composite/sobjects", json={"allOrNone": False, **body, "records": records}
    )


def test_collection_create_takes_mixed_objects_and_answers_in_order(sf):
    account = {"attributes": {"type": "Account"}, "Name": "Fabrikam", "BillingPostalCode": "80331"}
    contact = {"attributes": {"type": "Contact"}, "LastName": "Ng", "Email": "ng@fabrikam.example"}
    response = create_many(sf, [account, contact, opp(ref())])

    assert response.status_code == 200
    results = response.json()
    assert [(r["success"], r["errors"], r["id"][:3]) for r in results] == [
        (True, [], "001"),
        (True, [], "003"),
        (True, [], "006"),
    ]
    assert "created" not in results[0]
    assert sf.sim.store.get("Account", results[0]["id"])["Name"] == "Fabrikam"


def test_collection_create_fails_a_refused_record_alone_or_rolls_back_all_or_none(sf):
    good = {"attributes": {"type": "Account"}, "Name": f"Good {ref()}"}
    bad = {"attributes": {"type": "Contact"}, "FirstName": "No last name"}

    results = create_many(sf, [good, bad]).json()
    assert results[0]["success"] is True
    assert results[1]["success"] is False
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"

    again = {"attributes": {"type": "Account"}, "Name": f"Rolled {ref()}"}
    rolled = create_many(sf, [again, bad], allOrNone=True).json()
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert again["Name"] not in {a["Name"] for a in sf.sim.store.records("Account")}


def test_collection_create_refuses_ids_unknown_types_and_more_than_200(sf):
    with_id = {"attributes": {"type": "Account"}, "Name": "X", "Id": "001000000000001AAA"}
    assert create_many(sf, [with_id]).json()[0]["errorCode"] == "INVALID_FIELD"
    unknown = {"attributes": {"type": "Lead__x"}, "Name": "X"}
    assert create_many(sf, [unknown]).json()[0]["errorCode"] == "INVALID_TYPE"
    too_many = create_many(sf, [{"attributes": {"type": "Account"}, "Name": "X"}] * 201)
    assert too_many.status_code == 400
    assert too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# -- queries ---------------------------------------------------------------------------------------


def test_query_pages_through_relative_next_records_urls(sf):
    marker = ref()
    records = [opp(f"{marker}-{i:03d}") for i in range(450)]
    for start in range(0, 450, 200):
        sf.upsert_many(records[start : start + 200])
    soql = f"SELECT Id, {EXT} FROM Opportunity WHERE {EXT} LIKE '{marker}%' ORDER BY {EXT}"  # noqa: S608 - SOQL with test-made ids, not SQL
    page = sf.query(soql, **{"Sforce-Query-Options": "batchSize=200"}).json()
    seen = []
    sizes = []
    while True:
        assert page["totalSize"] == 450
        seen += [r[EXT] for r in page["records"]]
        sizes.append(len(page["records"]))
        if page["done"]:
            assert "nextRecordsUrl" not in page
            break
        assert page["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
        page = sf.call("GET", f"{sf.info['instance_url']}{page['nextRecordsUrl']}").json()
    assert sizes == [200, 200, 50]
    assert seen == sorted(r[EXT] for r in records)
    assert sf.sandbox.log.count(service="salesforce", route="query_more") == 2


def test_batch_size_has_a_floor_of_200_and_a_default_of_2000(sf):
    marker = ref()
    sf.upsert_many([opp(f"{marker}-{i}") for i in range(200)])
    sf.upsert_many([opp(f"{marker}-x{i}") for i in range(50)])
    soql = f"SELECT Id FROM Opportunity WHERE {EXT} LIKE '{marker}%'"  # noqa: S608 - SOQL with test-made ids, not SQL
    assert len(sf.query(soql, **{"Sforce-Query-Options": "batchSize=10"}).json()["records"]) == 200
    assert sf.query(soql).json()["done"] is True


def test_a_bad_query_locator_is_refused(sf):
    response = sf.call("GET", "/query/01gXXXXXXXXXXXXXXX-2000")
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_malformed_queries_answer_400_arrays(sf):
    response = sf.query("SELECT Id FROM")
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert sf.query("SELECT Nope FROM Opportunity").json()[0]["errorCode"] == "INVALID_FIELD"


def test_query_all_sees_deleted_records(sf):
    ref_id = ref()
    record_id = sf.upsert_many([opp(ref_id)]).json()[0]["id"]
    assert sf.call("DELETE", f"/sobjects/Opportunity/{record_id}").status_code == 204
    soql = f"SELECT Id, IsDeleted FROM Opportunity WHERE {EXT} = '{ref_id}'"  # noqa: S608 - SOQL with test-made ids, not SQL
    assert sf.query(soql).json()["totalSize"] == 0
    everything = sf.call("GET", "/queryAll", params={"q": soql}).json()
    assert everything["records"][0]["IsDeleted"] is True


def test_relationship_fields_come_back_nested(sf):
    account = sf.call("POST", "/sobjects/Account", json={"Name": "Northwind"}).json()["id"]
    ref_id = ref()
    sf.upsert_many([opp(ref_id, AccountId=account)])
    soql = f"SELECT Name, Account.Name FROM Opportunity WHERE {EXT} = '{ref_id}'"  # noqa: S608 - SOQL with test-made ids, not SQL
    [record] = sf.query(soql).json()["records"]
    assert record["Account"]["Name"] == "Northwind"
    assert record["Account"]["attributes"]["type"] == "Account"


def test_updated_lists_ids_changed_in_the_window(sf):
    clock = sf.sandbox.clock
    start = clock.now() - timedelta(minutes=1)
    record_id = sf.upsert_many([opp(ref())]).json()[0]["id"]
    clock.advance(timedelta(minutes=2))
    end = clock.now()
    params = {"start": start.isoformat(), "end": end.isoformat()}
    response = sf.call("GET", "/sobjects/Opportunity/updated/", params=params)
    assert response.status_code == 200
    body = response.json()
    assert record_id in body["ids"]
    assert body["latestDateCovered"].endswith(":00.000+0000")
    too_old = {"start": (end - timedelta(days=31)).isoformat(), "end": end.isoformat()}
    refused = sf.call("GET", "/sobjects/Opportunity/updated/", params=too_old)
    assert refused.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"


# -- faults and the request log --------------------------------------------------------------------


def test_injected_faults_look_like_salesforce_errors(sandbox, sf):
    sandbox.faults.script("salesforce", "collections_upsert", "503:3", 500)
    first = sf.upsert_many([opp(ref())])
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "3"
    assert first.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sf.upsert_many([opp(ref())]).json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    assert sf.upsert_many([opp(ref())]).status_code == 200
    statuses = [
        e.status for e in sandbox.log.entries(service="salesforce", route="collections_upsert")
    ]
    assert statuses == [503, 500, 200]


def test_routes_have_stable_names_in_the_request_log(sandbox, sf):
    ref_id = ref()
    sf.call("GET", "/sobjects/Opportunity/describe")
    record_id = sf.upsert_many([opp(ref_id)]).json()[0]["id"]
    sf.call("GET", f"/sobjects/Opportunity/{record_id}")
    sf.call("PATCH", f"/sobjects/Opportunity/{record_id}", json={"Amount": 1})
    sf.call("PATCH", f"/sobjects/Opportunity/{EXT}/{ref_id}", json={"Amount": 2})
    sf.call("POST", "/sobjects/Account", json={"Name": "A"})
    sf.query("SELECT Id FROM Opportunity LIMIT 1")
    sf.call("GET", "/queryAll", params={"q": "SELECT Id FROM Opportunity LIMIT 1"})
    sf.call("GET", "/limits")
    routes = [e.route for e in sandbox.log.entries(service="salesforce")]
    assert routes == [
        "token",
        "describe",
        "collections_upsert",
        "sobject_get",
        "sobject_update",
        "sobject_upsert",
        "sobject_create",
        "query",
        "query_all",
        "limits",
    ]


def test_salesperson_edits_are_seen_by_the_api(sandbox, sf):
    ref_id = ref()
    record_id = sf.upsert_many([opp(ref_id)]).json()[0]["id"]
    sandbox.salesforce.salesperson.accept(record_id, 42_000, "2026-09-30")
    soql = (
        "SELECT StageName, Amount, CloseDate, IsClosed, LastModifiedById FROM Opportunity "  # noqa: S608 - SOQL with test-made ids, not SQL
        f"WHERE {EXT} = '{ref_id}'"
    )
    [record] = sf.query(soql).json()["records"]
    assert (record["StageName"], record["Amount"], record["CloseDate"]) == (
        "Qualification",
        42000.0,
        "2026-09-30",
    )
    assert record["LastModifiedById"] == SALES_USER_ID
    sandbox.salesforce.salesperson.win(record_id)
    [record] = sf.query(soql.replace("IsClosed", "IsWon")).json()["records"]
    assert record["IsWon"] is True


# -- simple-salesforce -----------------------------------------------------------------------------


@pytest.fixture
def simple_sf(sf):
    return Salesforce(
        session_id=sf.token,
        instance_url=sf.info["instance_url"],
        version="62.0",
        session=sf.session,
    )


def test_simple_salesforce_upserts_queries_and_describes(sf, simple_sf):
    ref_id = ref()
    fields = {k: v for k, v in opp().items() if k != "attributes"}
    assert simple_sf.Opportunity.upsert(format_external_id(EXT, ref_id), fields) == 201
    assert simple_sf.Opportunity.upsert(format_external_id(EXT, ref_id), {"Amount": 3}) == 200
    record = simple_sf.Opportunity.get_by_custom_id(EXT, ref_id)
    assert record["Amount"] == 3.0
    described = simple_sf.Opportunity.describe()
    assert any(f["name"] == EXT and f["externalId"] for f in described["fields"])
    results = simple_sf.restful(
        f"composite/sobjects/Opportunity/{EXT}",
        method="PATCH",
        json={"allOrNone": False, "records": [opp(ref()), opp(ref_id, Amount=4)]},
    )
    assert [r["created"] for r in results] == [True, False]
    assert simple_sf.api_usage["api-usage"].total == sf.sim.api_usage[1]


def test_simple_salesforce_query_all_follows_next_records_urls(sf, simple_sf):
    marker = ref()
    sf.upsert_many([opp(f"{marker}-{i:03d}") for i in range(200)])
    sf.upsert_many([opp(f"{marker}-{i:03d}") for i in range(200, 250)])
    result = simple_sf.query_all(
        f"SELECT Id FROM Opportunity WHERE {EXT} LIKE '{marker}%'",  # noqa: S608 - SOQL with test-made ids, not SQL
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    assert result["totalSize"] == 250
    assert len(result["records"]) == 250
    assert sf.sandbox.log.count(service="salesforce", route="query_more") == 1


def test_simple_salesforce_updated_uses_the_getupdated_resource(sf, simple_sf):
    start = sf.sandbox.clock.now() - timedelta(minutes=1)
    record_id = sf.upsert_many([opp(ref())]).json()[0]["id"]
    sf.sandbox.clock.advance(timedelta(minutes=2))
    result = simple_sf.Opportunity.updated(start, sf.sandbox.clock.now())
    assert record_id in result["ids"]


def test_simple_salesforce_raises_on_401_403_and_300(sandbox, sf, simple_sf):
    sandbox.salesforce.org.set_unique("Opportunity", EXT, False)
    ref_id = ref()
    try:
        for value in (ref_id, ref_id.upper()):
            sandbox.salesforce.store.create("Opportunity", {**opp(), EXT: value})
        with pytest.raises(SalesforceMoreThanOneRecord):
            simple_sf.Opportunity.upsert(format_external_id(EXT, ref_id), {"Amount": 1})
    finally:
        sandbox.salesforce.org.set_unique("Opportunity", EXT, True)
    sandbox.salesforce.set_api_usage(sandbox.salesforce.api_usage[1])
    with pytest.raises(SalesforceRefusedRequest):
        simple_sf.query("SELECT Id FROM Opportunity LIMIT 1")
    sandbox.salesforce.set_api_usage(0)
    sandbox.salesforce.expire_tokens()
    with pytest.raises(SalesforceExpiredSession):
        simple_sf.query("SELECT Id FROM Opportunity LIMIT 1")


class _Redirect(HTTPAdapter):
    """Sends ``https://<anything>.salesforce.com/...`` to the simulator instead."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        assert request.url is not None
        path = request.url.split(".salesforce.com", 1)[1]
        request.url = f"{self.target}{path}"
        return super().send(request, **kwargs)


@pytest.fixture
def login_session(sf):
    sf.session.mount("https://login.salesforce.com", _Redirect(sf.info["instance_url"]))
    sf.session.mount("https://sandbox.my.salesforce.com", _Redirect(sf.info["instance_url"]))
    return sf.session


def test_simple_salesforce_jwt_login(sf, login_session):
    client = Salesforce(
        username=sf.info["username"],
        consumer_key=sf.info["client_id"],
        privatekey_file=sf.info["private_key_path"],
        domain="login",
        version="62.0",
        session=login_session,
    )
    assert client.session_id.startswith("00D")
    assert client.query("SELECT Id FROM Opportunity LIMIT 1")["done"] is True


def test_simple_salesforce_client_credentials_login(sf, login_session):
    client = Salesforce(
        consumer_key=sf.info["client_id"],
        consumer_secret=sf.info["client_secret"],
        domain="sandbox.my",
        version="62.0",
        session=login_session,
    )
    assert client.limits()["DailyApiRequests"]["Max"] == sf.sim.api_usage[1]


def test_simple_salesforce_with_credentials_logs_in_again_after_401(sf, login_session):
    client = Salesforce(
        consumer_key=sf.info["client_id"],
        consumer_secret=sf.info["client_secret"],
        domain="sandbox.my",
        version="62.0",
        session=login_session,
    )
    old = client.session_id
    sf.sim.expire_tokens()
    assert client.query("SELECT Id FROM Opportunity LIMIT 1")["done"] is True
    assert client.session_id != old


def test_time_is_utc_everywhere(sf):
    record_id = sf.upsert_many([opp(ref(), Partner_Center_Expires__c="2026-11-22T12:00:00+02:00")])
    [result] = record_id.json()
    got = sf.call("GET", f"/sobjects/Opportunity/{result['id']}").json()
    assert got["Partner_Center_Expires__c"] == "2026-11-22T10:00:00.000+0000"
    assert datetime.strptime(got["CreatedDate"], "%Y-%m-%dT%H:%M:%S.%f%z").tzinfo == UTC
