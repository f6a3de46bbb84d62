"""The Salesforce simulator's org: ids, metadata, data rules, upsert, the salesperson."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.clock import SandboxClock
from sandbox.salesforce import (
    API_USER_ID,
    EXTERNAL_ID_FIELD,
    SALES_USER_ID,
    ApiError,
    MultipleMatches,
    OrgSchema,
    RecordRejected,
    RecordStore,
    SalespersonSimulator,
)
from sandbox.salesforce.values import format_datetime, id18, parse_datetime

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return SandboxClock(start=START, monotonic=lambda: 0.0)


@pytest.fixture
def store(clock):
    return RecordStore(OrgSchema(), clock)


def opp(**fields):
    return {"Name": "Contoso", "StageName": "Prospecting", "CloseDate": "2026-12-31", **fields}


def codes(exc_info):
    return [e.code for e in exc_info.value.errors]


def test_ids_are_18_characters_with_salesforce_case_safe_suffix():
    assert id18("0015000000Gv7qJ") == "0015000000Gv7qJAAR"
    assert id18("0015000000Gv7qJAAR") == "0015000000Gv7qJAAR"


def test_ids_carry_the_sobject_key_prefix(store):
    account = store.create("Account", {"Name": "Contoso"})
    contact = store.create("Contact", {"LastName": "Doe", "AccountId": account})
    opportunity = store.create("Opportunity", opp(AccountId=account))
    role = store.create(
        "OpportunityContactRole", {"OpportunityId": opportunity, "ContactId": contact}
    )
    assert [i[:3] for i in (opportunity, account, contact, role)] == ["006", "001", "003", "00K"]
    assert all(len(i) == 18 and id18(i) == i for i in (opportunity, account, contact, role))


def test_datetimes_are_written_as_salesforce_formats_them():
    assert format_datetime(datetime(2026, 11, 22, 10, 0, 0, 123456, UTC)) == (
        "2026-11-22T10:00:00.123+0000"
    )
    assert parse_datetime("2026-11-22T12:00:00+02:00") == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert parse_datetime("2026-11-22T10:00:00.000+0000") == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert parse_datetime("2026-11-22T10:00:00") is None


def test_create_requires_name_stage_and_close_date(store):
    with pytest.raises(RecordRejected) as exc:
        store.create("Opportunity", {"Amount": 5})
    [error] = exc.value.errors
    assert error.code == "REQUIRED_FIELD_MISSING"
    assert set(error.fields) == {"Name", "StageName", "CloseDate"}


def test_opportunity_name_is_at_most_120_characters(store):
    store.create("Opportunity", opp(Name="x" * 120))
    with pytest.raises(RecordRejected) as exc:
        store.create("Opportunity", opp(Name="x" * 121))
    assert codes(exc) == ["STRING_TOO_LONG"]
    assert "max length=120" in exc.value.errors[0].message


def test_stage_is_a_restricted_picklist(store):
    with pytest.raises(RecordRejected) as exc:
        store.create("Opportunity", opp(StageName="Won-ish"))
    assert codes(exc) == ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]
    assert exc.value.errors[0].fields == ("StageName",)


def test_is_won_and_is_closed_follow_the_stage_and_are_read_only(store):
    record_id = store.create("Opportunity", opp())
    record = store.get("Opportunity", record_id)
    assert (record["IsClosed"], record["IsWon"], record["Probability"]) == (False, False, 10.0)
    store.update("Opportunity", record_id, {"StageName": "Closed Won"})
    record = store.get("Opportunity", record_id)
    assert (record["IsClosed"], record["IsWon"], record["Probability"]) == (True, True, 100.0)
    assert record["ForecastCategoryName"] == "Closed"
    store.update("Opportunity", record_id, {"StageName": "Closed Lost"})
    assert store.get("Opportunity", record_id)["IsWon"] is False
    with pytest.raises(RecordRejected) as exc:
        store.update("Opportunity", record_id, {"IsWon": True})
    assert codes(exc) == ["INVALID_FIELD_FOR_INSERT_UPDATE"]


def test_currency_defaults_to_the_corporate_one_and_must_be_active(store):
    record_id = store.create("Opportunity", opp())
    assert store.get("Opportunity", record_id)["CurrencyIsoCode"] == "USD"
    store.update("Opportunity", record_id, {"CurrencyIsoCode": "EUR"})
    with pytest.raises(RecordRejected) as exc:
        store.update("Opportunity", record_id, {"CurrencyIsoCode": "XYZ"})
    assert codes(exc) == ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]
    assert "invalid currency code" in exc.value.errors[0].message


def test_every_write_stamps_system_modstamp_and_last_modified(store, clock):
    record_id = store.create("Opportunity", opp())
    created = store.get("Opportunity", record_id)
    assert created["CreatedDate"] == created["SystemModstamp"] == "2026-03-01T09:00:00.000+0000"
    clock.advance(timedelta(minutes=5))
    store.update("Opportunity", record_id, {"Amount": 10})
    updated = store.get("Opportunity", record_id)
    assert (
        updated["SystemModstamp"] == updated["LastModifiedDate"] == ("2026-03-01T09:05:00.000+0000")
    )
    assert updated["CreatedDate"] == created["CreatedDate"]
    assert updated["LastModifiedById"] == API_USER_ID


def test_external_id_is_unique_case_insensitively(store):
    first = store.create("Opportunity", opp(**{EXTERNAL_ID_FIELD: "REF-1"}))
    with pytest.raises(RecordRejected) as exc:
        store.create("Opportunity", opp(**{EXTERNAL_ID_FIELD: "ref-1"}))
    assert codes(exc) == ["DUPLICATE_VALUE"]
    assert first in exc.value.errors[0].message


def test_upsert_creates_then_updates_the_match_whatever_its_case(store):
    record_id, created = store.upsert("Opportunity", EXTERNAL_ID_FIELD, "REF-2", opp())
    assert created
    again, created = store.upsert("Opportunity", EXTERNAL_ID_FIELD, "ref-2", {"Amount": 7})
    assert (again, created) == (record_id, False)
    assert store.get("Opportunity", record_id)["Amount"] == 7.0
    assert len(store.records("Opportunity")) == 1


def test_a_non_unique_external_id_can_match_several_records(store):
    store.org.set_unique("Opportunity", EXTERNAL_ID_FIELD, False)
    store.create("Opportunity", opp(**{EXTERNAL_ID_FIELD: "DUP"}))
    store.create("Opportunity", opp(**{EXTERNAL_ID_FIELD: "dup"}))
    with pytest.raises(MultipleMatches) as exc:
        store.upsert("Opportunity", EXTERNAL_ID_FIELD, "Dup", {"Amount": 1})
    assert len(exc.value.ids) == 2


def test_unknown_fields_and_unconvertible_values_fail_the_whole_request(store):
    with pytest.raises(ApiError) as exc:
        store.create("Opportunity", opp(Nope__c="x"))
    assert exc.value.code == "INVALID_FIELD"
    with pytest.raises(ApiError) as exc:
        store.create("Opportunity", opp(CloseDate="31/12/2026"))
    assert exc.value.code == "JSON_PARSER_ERROR"
    with pytest.raises(ApiError) as exc:
        store.create("Opportunity", opp(Amount="100"))
    assert exc.value.code == "JSON_PARSER_ERROR"


def test_datetime_fields_are_normalised_to_utc(store):
    record_id = store.create(
        "Opportunity", opp(Partner_Center_Expires__c="2026-11-22T12:00:00+02:00")
    )
    assert store.get("Opportunity", record_id)["Partner_Center_Expires__c"] == (
        "2026-11-22T10:00:00.000+0000"
    )


def test_references_must_be_well_formed_of_the_right_type_and_exist(store):
    contact_id = store.create("Contact", {"LastName": "Doe"})
    with pytest.raises(RecordRejected) as exc:
        store.create("Opportunity", opp(AccountId="nope"))
    assert codes(exc) == ["MALFORMED_ID"]
    with pytest.raises(RecordRejected) as exc:
        store.create("Opportunity", opp(AccountId=contact_id))
    assert codes(exc) == ["FIELD_INTEGRITY_EXCEPTION"]
    with pytest.raises(RecordRejected) as exc:
        store.create("Opportunity", opp(AccountId=id18("001000000000999")))
    assert codes(exc) == ["INVALID_CROSS_REFERENCE_KEY"]


def test_atomic_undoes_every_write_of_a_failed_block(store):
    kept = store.create("Opportunity", opp(Name="kept"))

    def failing_batch():
        with store.atomic():
            store.create("Opportunity", opp(Name="gone"))
            store.update("Opportunity", kept, {"Name": "changed"})
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing_batch()
    assert [r["Name"] for r in store.records("Opportunity")] == ["kept"]


def test_deleted_records_are_hidden_unless_asked_for(store):
    record_id = store.create("Opportunity", opp())
    store.delete("Opportunity", record_id)
    assert store.get("Opportunity", record_id) is None
    assert store.records("Opportunity") == []
    assert store.records("Opportunity", include_deleted=True)[0]["IsDeleted"] is True
    with pytest.raises(ApiError) as exc:
        store.update("Opportunity", record_id, {"Amount": 1})
    assert exc.value.code == "ENTITY_IS_DELETED"


def test_removed_field_disappears_and_cannot_be_written(store):
    record_id = store.create("Opportunity", opp(Partner_Center_Status__c="New"))
    store.org.remove_field("Opportunity", "Partner_Center_Status__c")
    assert "Partner_Center_Status__c" not in store.get("Opportunity", record_id)
    with pytest.raises(ApiError):
        store.update("Opportunity", record_id, {"Partner_Center_Status__c": "x"})


def test_removed_picklist_value_is_refused_on_new_writes(store):
    store.org.remove_picklist_value("Opportunity", "StageName", "Needs Analysis")
    with pytest.raises(RecordRejected) as exc:
        store.create("Opportunity", opp(StageName="Needs Analysis"))
    assert codes(exc) == ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]


def test_updated_ids_are_those_modified_in_the_window(store, clock):
    old = store.create("Opportunity", opp())
    clock.advance(timedelta(minutes=10))
    new = store.create("Opportunity", opp())
    window_start = START + timedelta(minutes=5)
    assert store.updated_ids("Opportunity", window_start, START + timedelta(hours=1)) == [new]
    assert old not in store.updated_ids("Opportunity", window_start, START + timedelta(hours=1))


# -- the salesperson ------------------------------------------------------------------------


@pytest.fixture
def salesperson(store):
    return SalespersonSimulator(store)


def referral(store, ref="REF-9"):
    return store.create("Opportunity", opp(**{EXTERNAL_ID_FIELD: ref}))


def test_accept_moves_past_prospecting_with_amount_and_close_date(store, salesperson):
    record_id = referral(store)
    record = salesperson.accept(record_id, 25_000, "2026-10-31")
    assert (record["StageName"], record["Amount"], record["CloseDate"]) == (
        "Qualification",
        25_000.0,
        "2026-10-31",
    )
    assert record["LastModifiedById"] == SALES_USER_ID
    with pytest.raises(ValueError, match="open stage"):
        salesperson.accept(record_id, 1, "2026-10-31", stage="Prospecting")


def test_win_lose_and_decline_close_the_opportunity(store, salesperson):
    won, lost, declined = referral(store, "A"), referral(store, "B"), referral(store, "C")
    assert salesperson.win(won)["IsWon"] is True
    record = salesperson.lose(lost, "Price")
    assert (record["IsClosed"], record["IsWon"], record["Loss_Reason__c"]) == (True, False, "Price")
    record = salesperson.decline(declined, "No capacity")
    assert (record["StageName"], record["Decline_Reason__c"]) == ("Closed Lost", "No capacity")
    with pytest.raises(RecordRejected):
        salesperson.decline(declined, "Because")


def test_edit_changes_amount_and_close_date(store, salesperson):
    record_id = referral(store)
    record = salesperson.edit(record_id, amount=9.5, close_date="2027-01-15")
    assert (record["Amount"], record["CloseDate"]) == (9.5, "2027-01-15")


def test_random_steps_are_reproducible_and_stop_when_all_is_closed(store, clock):
    for ref in ("R1", "R2", "R3"):
        referral(store, ref)
    steps = []
    salesperson = SalespersonSimulator(store)
    rng = random.Random(7)
    for _ in range(100):
        action = salesperson.random_step(rng)
        if action is None:
            break
        steps.append(action.kind)
    assert steps
    assert salesperson.random_step(rng) is None
    assert all(r["IsClosed"] for r in store.records("Opportunity"))
