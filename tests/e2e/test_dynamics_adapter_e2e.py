"""The Dynamics stack (real msal over TLS, our https-only session) against the Dataverse
simulator: request costs, won/lost through the actions, currency and choice labels, change
tracking's delta link and its expiry, then the whole sync engine on ``mappings/dynamics.yaml``.

Every test starts from an empty environment (currencies seeded) with its default metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeClock
from structlog.testing import capture_logs

from connector.crm.dynamics.adapter import DynamicsAdapter
from connector.crm.dynamics.build import (
    DynamicsConnection,
    build_dynamics,
    build_dynamics_from_info,
    settings_from_info,
)
from connector.engine import ConnectionSync
from connector.mapping import requirements
from connector.mapping_file import load_mapping_file
from connector.ports import AccountRef, ContactRef, OpportunityWrite
from connector.settings import RetrySettings, load_settings
from connector.state import open_state_store
from connector.wiring import build_connection
from sandbox.app import Sandbox
from sandbox.dynamics import DECLINE_REASONS
from sandbox.faults import FaultPlan
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e
KEY = "rs_partnercenterreferralid"
MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "dynamics.yaml"


def empty(sandbox: Sandbox) -> None:
    sandbox.dataverse.store.clear()
    sandbox.dataverse._seed_currencies()


@pytest.fixture
def env(sandbox: Sandbox) -> Iterator[Sandbox]:
    empty(sandbox)
    yield sandbox
    sandbox.reset()
    empty(sandbox)


def connect(sandbox: Sandbox, **options: Any) -> DynamicsConnection:
    clock = FakeClock()
    return build_dynamics_from_info(
        sandbox.info,
        sandbox.info["ca_bundle"],
        retry=RetrySettings(max_attempts=4, max_seconds=120, base_seconds=1, cap_seconds=8),
        sleep=clock.sleep,
        clock=clock,
        **options,
    )


def write(key: str, **fields: Any) -> OpportunityWrite:
    base = {
        "name": f"Deal {key}",
        "statuscode": 2,
        "estimatedclosedate": date(2026, 6, 30),
        "estimatedvalue": Decimal("1250.50"),
    }
    return OpportunityWrite(key=key, fields={**base, **fields})


def rows(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r[KEY]: r for r in sandbox.dataverse.store.rows("opportunity")}


def count(sandbox: Sandbox, route: str) -> int:
    return sandbox.log.count(service="dataverse", route=route)


def drain(connection: DynamicsConnection, cursor: Any) -> tuple[list[Any], Any]:
    changes = []
    for page in connection.adapter.changes_since(cursor):
        changes.extend(page.changes)
        cursor = page.cursor
    return changes, cursor


def test_a_thousand_upserts_cost_one_batch_call_and_an_idle_poll_one_request(env):
    connection = connect(env)
    _, cursor = drain(connection, None)
    env.log.clear()

    outcomes = connection.adapter.upsert([write(f"ref-{i:04}") for i in range(1000)])

    assert Counter(o.action for o in outcomes) == {"created": 1000}
    assert count(env, "batch") == 1
    assert count(env, "upsert") == 0
    assert len(rows(env)) == 1000
    changes, cursor = drain(connection, cursor)
    assert len(changes) == 1000
    env.log.clear()
    assert drain(connection, cursor)[0] == []
    assert len(env.log.entries(service="dataverse")) == 1


def test_a_batch_of_creates_whose_reply_was_lost_is_sent_again_and_makes_each_row_once(env):
    """The simulator makes the rows, then holds the reply past the client's read timeout: the
    repeat is create-only (``If-None-Match: *``), so it finds each row and writes nothing."""
    clock = FakeClock()
    settings = replace(
        settings_from_info(env.info, env.info["ca_bundle"], retry=RetrySettings(max_attempts=2)),
        read_timeout=0.5,
    )
    connection = build_dynamics(settings, sleep=clock.sleep, clock=clock)
    connection.adapter.upsert([write("warm-up")])  # metadata and currencies read, token held
    env.faults.plan = FaultPlan.parse("dataverse:timeout_s=1")
    env.faults.script("dataverse", "batch", "timeout")
    creates = [replace(write(f"ref-{i}"), create=True) for i in range(5)]

    outcomes = connection.adapter.upsert(creates)

    assert [o.action for o in outcomes] == ["exists"] * 5
    assert len(env.log.entries(service="dataverse", route="batch")) == 2 + 1
    assert sorted(rows(env)) == ["ref-0", "ref-1", "ref-2", "ref-3", "ref-4", "warm-up"]


def test_a_thousand_and_one_upserts_take_two_batch_calls(env):
    connection = connect(env)

    outcomes = connection.adapter.upsert([write(f"ref-{i:04}") for i in range(1001)])

    assert len(outcomes) == 1001
    assert count(env, "batch") == 2


def test_won_and_lost_go_through_the_actions_and_a_closed_row_is_left_alone(env):
    connection = connect(env)
    adapter = connection.adapter
    adapter.upsert([write("open"), write("to-win"), write("to-lose")])

    outcomes = adapter.upsert(
        [
            write("to-win", statuscode=3, estimatedvalue=Decimal(5000)),
            write("to-lose", statuscode=5),
            write("born-won", statuscode=3),
            write("open", statuscode=1),
        ]
    )

    assert [o.action for o in outcomes] == ["updated", "updated", "created", "updated"]
    stored = rows(env)
    assert (stored["to-win"]["statecode"], stored["to-win"]["statuscode"]) == (1, 3)
    assert stored["to-win"]["actualvalue"] == 5000
    assert (stored["to-lose"]["statecode"], stored["to-lose"]["statuscode"]) == (2, 5)
    assert (stored["born-won"]["statecode"], stored["born-won"]["statuscode"]) == (1, 3)
    assert (stored["open"]["statecode"], stored["open"]["statuscode"]) == (0, 1)
    assert count(env, "win_opportunity") == 0  # inside the $batch, not a call of its own
    assert len(env.dataverse.store.rows("opportunityclose")) == 3

    env.log.clear()
    again = adapter.upsert(
        [write("to-win", statuscode=3, rs_partnercenterstatus="Closed/Won"), write("to-lose")]
    )

    assert [(o.action, o.crm_id) for o in again] == [
        ("updated", stored["to-win"]["opportunityid"]),
        ("updated", stored["to-lose"]["opportunityid"]),
    ]
    assert count(env, "batch") == 2  # the upsert, then one read of the closed rows
    assert len(env.dataverse.store.rows("opportunityclose")) == 3
    assert rows(env)["to-win"]["rs_partnercenterstatus"] is None


def test_a_win_written_without_a_value_takes_the_value_the_row_has_as_its_actual_revenue(env):
    """Closing an open opportunity as won with Partner Center's fields only (the engine writes
    no CRM-owned value to a record that exists): the win's actual revenue is the row's own
    estimated value, as a create's win takes the value it writes (found by the soak)."""
    connection = connect(env)
    connection.adapter.upsert([write("left-open", estimatedvalue=Decimal(153400))])

    only_pc = OpportunityWrite(key="left-open", fields={"statuscode": 3, "name": "Deal left-open"})
    [outcome] = connection.adapter.upsert([only_pc])

    assert outcome.action == "updated"
    stored = rows(env)["left-open"]
    assert (stored["statecode"], stored["statuscode"]) == (1, 3)
    assert stored["actualvalue"] == 153400


def test_the_currency_is_written_and_read_back_as_its_iso_code(env):
    connection = connect(env)
    _, cursor = drain(connection, None)
    eur = env.dataverse.currency_id("EUR")

    outcomes = connection.adapter.upsert(
        [
            write("ref-eur", transactioncurrencyid="EUR"),
            write("ref-chf", transactioncurrencyid="CHF"),
        ]
    )

    assert outcomes[0].action == "created"
    assert outcomes[1].failed
    assert "transactioncurrencyid" in (outcomes[1].reason or "")
    assert rows(env)["ref-eur"]["transactioncurrencyid"].row_id == eur
    [change] = drain(connection, cursor)[0]
    assert change.fields["transactioncurrencyid"] == "EUR"


def test_a_choice_is_written_by_label_and_read_back_as_its_label(env):
    connection = connect(env)
    _, cursor = drain(connection, None)

    outcomes = connection.adapter.upsert(
        [write("ref-1", rs_declinereason="No capacity"), write("ref-2", rs_declinereason="Bored")]
    )

    assert outcomes[0].action == "created"
    assert outcomes[1].failed
    assert "rs_declinereason" in (outcomes[1].reason or "")
    assert rows(env)["ref-1"]["rs_declinereason"] == 100000001
    [change] = drain(connection, cursor)[0]
    assert change.fields["rs_declinereason"] == "No capacity"
    assert change.fields["statuscode"] == 2
    assert change.fields["estimatedclosedate"] == date(2026, 6, 30)
    assert change.fields["estimatedvalue"] == Decimal("1250.5")


def test_a_key_with_a_quote_and_a_space_is_one_row(env):
    connection = connect(env)

    first = connection.adapter.upsert([write("O'Brien ref 1")])
    second = connection.adapter.upsert([write("O'Brien ref 1")])

    assert (first[0].action, second[0].action) == ("created", "updated")
    assert list(rows(env)) == ["O'Brien ref 1"]


def test_a_deleted_opportunity_comes_as_a_deletion(env):
    connection = connect(env)
    [outcome] = connection.adapter.upsert([write("ref-1")])
    _, cursor = drain(connection, None)
    assert outcome.crm_id is not None
    env.dataverse.store.delete("opportunity", outcome.crm_id)

    [change] = drain(connection, cursor)[0]

    assert (change.crm_id, change.deleted) == (outcome.crm_id, True)


def test_an_expired_delta_token_rebaselines_and_says_why(env):
    connection = connect(env)
    connection.adapter.upsert([write("ref-1"), write("ref-2")])
    _, cursor = drain(connection, None)
    env.clock.advance(timedelta(days=8))

    with capture_logs() as logs:
        changes, cursor = drain(connection, cursor)

    assert {c.key for c in changes} == {"ref-1", "ref-2"}
    [event] = [e for e in logs if e["event"] == "change_tracking_rebaselined"]
    assert "0x80044352" in event["reason"]
    assert drain(connection, cursor)[0] == []


def test_an_account_and_its_contacts_are_found_again_not_duplicated(env):
    connection = connect(env)
    account = AccountRef(name="Contoso", postal_code="98052", street="1 Way", state="WA")
    contacts = (ContactRef(last_name="Ng", email="ng@contoso.example"),)
    writes = [
        OpportunityWrite(key=k, fields=write(k).fields, account=account, contacts=contacts)
        for k in ("ref-1", "ref-2")
    ]

    connection.adapter.upsert(writes[:1])
    connection.adapter.upsert(writes[1:])

    store = env.dataverse.store
    [account_row] = store.rows("account")
    [contact_row] = store.rows("contact")
    assert account_row["address1_stateorprovince"] == "WA"
    assert contact_row["parentcustomerid"].row_id == account_row["accountid"]
    for row in rows(env).values():
        assert row["customerid"].row_id == account_row["accountid"]
        assert row["parentcontactid"].row_id == contact_row["contactid"]


def test_the_shipped_mapping_fits_the_default_environment(env):
    connection = connect(env)

    assert connection.adapter.check_metadata(requirements(load_mapping_file(MAPPING))) == []


# -- the whole sync ------------------------------------------------------------------------------


def referrals(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in sandbox.partner_center.store.all_raw()}


def write_config(sandbox: Sandbox, tmp_path: Path) -> Path:
    info = sandbox.info
    pc, dv = info["entra"]["partner_center"], info["entra"]["dataverse"]
    (tmp_path / "dv.secret").write_text(dv["client_secret"])
    path = tmp_path / "dynamics.toml"
    path.write_text(
        f"""
[state]
url = "sqlite:///{tmp_path}/state.db"

[[connection]]
name = "sandbox"
crm = "dynamics"
mapping = "{MAPPING}"

[connection.partner_center]
base_url = "{info["partner_center"]["base_url"]}"
authority = "{info["entra"]["authority"]}"
client_id = "{pc["client_id"]}"
auth_mode = "device_code"
token_cache = "pc-cache.json"
ca_bundle = "{info["ca_bundle"]}"
poll_overlap_seconds = 60

[connection.dynamics]
base_url = "{info["dataverse"]["base_url"]}"
authority = "{info["entra"]["authority"]}"
client_id = "{dv["client_id"]}"
client_secret_file = "dv.secret"
scope = "{info["dataverse"]["scope"]}"
ca_bundle = "{info["ca_bundle"]}"
poll_page_size = 500
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def world(env: Sandbox, tmp_path: Path) -> Iterator[tuple[Sandbox, ConnectionSync]]:
    """The shipped wiring: TOML → build_connection (metadata checked) → the engine."""
    env.partner_center.store.clear()
    env.partner_center.store.seed_raw(generate_referrals(300, 17, env.clock))
    settings = load_settings(write_config(env, tmp_path)).connections[0]
    store = open_state_store(f"sqlite:///{tmp_path}/state.db")
    connection = build_connection(settings, store, clock=env.clock, prompt=lambda _: None)
    assert isinstance(connection.crm, DynamicsAdapter)
    connection.partner_center.auth.login()
    yield env, connection.sync
    store.close()


def test_referrals_sync_to_dataverse_and_the_salespersons_moves_reach_partner_center(world):
    sandbox, sync = world
    before = referrals(sandbox)

    sync.run_cycle()

    opps = rows(sandbox)
    assert set(opps) == set(before)
    after = referrals(sandbox)
    for rid, referral in after.items():
        opp = opps[rid]
        assert (
            referral["externalReferenceId"] == opp["opportunityid"]
            or referral["status"] == "Closed"
        )
        assert (opp["statuscode"] == 2) is (referral["status"] == "New")
        closed_won = f"{referral['status']}/{referral['substatus']}" == "Closed/Won"
        assert (opp["statecode"] == 1) is closed_won
    salesperson = sandbox.dataverse.salesperson
    new = sorted(rid for rid, r in after.items() if r["status"] == "New")
    accepted, declined = new[:40], new[40:50]
    for rid in accepted:
        salesperson.accept(opps[rid]["opportunityid"], 25_000, date(2027, 3, 31))
    for rid in declined:
        salesperson.decline(opps[rid]["opportunityid"], DECLINE_REASONS[1].value)
    sync.run_cycle()
    for rid in accepted[:15]:
        salesperson.win(opps[rid]["opportunityid"])
    for rid in accepted[15:25]:
        salesperson.lose(opps[rid]["opportunityid"])
    sync.run_cycle()
    sync.run_cycle()

    final = referrals(sandbox)
    state = Counter(f"{final[r]['status']}/{final[r]['substatus']}" for r in new[:50])
    assert state == {
        "Active/Accepted": 15,
        "Closed/Won": 15,
        "Closed/Lost": 10,
        "Closed/Declined": 10,
    }
    for rid in accepted:
        assert float(final[rid]["details"]["dealValue"]) == 25_000
        assert final[rid]["details"]["closingDateTime"].startswith("2027-03-31")
    assert {final[r]["statusReason"] for r in declined} == {DECLINE_REASONS[1].label}
    untouched = [rid for rid in before if rid not in new[:50]]
    assert all(final[r]["status"] == before[r]["status"] for r in untouched)

    sandbox.clock.advance(timedelta(minutes=3))
    sync.run_cycle()
    sandbox.log.clear()
    result = sync.run_cycle()

    assert Counter(e.service for e in sandbox.log.entries()) == {
        "partner_center": 1,
        "dataverse": 1,
    }
    assert result.inbound.counts.get("received", 0) == 0
    assert result.outbound.counts.get("received", 0) == 0
