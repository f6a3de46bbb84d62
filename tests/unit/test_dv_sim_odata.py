"""The Dataverse simulator's ``$filter``/``$select``/``$orderby`` parser, as a table."""

from __future__ import annotations

import pytest

from sandbox.dynamics.errors import DataverseError
from sandbox.dynamics.odata import parse_filter, parse_orderby, parse_select
from sandbox.dynamics.store import Lookup
from sandbox.dynamics.tables import OPPORTUNITY

ACCOUNT = "0b1c2d3e-0000-4000-8000-000000000001"
ROWS = [
    {"opportunityid": "a", "name": "O'Brien deal", "estimatedvalue": 100.0, "statuscode": 1,
     "rs_hot": True, "estimatedclosedate": "2026-03-31", "modifiedon": "2026-01-02T10:00:00Z",
     "parentaccountid": Lookup("account", ACCOUNT)},
    {"opportunityid": "b", "name": "Contoso", "estimatedvalue": 250.0, "statuscode": 2,
     "rs_hot": False, "estimatedclosedate": "2026-06-30", "modifiedon": "2026-02-01T00:00:00Z",
     "parentaccountid": None},
    {"opportunityid": "c", "name": None, "estimatedvalue": None, "statuscode": 2,
     "rs_hot": None, "estimatedclosedate": None, "modifiedon": "2026-03-01T00:00:00Z",
     "parentaccountid": None},
]  # fmt: skip


def matching(text: str) -> list[str]:
    predicate = parse_filter(OPPORTUNITY, text)
    return [r["opportunityid"] for r in ROWS if predicate(r)]


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("name eq 'O''Brien deal'", ["a"]),
        ("name eq 'o''brien DEAL'", ["a"]),
        ("contains(name,'''')", ["a"]),
        ("startswith(name,'con')", ["b"]),
        ("endswith(name,'deal')", ["a"]),
        ("name ne 'Contoso'", ["a"]),
        ("name eq null", ["c"]),
        ("name ne null", ["a", "b"]),
        ("estimatedvalue gt 100", ["b"]),
        ("estimatedvalue ge 100", ["a", "b"]),
        ("estimatedvalue lt 250.5", ["a", "b"]),
        ("estimatedvalue le 100", ["a"]),
        ("statuscode eq 2 and estimatedvalue gt 0", ["b"]),
        ("statuscode eq 1 or statuscode eq 2 and estimatedvalue eq null", ["a", "c"]),
        ("(statuscode eq 1 or statuscode eq 2) and estimatedvalue eq null", ["c"]),
        ("not (statuscode eq 1)", ["b", "c"]),
        ("not statuscode eq 1 and rs_hot eq false", ["b"]),
        ("rs_hot eq true", ["a"]),
        ("estimatedclosedate lt 2026-04-01", ["a"]),
        ("modifiedon ge 2026-02-01T00:00:00Z", ["b", "c"]),
        ("modifiedon gt 2026-02-01T01:00:00+02:00", ["b", "c"]),
        (f"_parentaccountid_value eq {ACCOUNT}", ["a"]),
        ("_parentaccountid_value eq null", ["b", "c"]),
    ],
)
def test_filters_select_the_documented_rows(text, ids):
    assert matching(text) == ids


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name eq 'O'Brien deal'", "Syntax error"),
        ("name eq 'unterminated", "Syntax error"),
        ("name eq", "Syntax error"),
        ("(name eq 'x'", "Syntax error"),
        ("name eq 'x' and", "Syntax error"),
        ("name like 'x'", "Syntax error"),
        ("nosuch eq 1", "Could not find a property named 'nosuch'"),
        ("parentaccountid eq null", "Could not find a property named 'parentaccountid'"),
        ("name eq 1", "incompatible types"),
        ("estimatedvalue eq 'x'", "incompatible types"),
        ("estimatedclosedate lt 2026-04-01T00:00:00Z", "incompatible types"),
        ("modifiedon gt 2026-02-01", "incompatible types"),
        ("rs_hot gt true", "not supported"),
        ("estimatedvalue gt null", "cannot be used with null"),
        ("tolower(name) eq 'x'", "unknown function"),
        ("contains(estimatedvalue,'1')", "No function signature"),
        ("", "Syntax error"),
    ],
)
def test_bad_filters_are_refused_with_the_odata_code(text, message):
    with pytest.raises(DataverseError) as caught:
        parse_filter(OPPORTUNITY, text)
    assert caught.value.status == 400
    assert caught.value.code == "0x80060888"
    assert message in caught.value.message


def test_select_names_json_columns_and_refuses_lookup_names():
    assert [a.logical_name for a in parse_select(OPPORTUNITY, "name,_parentaccountid_value")] == [
        "name",
        "parentaccountid",
    ]
    assert parse_select(OPPORTUNITY, None) is None
    for bad in ("parentaccountid", "name,", "nosuch"):
        with pytest.raises(DataverseError):
            parse_select(OPPORTUNITY, bad)


def test_orderby_takes_columns_and_directions():
    order = parse_orderby(OPPORTUNITY, "estimatedvalue desc, name")
    assert [(a.logical_name, desc) for a, desc in order] == [
        ("estimatedvalue", True),
        ("name", False),
    ]
    for bad in ("name sideways", "", "name asc desc"):
        with pytest.raises(DataverseError):
            parse_orderby(OPPORTUNITY, bad)
