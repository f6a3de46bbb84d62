"""The simulator's OData subset: $filter parsing and matching, $orderby, paging tokens."""

from __future__ import annotations

import re

import pytest

from sandbox.partner_center.listing import (
    ListQuery,
    PageTokens,
    parse_list_args,
    run_query,
)
from sandbox.partner_center.odata import (
    ODataError,
    OrderKey,
    parse_filter,
    parse_orderby,
    sort_referrals,
    tokenize,
)

GUID = "0ee9d55d-6a0e-4a28-a3a3-1c6e0b0e3c11"


def referral(**fields):
    base = {
        "id": "r1",
        "engagementId": GUID,
        "status": "New",
        "substatus": "Pending",
        "qualification": "SalesQualified",
        "direction": "Incoming",
        "updatedDateTime": "2026-01-01T00:00:00.0000000Z",
        "createdDateTime": "2025-12-01T00:00:00.0000000Z",
        "customerProfile": {"address": {"country": "US"}},
        "team": [{"email": "Jane.Doe@contoso.com"}, {"email": "joe@contoso.com"}],
    }
    return base | fields


def matches(text, raw=None):
    return parse_filter(text).matches(raw if raw is not None else referral())


# -- tokens --------------------------------------------------------------------------------


def test_tokenizer_tells_guids_datetimes_strings_and_names_apart():
    kinds = [t.kind for t in tokenize(f"engagementId eq {GUID} and x ge 2026-01-01T00:00:00Z")]
    assert kinds == ["NAME", "NAME", "GUID", "NAME", "NAME", "NAME", "DATETIME", "EOF"]


def test_tokenizer_reads_a_guid_that_starts_with_letters_as_a_guid():
    assert tokenize("abcdef01-0000-4000-8000-000000000000")[0].kind == "GUID"


def test_tokenizer_refuses_a_stray_character():
    with pytest.raises(ODataError, match="unexpected character '#' at position 7"):
        tokenize("status #")


# -- filter: the documented examples -------------------------------------------------------


def test_quoted_and_unquoted_guids_both_match_engagement_id():
    assert matches(f"engagementId eq '{GUID}'")
    assert matches(f"engagementId eq {GUID}")
    assert matches(f"engagementId eq {GUID.upper()}")
    assert not matches("engagementId eq 11111111-1111-4111-8111-111111111111")


def test_status_and_qualification_combined_with_and():
    assert matches("status eq 'New' and qualification eq 'SalesQualified'")
    assert not matches("status eq 'New' and qualification eq 'Direct'")


def test_nested_country_and_direction():
    assert matches("customerProfile/address/country eq 'US' and direction eq 'Incoming'")
    assert not matches("customerProfile/address/country eq 'BR'")


def test_nested_field_missing_from_the_referral_is_null():
    raw = referral(customerProfile=None)
    assert not matches("customerProfile/address/country eq 'US'", raw)
    assert matches("customerProfile/address/country eq null", raw)
    assert matches("customerProfile/address/country ne 'US'", raw)


def test_email_matches_any_team_member_case_insensitively():
    assert matches("email eq 'jane.doe@contoso.com'")
    assert matches("email eq 'joe@contoso.com'")
    assert not matches("email eq 'ann@contoso.com'")
    assert matches("email ne 'ann@contoso.com'")
    assert not matches("email ne 'joe@contoso.com'")


def test_parentheses_group_conjunctions():
    assert matches("(status eq 'New' and substatus eq 'Pending') and direction eq 'Incoming'")


def test_a_quote_inside_a_string_is_doubled():
    assert matches(
        "customerProfile/address/country eq 'O''Brien'",
        referral(customerProfile={"address": {"country": "O'Brien"}}),
    )


# -- filter: datetimes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [("eq", True), ("ne", False), ("gt", False), ("ge", True), ("lt", False), ("le", True)],
)
def test_datetime_comparisons_with_an_unquoted_literal(op, expected):
    assert matches(f"updatedDateTime {op} 2026-01-01T00:00:00Z") is expected


def test_datetime_literal_may_be_quoted_and_carry_an_offset():
    assert matches("updatedDateTime eq '2026-01-01T01:00:00+01:00'")
    assert matches("updatedDateTime ge 2025-12-31T23:59:59.9999999Z")


def test_seventh_fractional_digit_counts():
    raw = referral(updatedDateTime="2026-01-01T00:00:00.0000001Z")
    assert matches("updatedDateTime gt 2026-01-01T00:00:00Z", raw)
    assert not matches("updatedDateTime gt 2026-01-01T00:00:00.0000001Z", raw)


def test_unreadable_stored_datetime_only_satisfies_ne():
    raw = referral(updatedDateTime="yesterday")
    assert not matches("updatedDateTime ge 2000-01-01T00:00:00Z", raw)
    assert not matches("updatedDateTime lt 2100-01-01T00:00:00Z", raw)
    assert matches("updatedDateTime ne 2026-01-01T00:00:00Z", raw)


# -- filter: refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name eq 'x'", "field 'name' cannot be filtered on"),
        ("status like 'New'", "unknown operator 'like'"),
        ("status gt 'New'", "operator 'gt' cannot be used on 'status'"),
        ("status eq 'Bogus'", "'Bogus' is not a valid status"),
        ("status eq New", "needs a quoted string"),
        ("status eq 'New' or status eq 'Active'", "operator 'or' is not supported"),
        ("not status eq 'New'", "operator 'not' is not supported"),
        ("contains(name, 'x')", "function 'contains' is not supported"),
        ("updatedDateTime ge 2026-01-01", "needs a datetime with a time zone"),
        ("updatedDateTime ge '2026-01-01T00:00:00'", "needs a datetime with a time zone"),
        ("updatedDateTime ge 'soon'", "needs a datetime"),
        ("updatedDateTime gt null", "null cannot be compared with 'gt'"),
        ("engagementId eq 'not-a-guid'", "needs a GUID"),
        ("status eq 'New' and", "expected a field name"),
        ("(status eq 'New'", "expected ')'"),
        ("status eq 'New' status", "expected 'and'"),
        ("", "$filter is empty"),
    ],
)
def test_filter_refusals_say_what_is_wrong(text, message):
    with pytest.raises(ODataError, match=re.escape(message)):
        parse_filter(text)


# -- orderby -------------------------------------------------------------------------------


def test_orderby_reads_directions_and_defaults_to_ascending():
    assert parse_orderby("updatedDateTime asc, createdDateTime desc") == (
        OrderKey("updatedDateTime"),
        OrderKey("createdDateTime", descending=True),
    )
    assert parse_orderby("createdDateTime") == (OrderKey("createdDateTime"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id", "'id' cannot be used in \\$orderby"),
        ("updatedDateTime sideways", "expected ','"),
        ("updatedDateTime, updatedDateTime desc", "appears twice"),
        ("", "expected a field name"),
    ],
)
def test_orderby_refusals(text, message):
    with pytest.raises(ODataError, match=message):
        parse_orderby(text)


def test_sort_breaks_ties_by_id_in_both_directions_and_puts_null_lowest():
    rows = [
        {"id": "b", "updatedDateTime": "2026-01-02T00:00:00Z"},
        {"id": "c", "updatedDateTime": "2026-01-01T00:00:00Z"},
        {"id": "a", "updatedDateTime": "2026-01-01T00:00:00Z"},
        {"id": "d", "updatedDateTime": None},
    ]
    up = sort_referrals(rows, [OrderKey("updatedDateTime")])
    down = sort_referrals(rows, [OrderKey("updatedDateTime", descending=True)])
    assert [r["id"] for r in up] == ["d", "a", "c", "b"]
    assert [r["id"] for r in down] == ["b", "a", "c", "d"]


# -- query options and paging --------------------------------------------------------------


def rows(n):
    return [
        referral(id=f"r{i:04d}", updatedDateTime=f"2026-01-01T00:00:{i % 60:02d}Z")
        for i in range(n)
    ]


def args(**options):
    return {f"${k}": [v] for k, v in options.items()}


def test_pages_hold_100_and_the_last_page_has_no_next_position():
    tokens = PageTokens()
    query, position = parse_list_args(args(orderby="updatedDateTime asc"), tokens)
    data = rows(250)
    seen, positions = [], []
    while True:
        page = run_query(data, query, position)
        seen += [r["id"] for r in page.value]
        positions.append(position)
        if page.next_position is None:
            break
        query, position = tokens.decode(tokens.encode(query, page.next_position))
    assert positions == [0, 100, 200]
    assert len(seen) == len(set(seen)) == 250


def test_top_and_skip_cut_the_window_and_page_inside_it():
    data = rows(300)
    query = ListQuery(top=150, skip=20)
    first = run_query(data, query, query.skip)
    assert [r["id"] for r in first.value][:1] == ["r0020"]
    assert len(first.value) == 100
    second = run_query(data, query, first.next_position or 0)
    assert len(second.value) == 50
    assert second.next_position is None


def test_small_top_gives_one_short_page():
    page = run_query(rows(10), ListQuery(top=3), 0)
    assert len(page.value) == 3
    assert page.next_position is None


def test_count_is_the_whole_filtered_result():
    page = run_query(rows(120), ListQuery(count=True, top=5), 0)
    assert page.count == 120


def test_select_keeps_only_the_named_properties():
    page = run_query(rows(1), ListQuery(select="id,status"), 0)
    assert page.value == [{"id": "r0000", "status": "New"}]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (args(top="-1"), "\\$top must be a non-negative integer"),
        (args(skip="x"), "\\$skip must be a non-negative integer"),
        (args(count="yes"), "\\$count must be true or false"),
        (args(expand="team"), "query option \\$expand is not supported"),
        (args(select="id,nope"), "'nope' cannot be selected"),
        (args(filter="nope eq 'x'"), "field 'nope' cannot be filtered on"),
        ({"$top": ["1", "2"]}, "given more than once"),
        (args(skiptoken="abc", top="5"), "cannot be combined"),
    ],
)
def test_bad_query_options_are_refused(given, message):
    with pytest.raises(ODataError, match=message):
        parse_list_args(given, PageTokens())


def test_arguments_without_a_dollar_are_ignored():
    query, position = parse_list_args({"api-version": ["1.0"]}, PageTokens())
    assert (query, position) == (ListQuery(), 0)


def test_a_tampered_skiptoken_is_refused():
    tokens = PageTokens()
    token = tokens.encode(ListQuery(filter="status eq 'New'"), 100)
    payload, signature = token.split(".")
    forged = PageTokens().encode(ListQuery(filter="status eq 'New'"), 5)
    for bad in (payload + "A." + signature, forged, "garbage", token[:-2]):
        with pytest.raises(ODataError, match="\\$skiptoken is not valid"):
            parse_list_args(args(skiptoken=bad), tokens)


def test_a_skiptoken_round_trips_the_whole_query():
    tokens = PageTokens()
    query = ListQuery(filter="status eq 'New'", orderby="updatedDateTime desc", top=300, count=True)
    assert parse_list_args(args(skiptoken=tokens.encode(query, 200)), tokens) == (query, 200)
