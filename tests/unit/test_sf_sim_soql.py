"""The Salesforce simulator's SOQL: tokenizer, parser, schema checks and evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.clock import SandboxClock
from sandbox.salesforce import EXTERNAL_ID_FIELD, OrgSchema, RecordRejected, RecordStore, SoqlError
from sandbox.salesforce.soql import BoolOp, Compare, InList, Like, Not, execute, parse, tokenize

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return SandboxClock(start=NOW, monotonic=lambda: 0.0)


@pytest.fixture
def store(clock):
    store = RecordStore(OrgSchema(), clock)
    contoso = store.create("Account", {"Name": "Contoso"})
    fabrikam = store.create("Account", {"Name": "Fabrikam"})
    rows = [
        ("Alpha", "Prospecting", "2026-03-01", 100, contoso, "R-1"),
        ("beta", "Closed Won", "2026-03-10", 300, fabrikam, "R-2"),
        ("Gamma 50%", "Closed Lost", "2026-04-01", None, None, "R-3"),
        ("O'Brien", "Qualification", "2026-03-11", 200, contoso, None),
    ]
    for name, stage, close, amount, account, ref in rows:
        fields = {"Name": name, "StageName": stage, "CloseDate": close, "Amount": amount}
        if account:
            fields["AccountId"] = account
        if ref:
            fields[EXTERNAL_ID_FIELD] = ref
        store.create("Opportunity", fields)
        clock.advance(timedelta(minutes=1))
    return store


def run(store, text, **kw):
    return execute(text, store.org, store, now=NOW, version="62.0", **kw)


def names(store, where, order="Name"):
    result = run(store, f"SELECT Name FROM Opportunity WHERE {where} ORDER BY {order}")  # noqa: S608 - SOQL under test, not SQL
    return [r["Name"] for r in result.records]


def error(store, text):
    with pytest.raises(SoqlError) as exc:
        run(store, text)
    return exc.value


# -- tokens and syntax -----------------------------------------------------------------------


def test_strings_take_soql_escapes():
    [_, token, _] = [t for t in tokenize(r"x = 'O\'Brien \\ \n'") if t.kind != "op"]
    assert token.value == "O'Brien \\ \n"


@pytest.mark.parametrize(
    "text",
    [
        r"SELECT Id FROM Opportunity WHERE Name = 'a\qb'",
        "SELECT Id FROM Opportunity WHERE Name = 'open",
    ],
)
def test_bad_string_literals_are_malformed(text):
    with pytest.raises(SoqlError) as exc:
        parse(text)
    assert exc.value.code == "MALFORMED_QUERY"


def test_parse_builds_the_whole_query():
    query = parse(
        "select Id, Account.Name from Opportunity where (Amount > 10 or Amount = null) "
        "and not StageName in ('Closed Won') and Name like 'A%' "
        "order by CloseDate desc nulls first, Name limit 5 offset 1"
    )
    assert [f.path for f in query.fields] == ["Id", "Account.Name"]
    assert query.sobject == "Opportunity"
    assert isinstance(query.where, BoolOp)
    assert query.where.op == "AND"
    first, second, third = query.where.operands
    assert isinstance(first, BoolOp)
    assert first.op == "OR"
    assert isinstance(second, Not)
    assert isinstance(second.operand, InList)
    assert isinstance(third, Like)
    assert [(o.field.path, o.descending, o.nulls_first) for o in query.order_by] == [
        ("CloseDate", True, True),
        ("Name", False, True),
    ]
    assert (query.limit, query.offset) == (5, 1)


def test_date_and_datetime_literals_are_typed():
    query = parse(
        "SELECT Id FROM Opportunity WHERE CloseDate >= 2026-01-31 "
        "AND SystemModstamp > 2026-01-31T10:00:00.000+02:00"
    )
    assert isinstance(query.where, BoolOp)
    first, second = query.where.operands
    assert isinstance(first, Compare)
    assert first.value.kind == "date"
    assert isinstance(second, Compare)
    assert second.value.value == datetime(2026, 1, 31, 8, tzinfo=UTC)


def test_and_and_or_cannot_mix_without_parentheses():
    with pytest.raises(SoqlError) as exc:
        parse("SELECT Id FROM Opportunity WHERE Amount > 1 AND Amount < 5 OR Name = 'x'")
    assert exc.value.code == "MALFORMED_QUERY"


def test_malformed_queries_say_where(store):
    exc = error(store, "SELECT Id FORM Opportunity")
    assert exc.code == "MALFORMED_QUERY"
    assert "ERROR at Row:1:Column:11" in exc.message
    assert "unexpected token: FORM" in exc.message


# -- schema checks ---------------------------------------------------------------------------


def test_unknown_object_field_and_relationship_are_refused(store):
    assert error(store, "SELECT Id FROM Opportunityy").code == "INVALID_TYPE"
    exc = error(store, "SELECT Id, Nope__c FROM Opportunity")
    assert exc.code == "INVALID_FIELD"
    assert "No such column 'Nope__c' on entity 'Opportunity'" in exc.message
    assert (
        "Didn't understand relationship 'Acount'"
        in error(store, "SELECT Acount.Name FROM Opportunity").message
    )


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ("CloseDate = '2026-03-01'", "must be of type date and should not be enclosed in quotes"),
        ("SystemModstamp > 2026-03-01", "must be of type dateTime"),
        ("Amount > '5'", "must be of type double"),
        ("Name = 5", "must be of type string and should be enclosed in quotes"),
        ("IsWon = 'true'", "must be of type boolean"),
    ],
)
def test_filter_values_must_have_the_field_type(store, where, fragment):
    exc = error(store, f"SELECT Id FROM Opportunity WHERE {where}")  # noqa: S608 - SOQL under test, not SQL
    assert exc.code == "INVALID_FIELD"
    assert fragment in exc.message


def test_ids_in_filters_must_be_15_or_18_characters(store):
    exc = error(store, "SELECT Id FROM Opportunity WHERE Id = 'abc'")
    assert exc.code == "INVALID_QUERY_FILTER_OPERATOR"
    assert "invalid ID field: abc" in exc.message


def test_long_text_areas_cannot_be_filtered_or_sorted(store):
    assert (
        "can not be filtered"
        in error(store, "SELECT Id FROM Opportunity WHERE Microsoft_Notes__c = 'x'").message
    )
    assert (
        "can not be sorted"
        in error(store, "SELECT Id FROM Opportunity ORDER BY Description").message
    )


# -- evaluation ------------------------------------------------------------------------------


def test_records_have_attributes_and_canonical_field_names(store):
    [record] = run(
        store, "select id, NAME, account.name from opportunity where name = 'alpha'"
    ).records
    assert list(record) == ["attributes", "Id", "Name", "Account"]
    assert record["attributes"] == {
        "type": "Opportunity",
        "url": f"/services/data/v62.0/sobjects/Opportunity/{record['Id']}",
    }
    assert record["Account"]["Name"] == "Contoso"
    assert record["Account"]["attributes"]["type"] == "Account"


def test_a_missing_parent_is_null(store):
    [record] = run(store, "SELECT Account.Name FROM Opportunity WHERE Name LIKE 'Gamma%'").records
    assert record["Account"] is None


def test_text_equality_is_case_insensitive_and_quotes_escape(store):
    assert names(store, "Name = 'ALPHA'") == ["Alpha"]
    assert names(store, r"Name = 'O\'Brien'") == ["O'Brien"]


def test_not_equal_and_not_in_include_nulls(store):
    assert names(store, "Amount != 100") == ["beta", "Gamma 50%", "O'Brien"]
    assert names(store, f"{EXTERNAL_ID_FIELD} NOT IN ('R-1', 'R-2')") == ["Gamma 50%", "O'Brien"]
    assert names(store, "Amount = null") == ["Gamma 50%"]


def test_comparisons_on_numbers_dates_and_datetimes(store):
    assert names(store, "Amount >= 200") == ["beta", "O'Brien"]
    assert names(store, "CloseDate < 2026-03-11") == ["Alpha", "beta"]
    assert names(store, "SystemModstamp > 2026-03-10T12:01:00Z") == ["Gamma 50%", "O'Brien"]
    assert names(store, "SystemModstamp >= 2026-03-10T14:02:00.000+02:00") == [
        "Gamma 50%",
        "O'Brien",
    ]


def test_boolean_and_or_not_and_in(store):
    assert names(store, "IsClosed = true AND IsWon = false") == ["Gamma 50%"]
    assert names(store, "(IsWon = true OR Amount < 150) AND NOT Name = 'Alpha'") == ["beta"]
    assert names(store, "StageName IN ('prospecting', 'Qualification')") == ["Alpha", "O'Brien"]


def test_like_has_wildcards_and_escapes(store):
    assert names(store, "Name LIKE '%a'") == ["Alpha", "beta"]
    assert names(store, "Name LIKE 'b_ta'") == ["beta"]
    assert names(store, r"Name LIKE '%50\%'") == ["Gamma 50%"]
    assert names(store, r"Name LIKE '%5\%'") == []


def test_relationship_fields_filter(store):
    assert names(store, "Account.Name = 'contoso'") == ["Alpha", "O'Brien"]


def test_relative_date_literals_use_the_clock(store):
    assert names(store, "CloseDate = TODAY") == ["beta"]
    assert names(store, "CloseDate = LAST_N_DAYS:9") == ["Alpha", "beta"]
    assert names(store, "CloseDate > TODAY") == ["Gamma 50%", "O'Brien"]


def test_order_by_puts_nulls_first_ascending_and_last_descending(store):
    assert names(store, "Name != null", "Amount") == ["Gamma 50%", "Alpha", "O'Brien", "beta"]
    assert names(store, "Name != null", "Amount DESC") == ["beta", "O'Brien", "Alpha", "Gamma 50%"]
    assert names(store, "Name != null", "Amount NULLS LAST") == [
        "Alpha",
        "O'Brien",
        "beta",
        "Gamma 50%",
    ]
    assert names(store, "Name != null", "Account.Name DESC, Name") == [
        "beta",
        "Alpha",
        "O'Brien",
        "Gamma 50%",
    ]


def test_limit_offset_and_count(store):
    result = run(store, "SELECT Name FROM Opportunity ORDER BY CloseDate LIMIT 2 OFFSET 1")
    assert [r["Name"] for r in result.records] == ["beta", "O'Brien"]
    counted = run(store, "SELECT COUNT() FROM Opportunity WHERE IsClosed = false")
    assert counted.count_only
    assert counted.total_size == 2


def test_query_all_includes_deleted_records(store):
    [gone] = [r for r in store.records("Opportunity") if r["Name"] == "Alpha"]
    store.delete("Opportunity", gone["Id"])
    text = "SELECT Name, IsDeleted FROM Opportunity WHERE IsDeleted = true"
    assert run(store, text).records == []
    [record] = run(store, text, include_deleted=True).records
    assert record["Name"] == "Alpha"


def test_ids_match_in_15_or_18_characters(store):
    [record] = [r for r in store.records("Opportunity") if r["Name"] == "beta"]
    assert names(store, f"Id = '{record['Id'][:15]}'") == ["beta"]
    assert names(store, f"Id IN ('{record['Id']}')") == ["beta"]


# -- indexed lookups answer as a scan would ---------------------------------------------------


def ids(store, text, **kw):
    return [r["Id"] for r in run(store, text, **kw).records]


def test_equality_and_in_lookups_ignore_case_as_salesforce_does(store):
    assert names(store, "Name = 'ALPHA'") == ["Alpha"]
    assert names(store, "Name IN ('BETA', 'gamma 50%', 'nobody')") == ["beta", "Gamma 50%"]
    assert names(store, f"{EXTERNAL_ID_FIELD} IN ('r-1', 'R-2')") == ["Alpha", "beta"]


def test_an_edited_field_is_found_by_its_new_value_only(store):
    alpha = store.find("Opportunity", "Name", "Alpha")[0]
    assert names(store, "Name = 'Alpha'") == ["Alpha"]  # builds the index
    store.update("Opportunity", alpha, {"Name": "Delta"})
    assert names(store, "Name = 'Alpha'") == []
    assert names(store, "Name IN ('delta', 'beta')") == ["beta", "Delta"]


def test_indexed_lookup_keeps_creation_order_without_order_by(store):
    first = store.create("Account", {"Name": "Twin"})
    second = store.create("Account", {"Name": "twin"})
    assert ids(store, "SELECT Id FROM Account WHERE Name = 'TWIN'") == [first, second]


def test_an_id_matches_in_15_or_18_characters(store):
    contoso = store.find("Account", "Name", "Contoso")[0]
    short = contoso[:15]
    text = f"SELECT Name FROM Opportunity WHERE AccountId IN ('{short}') ORDER BY Name"  # noqa: S608 - SOQL under test
    assert [r["Name"] for r in run(store, text).records] == ["Alpha", "O'Brien"]


def test_and_or_of_indexed_terms_match_what_a_scan_matches(store):
    assert names(store, "Name IN ('Alpha', 'beta') AND StageName = 'closed won'") == ["beta"]
    assert names(store, "Name = 'Alpha' OR Amount > 250") == ["Alpha", "beta"]
    assert names(store, "(Name = 'Alpha' OR Name = 'beta') AND Amount = null") == []


def test_a_deleted_record_is_found_only_by_query_all(store):
    beta = store.find("Opportunity", "Name", "beta")[0]
    text = "SELECT Id FROM Opportunity WHERE Name = 'beta'"
    assert ids(store, text) == [beta]
    store.delete("Opportunity", beta)
    assert ids(store, text) == []
    assert ids(store, text, include_deleted=True) == [beta]


def test_a_rolled_back_batch_leaves_no_trace_in_lookups(store):
    alpha = store.find("Opportunity", "Name", "Alpha")[0]
    assert store.find("Opportunity", EXTERNAL_ID_FIELD, "R-9") == []

    def undone() -> None:
        with store.atomic():
            store.create(
                "Opportunity",
                {
                    "Name": "New",
                    "StageName": "Prospecting",
                    "CloseDate": "2026-12-31",
                    EXTERNAL_ID_FIELD: "R-9",
                },
            )
            store.update("Opportunity", alpha, {"Name": "Renamed"})
            raise RuntimeError

    with pytest.raises(RuntimeError):
        undone()
    assert store.find("Opportunity", EXTERNAL_ID_FIELD, "R-9") == []
    assert names(store, "Name IN ('Renamed', 'New')") == []
    assert names(store, "Name = 'alpha'") == ["Alpha"]


def test_unique_external_id_still_refuses_a_duplicate_in_another_case(store):
    with pytest.raises(RecordRejected) as exc:
        store.create(
            "Opportunity",
            {
                "Name": "Dup",
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
                EXTERNAL_ID_FIELD: "r-1",
            },
        )
    assert [e.code for e in exc.value.errors] == ["DUPLICATE_VALUE"]
