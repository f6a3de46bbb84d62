"""The Dataverse simulator over real HTTPS: the request/response shapes of crm-apis §C.

Plain ``requests`` checks the wire; real msal gets the token once. Tests share the session's
sandbox, so each one uses its own referral ids (``uuid``) and filters on them.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from datetime import timedelta
from typing import Any

import msal
import pytest
import requests

from sandbox.app import Sandbox
from sandbox.dynamics import ALTERNATE_KEY, ALTERNATE_KEY_COLUMN, SALES_USER_ID, Limits

pytestmark = pytest.mark.e2e

KEY = ALTERNATE_KEY_COLUMN
CRLF = "\r\n"


class DV:
    """A thin client: the environment's URLs and a fresh client-credentials token."""

    def __init__(self, sandbox: Sandbox, session: requests.Session) -> None:
        self.sandbox = sandbox
        self.sim = sandbox.dataverse
        self.info = sandbox.info["dataverse"]
        self.entra = sandbox.info["entra"]
        self.session = session
        self.base = self.info["base_url"]
        self.token = self.fetch_token(self.info["scope"])

    def fetch_token(self, scope: str, app: str = "dataverse") -> str:
        creds = self.entra[app]
        response = self.session.post(
            f"{self.entra['authority']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
                "scope": scope,
            },
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            **kwargs.pop("headers", {}),
        }
        url = path if path.startswith("https://") else f"{self.base}/{path}"
        return self.session.request(method, url, headers=headers, timeout=30, **kwargs)

    def upsert(self, ref_id: str, body: dict[str, Any], **headers: str) -> requests.Response:
        return self.call("PATCH", f"opportunities({KEY}='{ref_id}')", json=body, headers=headers)

    def opportunity(self, ref_id: str) -> dict[str, Any]:
        response = self.call("GET", f"opportunities({KEY}='{ref_id}')")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def account(self, name: str = "Contoso") -> str:
        response = self.call("POST", "accounts", json={"name": name})
        assert response.status_code == 204, response.text
        return entity_id(response)

    def currency(self, code: str) -> str:
        response = self.call(
            "GET", "transactioncurrencies", params={"$filter": f"isocurrencycode eq '{code}'"}
        )
        return str(response.json()["value"][0]["transactioncurrencyid"])

    def batch(self, body: str, boundary: str, **headers: str) -> requests.Response:
        return self.call(
            "POST",
            "$batch",
            data=body.encode(),
            headers={"Content-Type": f'multipart/mixed; boundary="{boundary}"', **headers},
        )


@pytest.fixture
def dv(sandbox, ca_session):
    return DV(sandbox, ca_session)


def ref() -> str:
    return f"R-{uuid.uuid4().hex[:12]}"


def entity_id(response: requests.Response) -> str:
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def opp(**fields: Any) -> dict[str, Any]:
    return {"name": "Contoso referral", "statuscode": 2, **fields}


def error(response: requests.Response) -> tuple[str, str]:
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]["code"], body["error"]["message"]


# -- sandbox.json, tokens --------------------------------------------------------------------


def test_sandbox_json_describes_the_environment(sandbox):
    info = sandbox.info["dataverse"]
    assert info["org_url"] == sandbox.servers["dataverse"].url
    assert info["base_url"] == f"{info['org_url']}/api/data/v9.2"
    assert info["scope"] == sandbox.info["entra"]["dataverse"]["scope"]
    assert info["resource"] == sandbox.info["entra"]["dataverse"]["resource"]
    assert info["alternate_key"] == ALTERNATE_KEY


def test_msal_client_credentials_token_is_accepted(dv):
    creds = dv.entra["dataverse"]
    app = msal.ConfidentialClientApplication(
        creds["client_id"],
        client_credential=creds["client_secret"],
        authority=dv.entra["authority"],
        instance_discovery=False,
        http_client=dv.session,
    )
    result = app.acquire_token_for_client(scopes=[dv.info["scope"]])
    assert "access_token" in result, result
    dv.token = result["access_token"]
    response = dv.call("GET", "WhoAmI")
    assert response.status_code == 200
    assert set(response.json()) >= {"UserId", "BusinessUnitId", "OrganizationId"}


def test_a_request_without_a_token_is_401_with_a_bearer_challenge(dv):
    response = dv.session.get(f"{dv.base}/opportunities", timeout=10)
    assert response.status_code == 401
    assert response.content == b""
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization_uri=")
    assert f"resource_id={dv.info['resource']}/" in challenge


def test_an_expired_token_is_401_expired_auth_ticket(dv, sandbox):
    sandbox.tokens.expire_all()
    response = dv.call("GET", "opportunities")
    assert response.status_code == 401
    assert error(response)[0] == "0x8004A101"
    assert "error=invalid_token" in response.headers["WWW-Authenticate"]


def test_a_token_for_another_resource_is_401_invalid_auth_ticket(dv):
    dv.token = dv.fetch_token(dv.entra["partner_center"]["scope"], app="partner_center")
    response = dv.call("GET", "opportunities")
    assert response.status_code == 401
    assert error(response)[0] == "0x8004A100"


# -- upsert by alternate key ---------------------------------------------------------------


def test_upsert_by_alternate_key_answers_204_for_create_and_update(dv):
    ref_id = ref()
    created = dv.upsert(ref_id, opp())
    updated = dv.upsert(ref_id, {"name": "Renamed"})
    assert (created.status_code, updated.status_code) == (204, 204)
    assert created.content == b""
    assert updated.content == b""
    assert created.headers["OData-EntityId"] == updated.headers["OData-EntityId"]
    listed = dv.call("GET", "opportunities", params={"$filter": f"{KEY} eq '{ref_id}'"})
    assert [r["name"] for r in listed.json()["value"]] == ["Renamed"]


def test_upsert_with_return_representation_answers_201_then_200(dv):
    ref_id = ref()
    prefer = {"Prefer": "return=representation"}
    first = dv.call(
        "PATCH", f"opportunities({KEY}='{ref_id}')?$select=name", json=opp(), headers=prefer
    )
    second = dv.call(
        "PATCH", f"opportunities({KEY}='{ref_id}')?$select=name", json=opp(), headers=prefer
    )
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.headers["Preference-Applied"] == "return=representation"
    body = second.json()
    assert set(body) == {"@odata.context", "@odata.etag", "name", "opportunityid"}
    assert body["@odata.context"].endswith("$metadata#opportunities(name)/$entity")
    assert body["@odata.etag"] != first.json()["@odata.etag"]


def test_if_none_match_star_on_an_existing_row_is_412(dv):
    ref_id = ref()
    dv.upsert(ref_id, opp())
    response = dv.upsert(ref_id, opp(), **{"If-None-Match": "*"})
    assert response.status_code == 412
    assert error(response) == ("", "A record with matching key values already exists.")


def test_if_match_star_on_a_missing_row_is_404_and_creates_nothing(dv):
    ref_id = ref()
    response = dv.upsert(ref_id, opp(), **{"If-Match": "*"})
    assert response.status_code == 404
    code, message = error(response)
    assert code == ""
    assert message.endswith("Does Not Exist")
    assert dv.call("GET", f"opportunities({KEY}='{ref_id}')").status_code == 404


def test_if_match_with_a_stale_etag_is_412_version_mismatch(dv):
    ref_id = ref()
    dv.upsert(ref_id, opp())
    etag = dv.opportunity(ref_id)["@odata.etag"]
    dv.upsert(ref_id, {"name": "changed by someone else"})
    response = dv.upsert(ref_id, {"name": "mine"}, **{"If-Match": etag})
    assert response.status_code == 412
    assert error(response)[0] == "0x80060882"
    fresh = dv.opportunity(ref_id)["@odata.etag"]
    assert dv.upsert(ref_id, {"name": "mine"}, **{"If-Match": fresh}).status_code == 204


def test_a_retrieve_with_the_current_etag_is_304(dv):
    ref_id = ref()
    dv.upsert(ref_id, opp())
    etag = dv.opportunity(ref_id)["@odata.etag"]
    response = dv.call("GET", f"opportunities({KEY}='{ref_id}')", headers={"If-None-Match": etag})
    assert response.status_code == 304


def test_missing_rows_answer_404_with_codes_by_id_and_by_key(dv):
    by_id = dv.call("GET", f"opportunities({uuid.uuid4()})")
    by_key = dv.call("GET", f"opportunities({KEY}='{ref()}')")
    assert (by_id.status_code, by_key.status_code) == (404, 404)
    assert error(by_id)[0] == "0x80040217"
    assert error(by_key)[0] == "0x80060891"


def test_only_defined_alternate_keys_address_rows(dv):
    response = dv.call("GET", "opportunities(name='Contoso referral')")
    assert response.status_code == 400
    assert error(response)[0] == "0x80060888"


def test_a_duplicate_alternate_key_on_create_is_412_duplicate_record(dv):
    ref_id = ref()
    dv.upsert(ref_id, opp())
    response = dv.call("POST", "opportunities", json=opp(**{KEY: ref_id.lower()}))
    assert response.status_code == 412
    code, message = error(response)
    assert code == "0x80040237"
    assert ALTERNATE_KEY in message


# -- lookups and data rules ------------------------------------------------------------------


def test_odata_bind_sets_customer_parent_account_and_currency(dv):
    ref_id, account = ref(), dv.account()
    eur = dv.currency("EUR")
    body = opp(
        **{
            "customerid_account@odata.bind": f"/accounts({account})",
            "parentaccountid@odata.bind": f"accounts({account})",
            "transactioncurrencyid@odata.bind": f"/transactioncurrencies({eur})",
            "estimatedvalue": 12500.5,
            "estimatedclosedate": "2026-03-31",
        }
    )
    assert dv.upsert(ref_id, body).status_code == 204
    row = dv.opportunity(ref_id)
    assert row["_customerid_value"] == account
    assert row["_parentaccountid_value"] == account
    assert row["_transactioncurrencyid_value"] == eur
    assert row["estimatedvalue"] == 12500.5
    assert row["estimatedclosedate"] == "2026-03-31"


def test_a_new_opportunity_defaults_to_the_base_currency(dv):
    ref_id = ref()
    dv.upsert(ref_id, opp())
    assert dv.opportunity(ref_id)["_transactioncurrencyid_value"] == dv.currency("USD")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"transactioncurrencyid@odata.bind": f"/transactioncurrencies({uuid.uuid4()})"}, 404,
         "0x80040217"),
        ({"_parentaccountid_value": str(uuid.uuid4())}, 400, "0x80048d19"),
        ({"parentaccountid": str(uuid.uuid4())}, 400, "0x80060888"),
        ({"customerid@odata.bind": f"/accounts({uuid.uuid4()})"}, 400, "0x80060888"),
        ({"name": "x" * 301}, 400, "0x80044331"),
        ({"statuscode": 9}, 400, "0x8004431A"),
        ({"rs_declinereason": 7}, 400, "0x8004431A"),
        ({"estimatedclosedate": "2026-03-31T00:00:00Z"}, 400, "0x80060888"),
        ({"estimatedvalue": "1000"}, 400, "0x80060888"),
        ({"rs_hot": "yes"}, 400, "0x80060888"),
        ({"nosuchcolumn": 1}, 400, "0x80060888"),
        ({"statecode": 0}, 400, "0x80040203"),
        ({"versionnumber": 1}, 400, "0x80040203"),
    ],
)  # fmt: skip
def test_invalid_writes_are_refused_with_the_platform_codes(dv, body, status, code):
    response = dv.upsert(ref(), opp(**body))
    assert response.status_code == status, response.text
    assert error(response)[0] == code


def test_the_name_is_required_and_at_most_300_characters(dv):
    missing = dv.call("POST", "opportunities", json={"statuscode": 2})
    assert missing.status_code == 400
    assert error(missing)[0] == "0x80044331"
    assert dv.upsert(ref(), opp(name="x" * 300)).status_code == 204


def test_every_write_advances_versionnumber_and_modifiedon(dv, sandbox):
    ref_id = ref()
    dv.upsert(ref_id, opp())
    before = dv.opportunity(ref_id)
    sandbox.clock.advance(timedelta(seconds=5))
    dv.upsert(ref_id, {"rs_hot": True})
    after = dv.opportunity(ref_id)
    assert after["versionnumber"] > before["versionnumber"]
    assert after["modifiedon"] > before["modifiedon"]
    assert after["@odata.etag"] == f'W/"{after["versionnumber"]}"'
    assert after["modifiedon"].endswith("Z")


def test_partner_columns_round_trip(dv):
    ref_id = ref()
    fields = {
        "rs_engagementid": "E-1",
        "rs_partnercenterstatus": "New",
        "rs_referrallink": "https://partner.microsoft.com/r/1",
        "rs_hot": True,
        "rs_expires": "2026-04-01T10:30:00+02:00",
        "rs_microsoftnotes": "n" * 5000,
        "rs_declinereason": 100000002,
    }
    dv.upsert(ref_id, opp(**fields))
    row = dv.opportunity(ref_id)
    assert {k: row[k] for k in fields} == {**fields, "rs_expires": "2026-04-01T08:30:00Z"}


def test_admin_changes_remove_a_column_and_an_option(dv, sandbox):
    sandbox.dataverse.schema.remove_attribute("opportunity", "rs_hot")
    sandbox.dataverse.schema.remove_option("opportunity", "rs_declinereason", 100000002)
    assert error(dv.upsert(ref(), opp(rs_hot=True)))[0] == "0x80060888"
    assert error(dv.upsert(ref(), opp(rs_declinereason=100000002)))[0] == "0x8004431A"
    sandbox.reset()
    assert dv.upsert(ref(), opp(rs_hot=True, rs_declinereason=100000002)).status_code == 204


# -- states and the actions ----------------------------------------------------------------


def close_body(status: int, opportunity_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "Status": status,
        "OpportunityClose": {
            "subject": "closed",
            "opportunityid@odata.bind": f"/opportunities({opportunity_id})",
            **extra,
        },
    }


@pytest.mark.parametrize(
    "body", [{"statecode": 1, "statuscode": 3}, {"statuscode": 3}, {"statecode": 2}]
)
def test_a_patch_cannot_set_won_or_lost(dv, body):
    ref_id = ref()
    dv.upsert(ref_id, opp())
    response = dv.upsert(ref_id, body)
    assert response.status_code == 400
    assert error(response)[0] == "0x80040203"
    assert dv.opportunity(ref_id)["statecode"] == 0


def test_win_opportunity_answers_204_closes_the_row_and_records_the_close(dv):
    ref_id = ref()
    oid = entity_id(dv.upsert(ref_id, opp(estimatedvalue=1000)))
    body = close_body(3, oid, actualrevenue=900, actualend="2026-03-31")
    response = dv.call("POST", "WinOpportunity", json=body)
    assert response.status_code == 204
    assert response.content == b""
    row = dv.opportunity(ref_id)
    assert (row["statecode"], row["statuscode"]) == (1, 3)
    assert (row["actualvalue"], row["actualclosedate"]) == (900, "2026-03-31")
    closes = dv.call(
        "GET", "opportunitycloses", params={"$filter": f"_opportunityid_value eq {oid}"}
    )
    [close] = closes.json()["value"]
    assert (close["actualrevenue"], close["statecode"], close["subject"]) == (900, 1, "closed")


def test_lose_opportunity_takes_a_lost_status_only(dv):
    oid = entity_id(dv.upsert(ref(), opp()))
    wrong = dv.call("POST", "LoseOpportunity", json=close_body(3, oid))
    assert wrong.status_code == 400
    assert error(wrong)[0] == "0x80040203"
    assert dv.call("POST", "LoseOpportunity", json=close_body(5, oid)).status_code == 204
    row = dv.call("GET", f"opportunities({oid})?$select=statecode,statuscode").json()
    assert (row["statecode"], row["statuscode"]) == (2, 5)
    again = dv.call("POST", "WinOpportunity", json=close_body(3, oid))
    assert again.status_code == 400
    assert error(again)[0] == "0x80040203"


def test_a_closed_row_is_read_only_until_reopened_by_setstate_patch(dv):
    ref_id = ref()
    oid = entity_id(dv.upsert(ref_id, opp()))
    dv.call("POST", "LoseOpportunity", json=close_body(4, oid))
    edit = dv.upsert(ref_id, {"name": "edited"})
    assert edit.status_code == 400
    assert error(edit)[0] == "0x8004022e"
    assert dv.upsert(ref_id, {"statecode": 0, "statuscode": 1}).status_code == 204
    assert dv.upsert(ref_id, {"name": "edited"}).status_code == 204
    row = dv.opportunity(ref_id)
    assert (row["statecode"], row["statuscode"], row["name"]) == (0, 1, "edited")


def test_actions_check_their_parameters(dv):
    oid = entity_id(dv.upsert(ref(), opp()))
    missing = dv.call("POST", "WinOpportunity", json={"Status": 3})
    extra = dv.call("POST", "WinOpportunity", json={**close_body(3, oid), "Bogus": 1})
    unknown = dv.call("POST", "WinOpportunity", json=close_body(3, str(uuid.uuid4())))
    assert (missing.status_code, extra.status_code, unknown.status_code) == (400, 400, 404)


# -- queries -------------------------------------------------------------------------------


def test_filter_escapes_single_quotes_by_doubling_them(dv):
    tag = uuid.uuid4().hex[:8]
    dv.upsert(ref(), opp(name=f"O'Brien {tag}"))
    dv.upsert(ref(), opp(name=f"OBrien {tag}"))
    found = dv.call("GET", "opportunities", params={"$filter": f"name eq 'O''Brien {tag}'"})
    assert [r["name"] for r in found.json()["value"]] == [f"O'Brien {tag}"]
    quote = dv.call(
        "GET",
        "opportunities",
        params={"$filter": f"contains(name,'''') and contains(name,'{tag}')"},
    )
    assert len(quote.json()["value"]) == 1
    broken = dv.call("GET", "opportunities", params={"$filter": f"name eq 'O'Brien {tag}'"})
    assert broken.status_code == 400
    assert error(broken)[0] == "0x80060888"


def test_filter_operators_select_and_orderby(dv):
    tag = uuid.uuid4().hex[:8]
    for value in (100, 200, 300, 400):
        dv.upsert(ref(), opp(name=f"{tag}-{value}", estimatedvalue=value))
    text = (
        f"contains(name,'{tag}') and (estimatedvalue gt 100 and estimatedvalue le 300 "
        f"or estimatedvalue eq 400) and not (estimatedvalue eq 200)"
    )
    response = dv.call(
        "GET",
        "opportunities",
        params={
            "$filter": text,
            "$select": "name,estimatedvalue",
            "$orderby": "estimatedvalue desc",
        },
    )
    values = [r["estimatedvalue"] for r in response.json()["value"]]
    assert values == [400, 300]
    assert set(response.json()["value"][0]) == {
        "@odata.etag", "name", "estimatedvalue", "opportunityid",
    }  # fmt: skip


def test_top_limits_the_result(dv):
    tag = uuid.uuid4().hex[:8]
    for _ in range(3):
        dv.upsert(ref(), opp(name=tag))
    response = dv.call("GET", "opportunities", params={"$filter": f"name eq '{tag}'", "$top": "2"})
    assert len(response.json()["value"]) == 2
    assert "@odata.nextLink" not in response.json()


def test_maxpagesize_pages_through_next_links(dv):
    tag = uuid.uuid4().hex[:8]
    made = set()
    for i in range(5):
        made.add(entity_id(dv.upsert(ref(), opp(name=f"{tag}-{i}"))))
    prefer = {"Prefer": "odata.maxpagesize=2"}
    response = dv.call(
        "GET", "opportunities", params={"$filter": f"startswith(name,'{tag}')"}, headers=prefer
    )
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=2"
    seen, pages = [], 0
    while True:
        pages += 1
        body = response.json()
        seen += [r["opportunityid"] for r in body["value"]]
        if "@odata.nextLink" not in body:
            break
        assert "$skiptoken=" in body["@odata.nextLink"]
        response = dv.call("GET", body["@odata.nextLink"], headers=prefer)
    assert pages == 3
    assert sorted(seen) == sorted(made)


def test_skip_and_expand_are_refused(dv):
    assert dv.call("GET", "opportunities?$skip=2").status_code == 400
    assert dv.call("GET", "opportunities?$expand=parentaccountid").status_code == 400


# -- change tracking -------------------------------------------------------------------------


def test_delta_link_returns_changed_rows_and_deleted_rows(dv):
    keep, gone = ref(), ref()
    dv.upsert(keep, opp())
    gone_id = entity_id(dv.upsert(gone, opp()))
    first = dv.call(
        "GET", f"opportunities?$select=name,{KEY}", headers={"Prefer": "odata.track-changes"}
    )
    assert first.headers["Preference-Applied"] == "odata.track-changes"
    delta = first.json()["@odata.deltaLink"]
    assert "$deltatoken=" in delta
    assert "$select=" in delta
    dv.upsert(keep, {"name": "changed"})
    fresh = ref()
    dv.upsert(fresh, opp())
    assert dv.call("DELETE", f"opportunities({gone_id})").status_code == 204
    changes = dv.call("GET", delta).json()
    assert changes["@odata.context"].endswith(f"#opportunities(name,{KEY})/$delta")
    rows = [r for r in changes["value"] if "id" not in r]
    assert [(r[KEY], r["name"]) for r in rows] == [(keep, "changed"), (fresh, "Contoso referral")]
    deleted = [r for r in changes["value"] if "id" in r]
    assert deleted == [
        {
            "@odata.context": f"{dv.base}/$metadata#opportunities/$deletedEntity",
            "id": gone_id,
            "reason": "deleted",
        }
    ]
    nothing = dv.call("GET", changes["@odata.deltaLink"]).json()
    assert nothing["value"] == []


def test_an_expired_delta_token_asks_for_a_full_sync(dv, sandbox):
    sandbox.dataverse.expire_days = 1 / (24 * 60)  # one minute
    first = dv.call("GET", "opportunities?$select=name", headers={"Prefer": "odata.track-changes"})
    sandbox.clock.advance(timedelta(minutes=2))
    response = dv.call("GET", first.json()["@odata.deltaLink"])
    assert response.status_code == 400
    assert error(response) == (
        "0x80044352",
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )


def test_change_tracking_refuses_filter_and_untracked_tables(dv):
    track = {"Prefer": "odata.track-changes"}
    filtered = dv.call("GET", "opportunities?$filter=name eq 'x'", headers=track)
    untracked = dv.call("GET", "transactioncurrencies", headers=track)
    assert (filtered.status_code, untracked.status_code) == (400, 400)


# -- $batch ----------------------------------------------------------------------------------


def http_part(method: str, url: str, body: dict[str, Any] | None = None, cid: str = "") -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if cid:
        lines.append(f"Content-ID: {cid}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines += ["Content-Type: application/json; type=entry", "", json.dumps(body)]
    else:
        lines += ["", ""]
    return CRLF.join(lines)


def multipart(boundary: str, parts: list[str]) -> str:
    return "".join(f"--{boundary}{CRLF}{p}{CRLF}" for p in parts) + f"--{boundary}--{CRLF}"


def changeset(boundary: str, parts: list[str]) -> str:
    head = f"Content-Type: multipart/mixed; boundary={boundary}{CRLF}{CRLF}"
    return head + multipart(boundary, parts)


def parse_parts(content_type: str, body: str) -> list[tuple[str, str]]:
    """``[(part headers, part content)]`` split on the response's own boundary."""
    boundary = content_type.split("boundary=")[1].strip('"')
    assert boundary.startswith(("batchresponse_", "changesetresponse_"))
    chunks = body.split(f"--{boundary}")
    assert chunks[-1].startswith("--")
    out = []
    for chunk in chunks[1:-1]:
        head, _, content = chunk.strip(CRLF).partition(CRLF + CRLF)
        out.append((head, content))
    return out


def status_of(content: str) -> int:
    return int(content.split(CRLF, maxsplit=1)[0].split()[1])


def test_batch_runs_parts_in_order_and_answers_multipart(dv):
    ref_id = ref()
    url = f"{dv.base}/opportunities({KEY}='{ref_id}')"
    read = f"/api/data/v9.2/opportunities({KEY}='{ref_id}')?$select=name"
    body = multipart("batch_A1", [http_part("PATCH", url, opp()), http_part("GET", read)])
    response = dv.batch(body, "batch_A1")
    assert response.status_code == 200
    parts = parse_parts(response.headers["Content-Type"], response.text)
    assert [status_of(c) for _, c in parts] == [204, 200]
    assert "OData-EntityId: " in parts[0][1]
    assert json.loads(parts[1][1].split(CRLF + CRLF, 1)[1])["name"] == "Contoso referral"


def test_a_failing_change_set_rolls_back_and_stops_the_batch(dv):
    good, bad, after = ref(), ref(), ref()
    path = "/api/data/v9.2/opportunities({}='{}')"
    cs = changeset(
        "changeset_B1",
        [
            http_part("PATCH", path.format(KEY, good), opp(), "1"),
            http_part("PATCH", path.format(KEY, bad), opp(name="x" * 301), "2"),
        ],
    )
    tail = http_part("PATCH", f"/api/data/v9.2/opportunities({KEY}='{after}')", opp())
    response = dv.batch(multipart("batch_B1", [cs, tail]), "batch_B1")
    assert response.status_code == 400
    parts = parse_parts(response.headers["Content-Type"], response.text)
    assert len(parts) == 1
    assert status_of(parts[0][1]) == 400
    assert '"0x80044331"' in parts[0][1]
    for ref_id in (good, after):
        assert dv.call("GET", f"opportunities({KEY}='{ref_id}')").status_code == 404


def test_continue_on_error_answers_every_part_with_200(dv):
    refs = [ref(), ref(), ref()]
    cs = changeset(
        "changeset_C1",
        [http_part("PATCH", f"/api/data/v9.2/opportunities({KEY}='{refs[2]}')", opp(), "1")],
    )
    parts = [
        http_part("PATCH", f"/api/data/v9.2/opportunities({KEY}='{refs[0]}')", opp(statuscode=9)),
        http_part("PATCH", f"/api/data/v9.2/opportunities({KEY}='{refs[1]}')", opp()),
        cs,
    ]
    response = dv.batch(multipart("batch_C1", parts), "batch_C1", Prefer="odata.continue-on-error")
    assert response.status_code == 200
    answered = parse_parts(response.headers["Content-Type"], response.text)
    assert [status_of(c) for _, c in answered[:2]] == [400, 204]
    head, content = answered[2]
    assert "changesetresponse_" in head
    inner = parse_parts(head.split("Content-Type: ")[1], content)
    assert "Content-ID: 1" in inner[0][0]
    assert status_of(inner[0][1]) == 204
    assert dv.call("GET", f"opportunities({KEY}='{refs[1]}')").status_code == 200


def test_change_set_content_id_references(dv):
    ref_id = ref()
    cs = changeset(
        "changeset_D1",
        [
            http_part("POST", f"{dv.base}/accounts", {"name": "Fabrikam"}, "1"),
            http_part("PATCH", f"{dv.base}/opportunities({KEY}='{ref_id}')",
                      opp(**{"customerid_account@odata.bind": "$1"}), "2"),
        ],
    )  # fmt: skip
    response = dv.batch(multipart("batch_D1", [cs]), "batch_D1")
    assert response.status_code == 200, response.text
    assert dv.opportunity(ref_id)["_customerid_value"]
    early = changeset(
        "changeset_D2",
        [http_part("PATCH", f"{dv.base}/opportunities({KEY}='{ref()}')",
                   opp(**{"customerid_account@odata.bind": "$7"}), "1")],
    )  # fmt: skip
    refused = dv.batch(multipart("batch_D2", [early]), "batch_D2")
    assert refused.status_code == 400
    assert "Content-ID Reference: '$7' does not exist in the batch context." in refused.text


def test_a_batch_takes_at_most_1000_requests(dv):
    part = http_part("GET", "/api/data/v9.2/WhoAmI")
    assert dv.batch(multipart("batch_E1", [part] * 1000), "batch_E1").status_code == 200
    response = dv.batch(multipart("batch_E2", [part] * 1001), "batch_E2")
    assert response.status_code == 400
    assert error(response)[0] == "0x80060888"


def test_get_is_not_allowed_in_a_change_set(dv):
    cs = changeset("changeset_F1", [http_part("GET", "/api/data/v9.2/WhoAmI")])
    assert dv.batch(multipart("batch_F1", [cs]), "batch_F1").status_code == 400


# -- service protection, faults, the request log ---------------------------------------------


def test_request_count_limit_answers_429_with_retry_after(dv, sandbox):
    sandbox.dataverse.protection.limits = Limits(requests=3, window_s=60)
    ok = [dv.call("GET", "WhoAmI") for _ in range(3)]
    assert [r.status_code for r in ok] == [200, 200, 200]
    assert ok[2].headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "0"
    refused = dv.call("GET", "WhoAmI")
    assert refused.status_code == 429
    assert error(refused) == (
        "0x80072322",
        "Number of requests exceeded the limit of 3 over time window of 60 seconds.",
    )
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    sandbox.clock.advance(timedelta(seconds=61))
    assert dv.call("GET", "WhoAmI").status_code == 200


def test_execution_time_limit_answers_429(dv, sandbox):
    sandbox.dataverse.protection.limits = Limits(execution_ms=5)
    sandbox.dataverse.processing_delay_s = 0.02
    assert dv.call("GET", "WhoAmI").status_code == 200
    refused = dv.call("GET", "WhoAmI")
    assert refused.status_code == 429
    assert error(refused)[0] == "0x80072321"
    assert "Retry-After" in refused.headers


def test_concurrency_limit_answers_429(dv, sandbox, ca_session):
    sandbox.dataverse.protection.limits = Limits(concurrent=1)
    sandbox.dataverse.processing_delay_s = 0.5
    results: list[int] = []

    def call() -> None:
        with requests.Session() as session:
            session.trust_env, session.verify = False, ca_session.verify
            headers = {"Authorization": f"Bearer {dv.token}"}
            results.append(
                session.get(f"{dv.base}/WhoAmI", headers=headers, timeout=10).status_code
            )

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 429]


def test_injected_faults_look_like_dataverse_errors(dv, sandbox):
    sandbox.faults.script("dataverse", "upsert", "429:7", 503)
    throttled, unavailable = dv.upsert(ref(), opp()), dv.upsert(ref(), opp())
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "7")
    assert error(throttled)[0] == "0x80072322"
    assert unavailable.status_code == 503
    assert set(unavailable.json()) == {"error"}


def test_routes_have_stable_names_in_the_request_log(dv, sandbox):
    ref_id = ref()
    oid = entity_id(dv.upsert(ref_id, opp()))
    dv.call("GET", "opportunities?$top=1")
    dv.call("GET", f"opportunities({oid})")
    dv.call("POST", "accounts", json={"name": "A"})
    dv.call("POST", "WinOpportunity", json=close_body(3, oid))
    dv.call("GET", "EntityDefinitions(LogicalName='opportunity')")
    dv.call("POST", "$batch", data=b"", headers={"Content-Type": "multipart/mixed; boundary=b"})
    dv.call("DELETE", f"opportunities({oid})")
    routes = [e.route for e in sandbox.log.entries(service="dataverse")]
    assert routes == [
        "upsert", "query", "retrieve", "create", "win_opportunity", "metadata", "batch", "delete",
    ]  # fmt: skip


# -- metadata ----------------------------------------------------------------------------------


def test_entity_definitions_describe_columns_keys_and_change_tracking(dv):
    table = dv.call(
        "GET",
        "EntityDefinitions(LogicalName='opportunity')",
        params={"$select": "LogicalName,ChangeTrackingEnabled,EntitySetName", "$expand": "Keys"},
    ).json()
    assert table["LogicalName"] == "opportunity"
    assert table["ChangeTrackingEnabled"] is True
    assert table["EntitySetName"] == "opportunities"
    assert [k["KeyAttributes"] for k in table["Keys"]] == [[KEY]]
    assert table["Keys"][0]["EntityKeyIndexStatus"] == "Active"
    name = dv.call(
        "GET", "EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='name')"
    ).json()
    assert name["@odata.type"] == "#Microsoft.Dynamics.CRM.StringAttributeMetadata"
    assert (name["AttributeType"], name["MaxLength"]) == ("String", 300)
    assert name["RequiredLevel"]["Value"] == "ApplicationRequired"
    close = dv.call(
        "GET",
        "EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='estimatedclosedate')",
    ).json()
    assert close["DateTimeBehavior"] == {"Value": "DateOnly"}


def test_entity_definitions_expose_status_and_state_option_sets(dv):
    path = (
        "EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='{}')"
        "/Microsoft.Dynamics.CRM.{}AttributeMetadata"
    )
    status = dv.call("GET", path.format("statuscode", "Status"), params={"$expand": "OptionSet"})
    options = {o["Value"]: o["State"] for o in status.json()["OptionSet"]["Options"]}
    assert options == {1: 0, 2: 0, 3: 1, 4: 2, 5: 2}
    state = dv.call("GET", path.format("statecode", "State"), params={"$expand": "OptionSet"})
    defaults = {
        o["InvariantName"]: o["DefaultStatus"] for o in state.json()["OptionSet"]["Options"]
    }
    assert defaults == {"Open": 1, "Won": 3, "Lost": 4}
    picklists = dv.call(
        "GET",
        "EntityDefinitions(LogicalName='opportunity')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        params={"$select": "LogicalName", "$expand": "OptionSet"},
    ).json()["value"]
    assert [p["LogicalName"] for p in picklists] == ["rs_declinereason"]
    unknown = dv.call("GET", "EntityDefinitions(LogicalName='nosuchtable')")
    assert unknown.status_code == 404
    assert error(unknown)[0] == "0x80040217"


# -- the salesperson ---------------------------------------------------------------------------


def test_salesperson_accepts_edits_and_wins_through_the_action_path(dv, sandbox):
    ref_id = ref()
    oid = entity_id(dv.upsert(ref_id, opp()))
    person = sandbox.dataverse.salesperson
    person.accept(oid, value=25_000, close_date="2026-12-31")
    row = dv.opportunity(ref_id)
    assert (row["statuscode"], row["estimatedvalue"], row["estimatedclosedate"]) == (
        1, 25_000, "2026-12-31",
    )  # fmt: skip
    assert row["_modifiedby_value"] == SALES_USER_ID
    person.edit(oid, value=30_000)
    person.win(oid)
    row = dv.opportunity(ref_id)
    assert (row["statecode"], row["statuscode"], row["actualvalue"]) == (1, 3, 30_000)
    closes = dv.call(
        "GET", "opportunitycloses", params={"$filter": f"_opportunityid_value eq {oid}"}
    )
    assert len(closes.json()["value"]) == 1


def test_salesperson_declines_with_a_reason(dv, sandbox):
    ref_id = ref()
    oid = entity_id(dv.upsert(ref_id, opp()))
    sandbox.dataverse.salesperson.decline(oid, reason=100000001)
    row = dv.opportunity(ref_id)
    assert (row["statecode"], row["statuscode"], row["rs_declinereason"]) == (2, 4, 100000001)


def test_salesperson_random_steps_are_seen_through_the_api(dv, sandbox):
    oid = entity_id(dv.upsert(ref(), opp()))
    for seed in range(50):
        action = sandbox.dataverse.salesperson.random_step(random.Random(seed))
        assert action is not None
        if action.opportunity_id == oid:
            break
    row = dv.call("GET", f"opportunities({oid})").json()
    assert row["_modifiedby_value"] == SALES_USER_ID
