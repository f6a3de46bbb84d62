"""soql_quote: any text becomes exactly one SOQL string literal that reads back as that text.

The checker below scans a literal the way Salesforce's SOQL lexer does (single quotes, the
documented backslash escapes, any other escape is an error), so a test fails if a value could
close the literal early or leave a dangling backslash.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.crm.salesforce.soql import soql_datetime, soql_in, soql_quote

_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def scan_literal(text: str, start: int = 0) -> tuple[str, int]:
    """(decoded value, index just past the closing quote) of the literal at ``start``."""
    if text[start] != "'":
        raise ValueError("not a literal")
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            escape = text[i + 1 : i + 2]
            if escape.lower() not in _UNESCAPE and escape not in _UNESCAPE:
                raise ValueError(f"invalid escape \\{escape!r}")
            out.append(_UNESCAPE.get(escape, _UNESCAPE.get(escape.lower(), "")))
            i += 2
        elif char == "'":
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise ValueError("unterminated literal")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Contoso", "'Contoso'"),
        ("O'Brien", "'O\\'Brien'"),
        ("C:\\temp", "'C:\\\\temp'"),
        ("trailing backslash\\", "'trailing backslash\\\\'"),
        ("\\'", "'\\\\\\''"),
        ('say "hi"', "'say \\\"hi\\\"'"),
        ("line\nbreak\ttab", "'line\\nbreak\\ttab'"),
        ("", "''"),
        ("Zürich 東京", "'Zürich 東京'"),
    ],
)
def test_quotes_and_escapes_backslash_quote_and_control_characters(value, expected):
    assert soql_quote(value) == expected


@pytest.mark.parametrize(
    "attack",
    [
        "x' OR Name != '",
        "x' OR Id != null OR Name = 'y",
        "\\' OR Name != \\'",
        "x\\' OR Name != '",
        "x\\\\' OR Name LIKE '%",
        "'; DELETE FROM Account; --",
        "x') OR (Name = 'y",
        "\\",
        "'",
        "\\\\\\'",
    ],
)
def test_injection_attempts_stay_inside_one_literal(attack):
    prefix = "SELECT Id FROM Account WHERE Name = "
    query = prefix + soql_quote(attack) + " AND BillingPostalCode = '1'"
    value, end = scan_literal(query, len(prefix))
    assert value == attack
    assert query[end:] == " AND BillingPostalCode = '1'"


@given(st.text())
def test_any_text_round_trips_through_one_literal(text):
    quoted = soql_quote(text)
    value, end = scan_literal(quoted + " AND x = 'y'")
    assert value == text
    assert end == len(quoted)


def test_refuses_anything_but_text():
    with pytest.raises(TypeError):
        soql_quote(5)  # type: ignore[arg-type]


def test_in_list_quotes_every_value_and_refuses_an_empty_list():
    assert soql_in(["a@x.com", "o'neil@x.com"]) == "('a@x.com','o\\'neil@x.com')"
    with pytest.raises(ValueError, match="at least one"):
        soql_in([])


def test_datetime_literal_is_utc_and_floored_to_the_second():
    moment = datetime(2025, 3, 1, 12, 30, 5, 999_000, tzinfo=timezone(timedelta(hours=2)))
    assert soql_datetime(moment) == "2025-03-01T10:30:05Z"
    assert soql_datetime(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"
    with pytest.raises(ValueError, match="naive"):
        soql_datetime(datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test
