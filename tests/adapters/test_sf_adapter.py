"""SalesforceAdapter against `responses`: a small org that answers the adapter's requests.

``FakeOrg`` is a real-behaviour stand-in at the HTTP seam (like httpx's MockTransport): it keeps
Accounts, Contacts, contact roles and Opportunities in dicts and answers the few SOQL shapes the
adapter sends, so tests can state behaviour (found, created, not twice) instead of call lists.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from fakes import FakeClock

from connector.crm.salesforce.adapter import SalesforceAdapter
from connector.crm.salesforce.client import SalesforceClient
from connector.errors import AuthError, StateError, TransientError
from connector.http.retry import RetryPolicy
from connector.http.session import build_session
from connector.ports import (
    AccountRef,
    ContactRef,
    FieldRequirement,
    OpportunityWrite,
)

INSTANCE = "https://contoso.my.sf.test"
API = f"{INSTANCE}/services/data/v62.0"
EXT = "Partner_Center_Referral_Id__c"
NOT_UNIQUE = (
    f"Opportunity.{EXT}: it must be marked 'Unique' so one referral can never match two records"
)
UPSERT_URL = f"{API}/composite/sobjects/Opportunity/{EXT}"
DATA = Path(__file__).parents[1] / "data" / "salesforce"


def body(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


class StaticToken:
    def token(self) -> str:
        return "00Dtoken"

    def refresh(self) -> str:
        return "00Dtoken"


class FakeOrg:
    """Records by sObject; answers the adapter's SOQL and writes through `responses`."""

    def __init__(self, mocked: responses.RequestsMock) -> None:
        self.records: dict[str, dict[str, dict[str, Any]]] = {
            "Account": {}, "Contact": {}, "OpportunityContactRole": {}, "Opportunity": {},
        }  # fmt: skip
        self.queries: list[str] = []
        self.refuse: dict[str, Callable[[dict[str, Any]], str | None]] = {}
        self._serial = 0
        mocked.add_callback("GET", re.compile(rf"{API}/query/\?.*"), self._query)
        mocked.add_callback("POST", re.compile(rf"{API}/sobjects/\w+/?"), self._create)
        mocked.add_callback("PATCH", UPSERT_URL, self._upsert)
        mocked.add_callback("POST", f"{API}/composite/sobjects", self._create_collection)

    def new_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}{self._serial:012d}AAA"

    def add(self, sobject: str, **fields: Any) -> str:
        record_id = self.new_id({"Account": "001", "Contact": "003"}.get(sobject, "00K"))
        self.records[sobject][record_id] = {"Id": record_id, **fields}
        return record_id

    def _create(self, request: Any) -> tuple[int, dict[str, str], str]:
        sobject = urlsplit(request.url).path.rstrip("/").rsplit("/", 1)[-1]
        fields = json.loads(request.body)
        refusal = self.refuse.get(sobject, lambda _: None)(fields)
        if refusal:
            error = [{"message": refusal, "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION"}]
            return 400, {}, json.dumps(error)
        record_id = self.add(sobject, **fields)
        return 201, {}, json.dumps({"id": record_id, "success": True, "errors": []})

    def _create_collection(self, request: Any) -> tuple[int, dict[str, str], str]:
        payload = json.loads(request.body)
        assert payload["allOrNone"] is False
        assert 0 < len(payload["records"]) <= 200
        results = []
        for record in payload["records"]:
            sobject = record.pop("attributes")["type"]
            refusal = self.refuse.get(sobject, lambda _: None)(record)
            if refusal:
                error = {"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": refusal}
                results.append({"id": None, "success": False, "errors": [{**error, "fields": []}]})
                continue
            results.append({"id": self.add(sobject, **record), "success": True, "errors": []})
        return 200, {}, json.dumps(results)

    def _upsert(self, request: Any) -> tuple[int, dict[str, str], str]:
        payload = json.loads(request.body)
        assert payload["allOrNone"] is False
        results = []
        opportunities = self.records["Opportunity"]
        for record in payload["records"]:
            assert record.pop("attributes") == {"type": "Opportunity"}
            if record.get("StageName") == "Won Big":
                results.append(body("collections_upsert_mixed.json")[2])
                continue
            match = [
                r for r in opportunities.values() if r[EXT].casefold() == record[EXT].casefold()
            ]
            if match:
                match[0].update(record)
                results.append(
                    {"id": match[0]["Id"], "success": True, "errors": [], "created": False}
                )
            else:
                record_id = self.new_id("006")
                opportunities[record_id] = {"Id": record_id, **record}
                results.append({"id": record_id, "success": True, "errors": [], "created": True})
        return 200, {}, json.dumps(results)

    def _query(self, request: Any) -> tuple[int, dict[str, str], str]:
        soql = parse_qs(urlsplit(request.url).query)["q"][0]
        self.queries.append(soql)
        if soql.startswith("SELECT Id, Name, BillingPostalCode FROM Account"):
            rows = [r for r in self.records["Account"].values() if self._account_matches(soql, r)]
        elif soql.startswith("SELECT Id, Email FROM Contact"):
            emails = {e.casefold() for e in re.findall(r"'((?:[^'\\]|\\.)*)'", soql)}
            rows = [
                r
                for r in self.records["Contact"].values()
                if r.get("Email", "").casefold() in emails
            ]
        elif soql.startswith("SELECT OpportunityId, ContactId FROM OpportunityContactRole"):
            ids = set(re.findall(r"'([^']*)'", soql))
            rows = [
                r
                for r in self.records["OpportunityContactRole"].values()
                if r["OpportunityId"] in ids
            ]
        else:
            raise AssertionError(f"unexpected SOQL {soql}")
        return 200, {}, json.dumps({"totalSize": len(rows), "done": True, "records": rows})

    @staticmethod
    def _account_matches(soql: str, row: dict[str, Any]) -> bool:
        """``Name IN (…) AND BillingPostalCode IN (…)`` or ``… AND BillingPostalCode = null``."""
        literal = r"'((?:[^'\\]|\\.)*)'"

        def values(clause: str) -> set[str]:
            return {re.sub(r"\\(.)", r"\1", v) for v in re.findall(literal, clause)}

        names_part, _, postal_part = soql.partition(" AND BillingPostalCode ")
        names = {n.casefold() for n in values(names_part.split("Name IN ", 1)[1])}
        if row["Name"].casefold() not in names:
            return False
        if postal_part.startswith("= null"):
            return row.get("BillingPostalCode") is None
        return row.get("BillingPostalCode") in values(postal_part.split(" ORDER BY")[0])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def org(mocked) -> FakeOrg:
    return FakeOrg(mocked)


def make_adapter(clock: FakeClock, **overrides: Any) -> SalesforceAdapter:
    client = SalesforceClient(
        StaticToken(),
        instance_url=INSTANCE,
        api_version="62.0",
        session=build_session(),
        retry=RetryPolicy(max_attempts=3, max_total_s=60, base_s=1, cap_s=4, jitter=0),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(1),
    )
    # The adapter's clock reads the time of the fake org's data: every poll is recent.
    overrides.setdefault("now", lambda: datetime(2025, 3, 1, 10, 0, tzinfo=UTC))
    return SalesforceAdapter(client, external_id_field=EXT, **overrides)


def write(key: str, **fields: Any) -> OpportunityWrite:
    base = {"Name": f"Deal {key}", "StageName": "Prospecting", "CloseDate": date(2025, 6, 30)}
    return OpportunityWrite(key=key, fields={**base, **fields})


def upsert_calls(mocked: responses.RequestsMock) -> list[list[dict[str, Any]]]:
    return [
        json.loads(c.request.body)["records"] for c in mocked.calls if c.request.method == "PATCH"
    ]


# -- upsert -------------------------------------------------------------------------------------


def test_upsert_twice_creates_one_opportunity_then_updates_it(org, clock):
    adapter = make_adapter(clock)
    first = adapter.upsert([write("R-1", Amount=Decimal("100.25"))])
    second = adapter.upsert([write("R-1", Amount=Decimal("200"))])
    assert [(o.action, o.crm_id) for o in first] == [("created", first[0].crm_id)]
    assert [(o.action, o.crm_id) for o in second] == [("updated", first[0].crm_id)]
    assert len(org.records["Opportunity"]) == 1
    assert next(iter(org.records["Opportunity"].values()))["Amount"] == 200


def test_450_writes_go_in_collections_of_at_most_200_and_keep_input_order(org, mocked, clock):
    writes = [write(f"R-{n:04d}") for n in range(450)]
    outcomes = make_adapter(clock).upsert(writes)
    assert [len(c) for c in upsert_calls(mocked)] == [200, 200, 50]
    assert [o.key for o in outcomes] == [w.key for w in writes]
    assert {o.action for o in outcomes} == {"created"}


def test_a_refused_record_is_a_failed_outcome_with_every_reason_and_the_rest_go_on(org, clock):
    outcomes = make_adapter(clock).upsert(
        [write("R-1"), write("R-2", StageName="Won Big"), write("R-3")]
    )
    assert [o.action for o in outcomes] == ["created", "failed", "created"]
    assert outcomes[1].reason == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: Stage: bad value for restricted picklist field: "
        "Won Big (fields: StageName); REQUIRED_FIELD_MISSING: Required fields are missing: "
        "[CloseDate] (fields: CloseDate)"
    )
    assert outcomes[1].failed


def test_a_key_repeated_in_one_batch_is_sent_in_a_later_collection_so_the_last_write_wins(
    org, mocked, clock
):
    outcomes = make_adapter(clock).upsert(
        [write("R-1", Amount=1), write("R-2"), write("r-1", Amount=2)]
    )
    assert [len(c) for c in upsert_calls(mocked)] == [2, 1]
    assert [o.action for o in outcomes] == ["created", "created", "updated"]
    assert org.records["Opportunity"][outcomes[0].crm_id]["Amount"] == 2


def test_the_external_id_comes_from_the_key_not_from_the_fields(org, mocked, clock):
    make_adapter(clock).upsert([write("R-1", **{EXT: "R-other"})])
    assert upsert_calls(mocked)[0][0][EXT] == "R-1"


def test_a_collection_refused_as_a_whole_fails_its_writes_without_raising(mocked, clock):
    mocked.patch(UPSERT_URL, status=400, json=body("error_invalid_field.json"))
    outcomes = make_adapter(clock).upsert([write("R-1"), write("R-2")])
    assert [o.action for o in outcomes] == ["failed", "failed"]
    assert all("INVALID_FIELD" in (o.reason or "") for o in outcomes)


def test_a_transient_failure_is_retried_and_auth_failure_propagates(mocked, clock):
    mocked.patch(UPSERT_URL, status=503, json=body("error_server_unavailable.json"))
    FakeOrg(mocked)  # answers after the 503 (responses serves matches in order)
    outcomes = make_adapter(clock).upsert([write("R-1")])
    assert outcomes[0].action == "created"
    assert clock.sleeps == [1.0]

    mocked.replace(
        responses.PATCH, UPSERT_URL, status=403, json=body("error_insufficient_access.json")
    )
    with pytest.raises(AuthError):
        make_adapter(clock).upsert([write("R-2")])


def test_transient_errors_that_persist_propagate_for_the_next_cycle(mocked, clock):
    mocked.patch(UPSERT_URL, status=503, json=body("error_server_unavailable.json"))
    mocked.patch(UPSERT_URL, status=503, json=body("error_server_unavailable.json"))
    mocked.patch(UPSERT_URL, status=503, json=body("error_server_unavailable.json"))
    with pytest.raises(TransientError):
        make_adapter(clock).upsert([write("R-1")])


def test_an_existing_account_is_found_by_name_and_postal_code_with_escaped_soql(org, mocked, clock):
    account_id = org.add("Account", Name="O'Brien \\ Sons", BillingPostalCode="98052")
    account = AccountRef(name="O'Brien \\ Sons", postal_code="98052", city="Redmond")
    outcomes = make_adapter(clock).upsert(
        [OpportunityWrite(key="R-1", fields={"Name": "x"}, account=account)]
    )
    assert outcomes[0].action == "created"
    assert "Name IN ('O\\'Brien \\\\ Sons') AND BillingPostalCode IN ('98052')" in org.queries[0]
    assert upsert_calls(mocked)[0][0]["AccountId"] == account_id
    assert len(org.records["Account"]) == 1


def test_one_query_finds_a_batch_of_accounts_and_a_crossed_pair_is_not_taken(org, mocked, clock):
    crossed = org.add("Account", Name="Alpha", BillingPostalCode="2")  # Alpha, but Beta's code
    beta = org.add("Account", Name="Beta", BillingPostalCode="2")
    writes = [
        OpportunityWrite(
            key="R-1", fields={"Name": "x"}, account=AccountRef(name="Alpha", postal_code="1")
        ),
        OpportunityWrite(
            key="R-2", fields={"Name": "y"}, account=AccountRef(name="Beta", postal_code="2")
        ),
    ]
    make_adapter(clock).upsert(writes)
    assert len([q for q in org.queries if "FROM Account" in q]) == 1
    [alpha_id] = [i for i, r in org.records["Account"].items() if i not in (crossed, beta)]
    assert [r["AccountId"] for r in upsert_calls(mocked)[0]] == [alpha_id, beta]


def test_a_missing_account_is_created_once_for_every_write_that_names_it(org, mocked, clock):
    account = AccountRef(name="Fabrikam", postal_code=None, country="US")
    writes = [OpportunityWrite(key=k, fields={"Name": k}, account=account) for k in ("R-1", "R-2")]
    make_adapter(clock).upsert(writes)
    assert list(org.records["Account"].values()) == [
        {"Id": next(iter(org.records["Account"])), "Name": "Fabrikam", "BillingCountry": "US"}
    ]
    assert "BillingPostalCode = null" in org.queries[0]
    ids = {r["AccountId"] for r in upsert_calls(mocked)[0]}
    assert ids == set(org.records["Account"])


def test_an_account_the_org_refuses_fails_only_the_writes_that_need_it(org, mocked, clock):
    org.refuse["Account"] = lambda f: "Billing country is required" if f["Name"] == "Bad" else None
    writes = [
        OpportunityWrite(key="R-1", fields={"Name": "a"}, account=AccountRef(name="Bad")),
        OpportunityWrite(key="R-2", fields={"Name": "b"}, account=AccountRef(name="Good")),
    ]
    outcomes = make_adapter(clock).upsert(writes)
    assert [o.action for o in outcomes] == ["failed", "created"]
    assert "account 'Bad' could not be created" in (outcomes[0].reason or "")
    assert "Billing country is required" in (outcomes[0].reason or "")
    assert [r[EXT] for r in upsert_calls(mocked)[0]] == ["R-2"]


def test_contacts_are_found_by_email_or_created_and_linked_once_even_on_replay(org, clock):
    known = org.add("Contact", LastName="Known", Email="Known@Contoso.example")
    contacts = (
        ContactRef(last_name="Known", email="known@contoso.example"),
        ContactRef(last_name="New", first_name="Nia", email="nia@contoso.example"),
        ContactRef(last_name="NoMail"),
    )
    account = AccountRef(name="Contoso", postal_code="1")
    the_write = OpportunityWrite(
        key="R-1", fields={"Name": "x"}, account=account, contacts=contacts
    )
    adapter = make_adapter(clock)
    first = adapter.upsert([the_write])
    second = adapter.upsert([the_write])
    assert [o.action for o in first + second] == ["created", "updated"]
    created = [c for c in org.records["Contact"].values() if c["Id"] != known]
    assert created == [
        {"Id": created[0]["Id"], "LastName": "New", "FirstName": "Nia",
         "Email": "nia@contoso.example", "AccountId": next(iter(org.records["Account"]))}
    ]  # fmt: skip
    roles = {
        (r["OpportunityId"], r["ContactId"]) for r in org.records["OpportunityContactRole"].values()
    }
    assert roles == {(first[0].crm_id, known), (first[0].crm_id, created[0]["Id"])}
    assert len(org.records["OpportunityContactRole"]) == 2


def test_a_contact_the_org_refuses_fails_that_write_before_its_opportunity_is_sent(
    org, mocked, clock
):
    org.refuse["Contact"] = lambda f: "Phone format" if f.get("Phone") else None
    bad = ContactRef(last_name="Bad", email="bad@x.example", phone="abc")
    outcomes = make_adapter(clock).upsert(
        [OpportunityWrite(key="R-1", fields={"Name": "x"}, contacts=(bad,)), write("R-2")]
    )
    assert [o.action for o in outcomes] == ["failed", "created"]
    assert "contact 'Bad' could not be created: " in (outcomes[0].reason or "")
    assert [r[EXT] for r in upsert_calls(mocked)[0]] == ["R-2"]


def test_a_refused_contact_role_fails_the_write_but_keeps_the_opportunity_id(org, clock):
    org.refuse["OpportunityContactRole"] = lambda f: "roles are locked"
    contact = ContactRef(last_name="A", email="a@x.example")
    outcomes = make_adapter(clock).upsert(
        [OpportunityWrite(key="R-1", fields={}, contacts=(contact,))]
    )
    assert outcomes[0].action == "failed"
    assert outcomes[0].crm_id in org.records["Opportunity"]
    assert "contact role was refused" in (outcomes[0].reason or "")


# -- change feed --------------------------------------------------------------------------------


class Feed:
    """Query pages for the change feed, served from a list of rows, with paging."""

    def __init__(self, mocked: responses.RequestsMock, rows: list[dict[str, Any]], page: int = 2):
        self.rows = rows
        self.page = page
        self.soql: list[str] = []
        self.describes = 0
        mocked.add_callback("GET", re.compile(rf"{API}/queryAll/\?.*"), self._first)
        mocked.add_callback("GET", re.compile(rf"{API}/query/01g-\d+"), self._more)
        mocked.add_callback("GET", f"{API}/sobjects/Opportunity/describe", self._describe)
        self._pending: list[dict[str, Any]] = []

    def _describe(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.describes += 1
        return 200, {}, json.dumps(body("describe_opportunity.json"))

    def _first(self, request: Any) -> tuple[int, dict[str, str], str]:
        soql = parse_qs(urlsplit(request.url).query)["q"][0]
        self.soql.append(soql)
        bound = re.search(r"SystemModstamp >= (\S+)", soql)
        rows = [
            r for r in self.rows
            if bound is None or r["SystemModstamp"][:19] >= bound.group(1).rstrip("Z")[:19]
        ]  # fmt: skip
        rows.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
        self._pending = rows
        return self._serve(0)

    def _more(self, request: Any) -> tuple[int, dict[str, str], str]:
        return self._serve(int(request.url.rsplit("-", 1)[1]))

    def _serve(self, start: int) -> tuple[int, dict[str, str], str]:
        chunk = self._pending[start : start + self.page]
        done = start + self.page >= len(self._pending)
        envelope: dict[str, Any] = {"totalSize": len(self._pending), "done": done, "records": chunk}
        if not done:
            envelope["nextRecordsUrl"] = f"/services/data/v62.0/query/01g-{start + self.page}"
        return 200, {}, json.dumps(envelope)


def row(record_id: str, stamp: str, **fields: Any) -> dict[str, Any]:
    return {
        "attributes": {"type": "Opportunity", "url": f"/x/{record_id}"},
        "Id": record_id,
        EXT: f"R-{record_id}",
        "SystemModstamp": stamp,
        "IsDeleted": False,
        **fields,
    }


def test_first_poll_reads_everything_in_order_with_typed_values(mocked, clock):
    pages = [body("query_opportunities_page1.json"), body("query_opportunities_page2.json")]
    mocked.get(f"{API}/sobjects/Opportunity/describe", json=body("describe_opportunity.json"))
    mocked.get(f"{API}/queryAll/", json=pages[0])
    mocked.get(f"{API}/query/01gD0000002HU6KIAW-2000", json=pages[1])
    result = list(make_adapter(clock).changes_since(None))
    soql = parse_qs(urlsplit(mocked.calls[1].request.url).query)["q"][0]
    assert "WHERE" not in soql
    assert soql.endswith("FROM Opportunity ORDER BY SystemModstamp, Id")
    assert soql.startswith(f"SELECT Id, {EXT}, SystemModstamp, IsDeleted, Name, StageName, Amount")
    assert "CurrencyIsoCode" not in soql  # not in this org's describe: skipped, not an error
    assert [len(p.changes) for p in result] == [2, 1]
    first = result[0].changes[0]
    assert first.key == "R-1"
    assert first.crm_id == "0065g00000Q1aaaAAB"
    assert first.modified_at == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert first.fields["Amount"] == Decimal("125000.50")
    assert first.fields["CloseDate"] == date(2025, 6, 30)
    assert first.fields["Probability"] == Decimal(10)
    assert first.fields["IsClosed"] is False
    assert first.fields["LastModifiedDate"] == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert "attributes" not in first.fields
    assert result[0].changes[1].fields["Amount"] == Decimal(9000)
    last = result[1].changes[0]
    assert (last.key, last.deleted, last.fields["Amount"]) == (None, True, None)
    assert result[1].cursor["high_water"] == "2025-03-01T10:05:00+00:00"


def test_each_change_is_delivered_once_across_polls_even_with_ties_and_overlap(mocked, clock):
    rows = [
        row("006A", "2025-03-01T10:00:00.000+0000"),
        row("006B", "2025-03-01T10:00:00.000+0000"),
        row("006C", "2025-03-01T10:00:00.000+0000"),
    ]
    feed = Feed(mocked, rows, page=2)
    adapter = make_adapter(clock, overlap=timedelta(minutes=2))
    pages = list(adapter.changes_since(None))
    assert [[c.crm_id for c in p.changes] for p in pages] == [["006A", "006B"], ["006C"]]
    cursor = pages[-1].cursor

    # a late commit tied with the high water, and a new change of 006A
    rows.append(row("006D", "2025-03-01T10:00:00.000+0000"))
    rows[0] = row("006A", "2025-03-01T10:01:00.000+0000", Name="renamed")
    again = list(adapter.changes_since(cursor))
    assert [c.crm_id for p in again for c in p.changes] == ["006D", "006A"]
    assert "SystemModstamp >= 2025-03-01T09:58:00Z" in feed.soql[-1]

    # nothing new: nothing delivered, and (the window fitting one page) one request, no describe
    feed.page = 2000
    calls = len(mocked.calls)
    quiet = list(adapter.changes_since(again[-1].cursor))
    assert [c for p in quiet for c in p.changes] == []
    assert len(mocked.calls) == calls + 1
    assert feed.describes == 1


def test_the_cursor_forgets_changes_older_than_the_overlap_window(mocked, clock):
    Feed(
        mocked,
        [row("006A", "2025-03-01T10:00:00.000+0000"), row("006B", "2025-03-01T11:00:00.000+0000")],
    )
    pages = list(make_adapter(clock, overlap=timedelta(minutes=5)).changes_since(None))
    assert pages[-1].cursor == {
        "high_water": "2025-03-01T11:00:00+00:00",
        "seen": {"006B": "2025-03-01T11:00:00.0000000Z"},
        "polled_at": "2025-03-01T10:00:00+00:00",  # when this poll began, by the adapter's clock
    }


def test_an_unreadable_cursor_is_a_state_error(clock):
    with pytest.raises(StateError):
        list(make_adapter(clock).changes_since({"high_water": "yesterday"}))


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_check_reports_every_problem_in_admin_words(mocked, clock):
    described = body("describe_opportunity.json")
    for f in described["fields"]:
        if f["name"] == EXT:
            f["unique"] = False
    mocked.get(f"{API}/sobjects/Opportunity/describe", json=described)
    mocked.get(
        f"{API}/sobjects/Referral__c/describe", status=404, json=body("error_not_found.json")
    )
    required = [
        FieldRequirement(sobject="Opportunity", name="StageName",
                         picklist_values=("Prospecting", "Closed Won", "Declined", "Legacy Stage")),
        FieldRequirement(sobject="Opportunity", name="Partner_Notes__c"),
        FieldRequirement(sobject="Opportunity", name="Referral_Status__c"),
        FieldRequirement(sobject="Opportunity", name="IsWon", writable=False),
        FieldRequirement(sobject="Opportunity", name="Decline_Reason__c"),
        FieldRequirement(sobject="Opportunity", name="Amount", picklist_values=("x",)),
        FieldRequirement(sobject="Referral__c", name="Name"),
    ]  # fmt: skip
    problems = make_adapter(clock).check_metadata(required)
    assert [str(p) for p in problems] == [
        NOT_UNIQUE,
        "Opportunity.StageName: the picklist value 'Declined' is missing: add it",
        "Opportunity.StageName: the picklist value 'Legacy Stage' is inactive: activate it",
        "Opportunity.Referral_Status__c: the integration user cannot edit it (needs Edit access)",
        (
            "Opportunity.Decline_Reason__c: the field does not exist: create it (API name "
            "Decline_Reason__c) or give the integration user field-level access to it"
        ),
        "Opportunity.Amount: it must be a picklist, but it is a currency field",
        (
            "Referral__c: the object does not exist, or the integration user has no access to it "
            "(check its profile or permission set)"
        ),
    ]
    assert len(mocked.calls) == 2  # one describe per object


def test_metadata_check_of_a_ready_org_finds_nothing(mocked, clock):
    mocked.get(f"{API}/sobjects/Opportunity/describe", json=body("describe_opportunity.json"))
    required = [
        FieldRequirement(sobject="Opportunity", name="stagename", picklist_values=("Closed Won",)),
        FieldRequirement(sobject="Opportunity", name=EXT, external_id=True),
    ]
    assert make_adapter(clock).check_metadata(required) == []


def test_metadata_check_names_a_missing_external_id_field_even_when_not_asked(mocked, clock):
    described = body("describe_opportunity.json")
    described["fields"] = [f for f in described["fields"] if f["name"] != EXT]
    mocked.get(f"{API}/sobjects/Opportunity/describe", json=described)
    problems = make_adapter(clock).check_metadata([])
    assert [(p.sobject, p.field) for p in problems] == [("Opportunity", EXT)]
    assert "does not exist" in problems[0].message


def test_an_idle_poll_long_after_the_last_change_reads_only_its_instant(mocked, clock):
    feed = Feed(mocked, [row("006A", "2025-03-01T10:00:00.000+0000")])
    later = lambda: datetime(2025, 3, 1, 11, 0, tzinfo=UTC)  # noqa: E731 - a clock in one line
    adapter = make_adapter(clock, overlap=timedelta(minutes=5), now=later)
    [page] = adapter.changes_since(None)

    again = list(adapter.changes_since(page.cursor))

    assert [c for p in again for c in p.changes] == []
    assert "SystemModstamp >= 2025-03-01T10:00:00Z" in feed.soql[-1]
