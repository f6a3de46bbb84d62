"""The whole sync against the sandbox: Partner Center and a Salesforce org over real TLS, real
msal and simple-salesforce, the SQLite state store, the shipped mapping."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.ports import StateStore
from connector.settings import load_settings
from connector.state import open_state_store
from connector.tour import write_sandbox_config
from connector.wiring import Connection, build_connection
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e
KEY = "Partner_Center_Referral_Id__c"


@pytest.fixture
def world(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[Sandbox, Connection, StateStore]]:
    sandbox.partner_center.store.clear()
    sandbox.salesforce.store.clear()
    sandbox.partner_center.store.seed_raw(generate_referrals(500, 11, sandbox.clock))
    settings = load_settings(write_sandbox_config(sandbox, tmp_path))
    store = open_state_store(f"sqlite:///{tmp_path}/state.db")
    connection = build_connection(settings.connections[0], store, clock=sandbox.clock)
    connection.partner_center.auth.login()
    yield sandbox, connection, store
    store.close()


def referrals(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in sandbox.partner_center.store.all_raw()}


def opportunities(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r[KEY]: r for r in sandbox.salesforce.store.records("Opportunity")}


def requests(sandbox: Sandbox) -> Counter[str]:
    return Counter(e.service for e in sandbox.log.entries())


def test_500_referrals_sync_both_ways_and_an_idle_cycle_costs_one_request_per_side(world):
    sandbox, connection, store = world
    before = referrals(sandbox)

    connection.sync.run_cycle()

    opps = opportunities(sandbox)
    assert set(opps) == set(before)
    after = referrals(sandbox)
    for rid, referral in after.items():
        opp = opps[rid]
        assert referral["externalReferenceId"] == opp["Id"] or referral["status"] == "Closed"
        assert opp["Partner_Center_Status__c"] == f"{referral['status']}/{referral['substatus']}"
        assert opp["Name"] == (referral.get("name") or referral["customerProfile"]["name"])[:120]
        assert (opp["StageName"] == "Prospecting") is (referral["status"] == "New")
    assert len(sandbox.salesforce.store.records("Account")) > 0

    salesperson = sandbox.salesforce.salesperson
    new = sorted(rid for rid, r in after.items() if r["status"] == "New")
    accepted, declined = new[:100], new[100:110]
    for rid in accepted:
        salesperson.accept(opps[rid]["Id"], 25_000, date(2027, 3, 31))
    for rid in declined:
        salesperson.decline(opps[rid]["Id"], "No capacity")
    connection.sync.run_cycle()
    for rid in accepted[:30]:
        salesperson.win(opps[rid]["Id"])
    for rid in accepted[30:50]:
        salesperson.lose(opps[rid]["Id"], "Competitor")
    connection.sync.run_cycle()
    connection.sync.run_cycle()

    final = referrals(sandbox)
    state = Counter(f"{final[r]['status']}/{final[r]['substatus']}" for r in new[:110])
    assert state == {
        "Active/Accepted": 50,
        "Closed/Won": 30,
        "Closed/Lost": 20,
        "Closed/Declined": 10,
    }
    for rid in accepted:
        assert float(final[rid]["details"]["dealValue"]) == 25_000
        assert final[rid]["details"]["closingDateTime"].startswith("2027-03-31")
        assert final[rid]["externalReferenceId"] == opps[rid]["Id"]
    assert {final[r]["statusReason"] for r in declined} == {"No capacity"}
    untouched = [rid for rid in before if rid not in new[:110]]
    assert all(final[r]["status"] == before[r]["status"] for r in untouched)
    assert opportunities(sandbox)[accepted[0]]["Partner_Center_Status__c"] == "Closed/Won"

    # Idle: once one poll has run later than the overlap window (60 s here) after the last
    # change, a poll re-reads only the high water's own instant.
    sandbox.clock.advance(timedelta(minutes=3))
    connection.sync.run_cycle()
    sandbox.log.clear()
    result = connection.sync.run_cycle()

    assert requests(sandbox) == {"partner_center": 1, "salesforce": 1}
    assert result.inbound.counts.get("received", 0) == 0
    assert result.outbound.counts.get("received", 0) == 0
    assert store.dead_letters() == []


def test_referrals_that_cannot_be_mapped_are_dead_lettered_with_the_field_named(world):
    sandbox, connection, store = world
    good = sandbox.partner_center.store.all_raw()[:3]
    sandbox.partner_center.store.clear()
    unknown_status = {**good[0], "id": "bad00000-0000-4000-8000-000000000001", "status": "Open"}
    no_customer = {k: v for k, v in good[1].items() if k != "customerProfile"}
    no_customer["id"] = "bad00000-0000-4000-8000-000000000002"
    bad_value = {**good[2], "id": "bad00000-0000-4000-8000-000000000003"}
    bad_value["details"] = {**good[2]["details"], "dealValue": "12,5 thousand"}
    sandbox.partner_center.store.seed_raw([*good, unknown_status, no_customer, bad_value])

    result = connection.sync.run_cycle()

    assert set(opportunities(sandbox)) == {r["id"] for r in good}
    dead = {d.record_id: d for d in store.dead_letters()}
    assert set(dead) == {unknown_status["id"], no_customer["id"], bad_value["id"]}
    assert dead[unknown_status["id"]].reason.startswith("status:")
    assert dead[no_customer["id"]].reason.startswith("customerProfile")
    assert dead[bad_value["id"]].reason.startswith("details.dealValue")
    assert dead[bad_value["id"]].payload["details"]["dealValue"] == "12,5 thousand"
    assert result.inbound.outcome == "partial"
