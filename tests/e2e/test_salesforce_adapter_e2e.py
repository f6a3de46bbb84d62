"""The Salesforce stack (our token grant, real simple-salesforce, TLS) against the simulator.

Every test starts from an empty simulated org with its default metadata and leaves it so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fakes import FakeClock

from connector.crm.salesforce.build import (
    SalesforceConnection,
    build_salesforce,
    build_salesforce_from_info,
    settings_from_info,
)
from connector.errors import RateLimited
from connector.ports import AccountRef, ContactRef, FieldRequirement, OpportunityWrite
from connector.settings import RetrySettings
from sandbox.app import Sandbox
from sandbox.faults import FaultPlan

pytestmark = pytest.mark.e2e
EXT = "Partner_Center_Referral_Id__c"
NOT_UNIQUE = (
    f"Opportunity.{EXT}: it must be marked 'Unique' so one referral can never match two records"
)


@pytest.fixture
def org(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, with its Salesforce org emptied before and its metadata restored after."""
    sandbox.salesforce.store.clear()
    yield sandbox
    sandbox.salesforce.org.reset()
    sandbox.salesforce.store.clear()


def connect(sandbox: Sandbox, clock: FakeClock, **options: Any) -> SalesforceConnection:
    return build_salesforce_from_info(
        sandbox.info["salesforce"],
        sandbox.info["ca_bundle"],
        retry=RetrySettings(max_attempts=4, max_seconds=120, base_seconds=1, cap_seconds=8),
        sleep=clock.sleep,
        clock=clock,
        **options,
    )


def write(key: str, **fields: Any) -> OpportunityWrite:
    base = {
        "Name": f"Deal {key}",
        "StageName": "Prospecting",
        "CloseDate": date(2025, 6, 30),
        "Amount": Decimal("1250.50"),
    }
    return OpportunityWrite(key=key, fields={**base, **fields})


def count(sandbox: Sandbox, route: str) -> int:
    return sandbox.log.count(service="salesforce", route=route)


@pytest.mark.parametrize("auth_mode", ["client_credentials", "jwt"])
def test_each_token_grant_upserts_created_then_updated(org, auth_mode):
    conn = connect(org, FakeClock(), auth_mode=auth_mode)
    key = f"R-{uuid.uuid4()}"
    first = conn.adapter.upsert([write(key)])
    second = conn.adapter.upsert([write(key, Amount=Decimal("99.99"))])
    assert [o.action for o in first + second] == ["created", "updated"]
    assert first[0].crm_id == second[0].crm_id
    stored = org.salesforce.store.records("Opportunity")
    assert [(r[EXT], r["Amount"]) for r in stored] == [(key, 99.99)]
    assert count(org, "token") == 1
    assert conn.auth.mode == auth_mode


def test_creates_whose_reply_was_lost_are_sent_again_and_make_each_opportunity_once(org):
    """The simulator makes the records, then holds the reply past the client's read timeout:
    the repeat is a collections create on the unique external id, so each answers
    ``DUPLICATE_VALUE`` (``exists``, with the record's id) and nothing is written twice."""
    clock = FakeClock()
    settings = replace(
        settings_from_info(
            org.info["salesforce"], org.info["ca_bundle"], retry=RetrySettings(max_attempts=2)
        ),
        read_timeout=0.5,
    )
    conn = build_salesforce(settings, sleep=clock.sleep, clock=clock)
    conn.adapter.upsert([write("warm-up")])  # token and describe held
    org.faults.plan = FaultPlan.parse("salesforce:timeout_s=1")
    org.faults.script("salesforce", "collections_create", "timeout")
    creates = [replace(write(f"R-{i}"), create=True) for i in range(5)]

    outcomes = conn.adapter.upsert(creates)

    assert [o.action for o in outcomes] == ["exists"] * 5
    stored = {r[EXT]: r["Id"] for r in org.salesforce.store.records("Opportunity")}
    assert sorted(stored) == ["R-0", "R-1", "R-2", "R-3", "R-4", "warm-up"]
    assert [o.crm_id for o in outcomes] == [stored[f"R-{i}"] for i in range(5)]
    assert count(org, "collections_create") == 2


def test_1000_upserts_cost_exactly_five_collection_calls(org):
    conn = connect(org, FakeClock())
    outcomes = conn.adapter.upsert([write(f"R-{n:04d}") for n in range(1000)])
    assert {o.action for o in outcomes} == {"created"}
    assert [o.key for o in outcomes] == [f"R-{n:04d}" for n in range(1000)]
    assert count(org, "collections_upsert") == 5
    assert len(org.log.entries(service="salesforce")) == 6  # and one token
    assert len(org.salesforce.store.records("Opportunity")) == 1000


def test_new_accounts_contacts_and_roles_are_created_200_a_call(org):
    conn = connect(org, FakeClock())
    writes = [
        OpportunityWrite(
            key=f"R-{n:04d}",
            fields=write(f"R-{n:04d}").fields,
            account=AccountRef(name=f"Customer {n}", postal_code=f"{n:05d}"),
            contacts=(ContactRef(last_name=f"Buyer {n}", email=f"buyer{n}@example.test"),),
        )
        for n in range(250)
    ]

    outcomes = conn.adapter.upsert(writes)

    assert {o.action for o in outcomes} == {"created"}
    assert count(org, "sobject_create") == 0
    assert count(org, "collections_create") == 6  # 250 accounts, contacts, roles: 2 calls each
    assert count(org, "collections_upsert") == 2
    store = org.salesforce.store
    assert len(store.records("OpportunityContactRole")) == 250


def test_a_record_the_org_refuses_fails_alone_with_its_reason(org):
    conn = connect(org, FakeClock())
    outcomes = conn.adapter.upsert([write("R-1"), write("R-2", StageName="Won Big"), write("R-3")])
    assert [o.action for o in outcomes] == ["created", "failed", "created"]
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in (outcomes[1].reason or "")
    assert "StageName" in (outcomes[1].reason or "")


def test_contacts_are_created_once_and_linked_once_across_replays(org):
    conn = connect(org, FakeClock())
    contacts = (
        ContactRef(last_name="Ng", first_name="Ana", email="ana.ng@contoso.example"),
        ContactRef(last_name="O'Neil", email="o'neil@contoso.example"),
    )
    the_write = OpportunityWrite(key="R-1", fields=write("R-1").fields, contacts=contacts)
    first = conn.adapter.upsert([the_write])
    second = conn.adapter.upsert([the_write])
    assert [o.action for o in first + second] == ["created", "updated"]
    assert sorted(r["Email"] for r in org.salesforce.store.records("Contact")) == [
        "ana.ng@contoso.example",
        "o'neil@contoso.example",
    ]
    roles = org.salesforce.store.records("OpportunityContactRole")
    assert len(roles) == 2
    assert {r["OpportunityId"][:15] for r in roles} == {first[0].crm_id[:15]}


def test_accounts_are_found_by_name_and_postal_code_or_created(org):
    described = org.salesforce.org.describe("Account", "62.0") or {}
    assert "BillingPostalCode" in {f["name"] for f in described.get("fields", [])}
    conn = connect(org, FakeClock())
    account = AccountRef(name="O'Brien \\ Sons", postal_code="98052", city="Redmond")
    writes = [
        OpportunityWrite(key=k, fields=write(k).fields, account=account) for k in ("R-1", "R-2")
    ]
    first = conn.adapter.upsert(writes)
    conn.adapter.upsert(writes)
    assert [o.action for o in first] == ["created", "created"]
    assert len(org.salesforce.store.records("Account")) == 1


def test_spent_api_quota_raises_rate_limited_without_hammering(org):
    clock = FakeClock()
    conn = connect(org, clock)
    conn.adapter.upsert([write("R-1")])
    _, quota = org.salesforce.api_usage
    org.salesforce.set_api_usage(quota)
    before = count(org, "collections_upsert")
    with pytest.raises(RateLimited) as caught:
        conn.adapter.upsert([write("R-2")])
    assert caught.value.retry_after is not None
    assert caught.value.retry_after >= 60
    assert count(org, "collections_upsert") == before + 1
    assert clock.sleeps == []
    assert conn.client.api_usage is not None
    assert conn.client.api_usage.remaining == 0


def test_an_expired_token_is_replaced_exactly_once(org):
    conn = connect(org, FakeClock(), auth_mode="jwt")
    conn.adapter.upsert([write("R-1")])
    org.salesforce.expire_tokens()
    outcomes = conn.adapter.upsert([write("R-1", Amount=Decimal(5))])
    assert outcomes[0].action == "updated"
    assert count(org, "token") == 2
    assert org.log.count(service="salesforce", route="collections_upsert", status=401) == 1


def test_a_server_hiccup_is_retried_by_the_one_retry_layer(org):
    clock = FakeClock()
    conn = connect(org, clock)
    org.faults.script("salesforce", "collections_upsert", "503")
    assert conn.adapter.upsert([write("R-1")])[0].action == "created"
    assert count(org, "collections_upsert") == 2
    assert len(clock.sleeps) == 1


def test_changes_since_delivers_each_change_once_with_ties_across_pages(org):
    conn = connect(org, FakeClock(), query_batch_size=200)
    speed = org.clock.speed
    org.clock.set_speed(1e-9)  # every write of this batch gets the same SystemModstamp
    try:
        conn.adapter.upsert([write(f"R-{n:03d}") for n in range(450)])
    finally:
        org.clock.set_speed(speed)
    stamps = {r["SystemModstamp"] for r in org.salesforce.store.records("Opportunity")}
    assert len(stamps) == 1

    pages = list(conn.adapter.changes_since(None))
    delivered = [c.key for p in pages for c in p.changes]
    assert [len(p.changes) for p in pages] == [200, 200, 50]
    assert sorted(delivered) == [f"R-{n:03d}" for n in range(450)]
    first = pages[0].changes[0]
    assert (first.fields["Amount"], first.fields["CloseDate"]) == (
        Decimal("1250.5"),
        date(2025, 6, 30),
    )
    assert first.modified_at.tzinfo is not None

    cursor = pages[-1].cursor
    assert [c for p in conn.adapter.changes_since(cursor) for c in p.changes] == []

    org.clock.advance(timedelta(seconds=1))
    target = next(r for r in org.salesforce.store.records("Opportunity") if r[EXT] == "R-007")
    org.salesforce.salesperson.win(target["Id"])
    org.salesforce.store.delete("Opportunity", first.crm_id)
    after = [c for p in conn.adapter.changes_since(cursor) for c in p.changes]
    assert sorted((c.key, c.deleted, c.fields["IsWon"]) for c in after) == [
        (first.key, True, False),
        ("R-007", False, True),
    ]


def test_metadata_check_names_each_missing_field_and_picklist_value(org):
    conn = connect(org, FakeClock())
    required = [
        FieldRequirement(sobject="Opportunity", name="StageName",
                         picklist_values=("Closed Won", "Prospecting")),
        FieldRequirement(sobject="Opportunity", name="Decline_Reason__c",
                         picklist_values=("Not a fit", "Other")),
        FieldRequirement(sobject="Opportunity", name="Microsoft_Notes__c"),
        FieldRequirement(sobject="Opportunity", name="IsWon", writable=False),
    ]  # fmt: skip
    assert conn.adapter.check_metadata(required) == []

    org.salesforce.org.remove_field("Opportunity", "Microsoft_Notes__c")
    org.salesforce.org.remove_picklist_value("Opportunity", "StageName", "Closed Won")
    org.salesforce.org.remove_picklist_value("Opportunity", "Decline_Reason__c", "Other")
    org.salesforce.org.set_unique("Opportunity", EXT, False)
    problems = [str(p) for p in conn.adapter.check_metadata(required)]
    assert problems == [
        NOT_UNIQUE,
        "Opportunity.StageName: the picklist value 'Closed Won' is missing: add it",
        "Opportunity.Decline_Reason__c: the picklist value 'Other' is missing: add it",
        (
            "Opportunity.Microsoft_Notes__c: the field does not exist: create it (API name "
            "Microsoft_Notes__c) or give the integration user field-level access to it"
        ),
    ]
