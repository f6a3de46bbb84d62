"""The Dataverse simulator's data rules, on the store directly (no HTTP)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.clock import SandboxClock
from sandbox.dynamics.actions import LOSE, WIN, close_opportunity
from sandbox.dynamics.errors import DataverseError
from sandbox.dynamics.protection import Limits, ServiceProtection
from sandbox.dynamics.query import Prefer, Query, run_query
from sandbox.dynamics.refs import EntityRef, parse_bind, parse_key
from sandbox.dynamics.salesperson import SalespersonSimulator
from sandbox.dynamics.schema import OrgSchema
from sandbox.dynamics.store import Lookup, RowStore
from sandbox.dynamics.tables import DEFAULT_TABLES

KEY = "rs_partnercenterreferralid"


@pytest.fixture
def clock():
    return SandboxClock(start=datetime(2026, 1, 1, tzinfo=UTC), monotonic=lambda: 0.0)


@pytest.fixture
def store(clock):
    rows = RowStore(OrgSchema(DEFAULT_TABLES), clock)
    rows.write("transactioncurrency", None, {"isocurrencycode": "USD", "currencyname": "Dollar"})
    return rows


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(DataverseError) as caught:
        call(*args, **kwargs)
    return caught.value.code


def new_opp(store, **fields) -> str:
    row_id, created = store.write("opportunity", None, {"name": "Deal", **fields})
    assert created
    return row_id


def test_every_write_takes_the_next_environment_wide_version(store, clock):
    first = new_opp(store)
    account, _ = store.write("account", None, {"name": "A"})
    clock.advance(timedelta(minutes=1))
    store.write("opportunity", first, {"name": "Deal 2"})
    opp, acc = store.get("opportunity", first), store.get("account", account)
    assert opp["versionnumber"] == acc["versionnumber"] + 1
    assert opp["modifiedon"] == "2026-01-01T00:01:00Z"
    assert opp["createdon"] == "2026-01-01T00:00:00Z"


def test_new_rows_get_default_state_and_the_base_currency(store):
    row = store.get("opportunity", new_opp(store))
    assert (row["statecode"], row["statuscode"]) == (0, 1)
    assert isinstance(row["transactioncurrencyid"], Lookup)
    assert row["isrevenuesystemcalculated"] is False


def test_alternate_keys_are_unique_without_case(store):
    new_opp(store, **{KEY: "REF-1"})
    assert code_of(new_opp, store, **{KEY: "ref-1"}) == "0x80040237"
    new_opp(store)  # empty keys do not collide
    new_opp(store)


def test_lookups_must_name_live_rows_of_a_target_table(store):
    ghost = Lookup("account", "0b1c2d3e-0000-4000-8000-000000000009")
    assert code_of(new_opp, store, parentaccountid=ghost) == "0x80040217"
    contact, _ = store.write("contact", None, {"lastname": "Smith"})
    assert code_of(new_opp, store, parentaccountid=Lookup("contact", contact)) == "0x80060888"


def test_status_must_belong_to_the_state(store):
    row_id = new_opp(store)
    assert code_of(store.write, "opportunity", row_id, {"statuscode": 4}) == "0x80040203"
    assert code_of(store.write, "opportunity", row_id, {"statecode": 1}) == "0x80040203"
    store.write("opportunity", row_id, {"statuscode": 2})
    assert store.get("opportunity", row_id)["statuscode"] == 2


def test_non_opportunity_tables_may_change_state_by_update(store):
    account, _ = store.write("account", None, {"name": "A"})
    store.write("account", account, {"statecode": 1})
    assert store.get("account", account)["statuscode"] == 2


def test_contact_full_name_is_computed_and_read_only(store):
    contact, _ = store.write("contact", None, {"firstname": "Ana", "lastname": "Silva"})
    assert store.get("contact", contact)["fullname"] == "Ana Silva"
    assert code_of(store.write, "contact", contact, {"fullname": "x"}) == "0x80040203"


def test_atomic_rolls_back_every_write_in_the_block(store):
    before = len(store.rows("opportunity"))

    def two_writes() -> None:
        with store.atomic():
            new_opp(store)
            new_opp(store, name="x" * 301)

    assert code_of(two_writes) == "0x80044331"
    assert len(store.rows("opportunity")) == before


def test_changes_since_lists_writes_and_tombstones(store):
    kept, gone = new_opp(store), new_opp(store)
    mark = store.version
    store.write("opportunity", kept, {"name": "changed"})
    store.delete("opportunity", gone)
    rows, deleted = store.changes_since("opportunity", mark)
    assert [r["opportunityid"] for r in rows] == [kept]
    assert [i for i, _ in deleted] == [gone]
    assert store.changes_since("opportunity", store.version) == ([], [])


def test_win_closes_and_a_closed_row_is_read_only_until_reopened(store):
    row_id = new_opp(store, estimatedvalue=10.0)
    body = {
        "Status": 3,
        "OpportunityClose": {"opportunityid@odata.bind": f"/opportunities({row_id})"},
    }

    def resolve(ref: EntityRef) -> Lookup:
        return Lookup("opportunity", str(ref.row_id))

    close_opportunity(store, WIN, body, resolve, "https://h/api/data/v9.2")
    row = store.get("opportunity", row_id)
    assert (row["statecode"], row["statuscode"], row["actualclosedate"]) == (1, 3, "2026-01-01")
    assert code_of(store.write, "opportunity", row_id, {"name": "x"}) == "0x8004022e"
    assert (
        code_of(store.write, "opportunity", row_id, {"statecode": 0, "name": "x"}) == "0x8004022e"
    )
    lose = {**body, "Status": 4}
    assert code_of(close_opportunity, store, LOSE, lose, resolve, "https://h") == "0x80040203"
    store.write("opportunity", row_id, {"statecode": 0, "statuscode": 2})
    store.write("opportunity", row_id, {"name": "open again"})
    assert len(store.rows("opportunityclose")) == 1


def test_keys_parse_guids_quoted_strings_and_integers():
    guid = "0B1C2D3E-0000-4000-8000-000000000001"
    assert parse_key(guid) == (guid.lower(), ())
    assert parse_key("a='O''Brien',b=12") == (None, (("a", "O'Brien"), ("b", 12)))
    for bad in ("a='x", "a=x", "=1", "a='x' b=1"):
        with pytest.raises(DataverseError):
            parse_key(bad)
    with pytest.raises(DataverseError) as caught:
        parse_key("a='x/y'")
    assert caught.value.code == "0x80040203"


def test_binds_accept_relative_absolute_and_key_references():
    root = "https://h/api/data/v9.2"
    guid = "0b1c2d3e-0000-4000-8000-000000000001"
    for text in (f"/accounts({guid})", f"accounts({guid})", f"{root}/accounts({guid})"):
        assert parse_bind(text, root) == EntityRef("accounts", guid)
    assert parse_bind("/accounts(accountnumber='A1')", root).key == (("accountnumber", "A1"),)
    for bad in ("", "/accounts", 7):
        with pytest.raises(DataverseError):
            parse_bind(bad, root)


def test_request_limit_counts_in_a_sliding_window(clock):
    protection = ServiceProtection(clock, Limits(requests=2, window_s=10))
    for _ in range(2):
        with protection.admit("app"):
            pass
    with pytest.raises(DataverseError) as caught, protection.admit("app"):
        pass
    assert (caught.value.status, caught.value.headers["Retry-After"]) == (429, "10")
    with protection.admit("another app"):
        pass
    clock.advance(timedelta(seconds=10))
    with protection.admit("app") as headers:
        assert headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "1"


def test_salesperson_random_steps_repeat_for_a_seed(clock):
    def steps() -> list[tuple[str, dict[str, object]]]:
        rows = RowStore(OrgSchema(DEFAULT_TABLES), clock)
        rows.write("transactioncurrency", None, {"isocurrencycode": "USD", "currencyname": "$"})
        for i in range(3):
            rows.write("opportunity", None, {"name": f"R{i}", KEY: f"R{i}", "statuscode": 2})
        person, rng = SalespersonSimulator(rows), random.Random(7)
        done = [person.random_step(rng) for _ in range(8)]
        return [(a.kind, a.fields) for a in done if a is not None]

    first = steps()
    assert first == steps()
    assert {kind for kind, _ in first} & {"accept", "decline"}


def test_a_request_limit_of_zero_refuses_even_the_first_request(clock):
    protection = ServiceProtection(clock, Limits(requests=0, window_s=300))

    with pytest.raises(DataverseError) as caught, protection.admit("app"):
        pass

    assert (caught.value.status, caught.value.code) == (429, "0x80072322")
    assert caught.value.headers["Retry-After"] == "300"


def test_accounts_have_the_address_columns_a_customer_is_found_by(store):
    account_id, _ = store.write(
        "account",
        None,
        {
            "name": "Contoso",
            "address1_line1": "1 Microsoft Way",
            "address1_city": "Redmond",
            "address1_stateorprovince": "WA",
            "address1_postalcode": "98052",
            "address1_country": "US",
        },
    )

    assert store.find_by_key("account", {"name": "contoso", "address1_postalcode": "98052"}) == (
        account_id
    )
    assert code_of(store.write, "account", None, {"name": "X", "address1_postalcode": "9" * 21})


# -- indexed lookups answer as a scan would ---------------------------------------------------


def query_ids(store, entity_set: str, text: str) -> list[str]:
    table = store.schema.by_set(entity_set)
    query = Query(args={"$filter": text}, prefer=Prefer(), url="u", root="r", expire_days=30)
    return [row[table.primary_id] for row in run_query(store, table, query).body["value"]]


def test_key_lookup_ignores_case_and_follows_an_edit(store):
    row_id = new_opp(store, **{KEY: "REF-1"})
    assert store.find_by_key("opportunity", {KEY: "ref-1"}) == row_id
    store.write("opportunity", row_id, {KEY: "REF-2"})
    assert store.find_by_key("opportunity", {KEY: "REF-1"}) is None
    assert store.find_by_key("opportunity", {KEY: "Ref-2"}) == row_id
    assert code_of(new_opp, store, **{KEY: "ref-2"}) == "0x80040237"
    new_opp(store, **{KEY: "ref-1"})  # the old value is free again


def test_filtered_queries_ignore_case_under_and_and_or(store):
    a, _ = store.write("account", None, {"name": "Contoso", "address1_postalcode": "98052"})
    b, _ = store.write("account", None, {"name": "contoso", "address1_postalcode": "10001"})
    c, _ = store.write("account", None, {"name": "Fabrikam", "address1_postalcode": "98052"})
    both = "(name eq 'CONTOSO' and address1_postalcode eq '98052') or name eq 'fabrikam'"
    assert sorted(query_ids(store, "accounts", both)) == sorted([a, c])
    assert sorted(query_ids(store, "accounts", "name eq 'contoso'")) == sorted([a, b])
    store.write("account", b, {"name": "Northwind"})
    assert query_ids(store, "accounts", "name eq 'contoso'") == [a]
    assert query_ids(store, "accounts", "name eq 'NORTHWIND'") == [b]
    store.delete("account", a)
    assert query_ids(store, "accounts", "name eq 'contoso'") == []


def test_a_lookup_column_is_found_by_its_row_id(store):
    account, _ = store.write("account", None, {"name": "A"})
    opp = new_opp(store, parentaccountid=Lookup("account", account))
    text = f"_parentaccountid_value eq {account.upper()}"
    assert query_ids(store, "opportunities", text) == [opp]


def test_a_rolled_back_block_restores_rows_keys_order_and_tombstones(store):
    first, second = new_opp(store, **{KEY: "R-1"}), new_opp(store, **{KEY: "R-2"})
    order = [r["opportunityid"] for r in store.rows("opportunity")]

    def undone() -> None:
        with store.atomic():
            store.delete("opportunity", first)
            store.write("opportunity", second, {KEY: "R-3"})
            new_opp(store, **{KEY: "R-1"})
            new_opp(store, name="x" * 301)

    assert code_of(undone) == "0x80044331"
    assert [r["opportunityid"] for r in store.rows("opportunity")] == order
    assert store.find_by_key("opportunity", {KEY: "r-1"}) == first
    assert store.find_by_key("opportunity", {KEY: "r-2"}) == second
    assert store.find_by_key("opportunity", {KEY: "r-3"}) is None
    assert store.changes_since("opportunity", 0)[1] == []
