"""Scalar parsing: money, currencies, datetimes, dates, text and flags."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import MappingError
from connector.model.values import (
    format_close_date,
    format_datetime,
    format_decimal,
    parse_bool,
    parse_currency,
    parse_date,
    parse_datetime,
    parse_decimal,
    parse_text,
)

FIELD = "details.dealValue"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (10000, Decimal("10000")),
        ("10000", Decimal("10000")),
        (10000.5, Decimal("10000.5")),
        ("10000.50", Decimal("10000.50")),
        (0.1, Decimal("0.1")),
        (" 42 ", Decimal("42")),
        ("0", Decimal("0")),
        (".5", Decimal("0.5")),
        ("5.", Decimal("5")),
        ("+5", Decimal("5")),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_decimal_reads_numbers_and_numeric_strings_exactly(raw: object, expected: object):
    assert parse_decimal(raw, FIELD) == expected


def test_parse_decimal_keeps_the_digits_written():
    value = parse_decimal("10000.50", FIELD)
    assert value is not None
    assert str(value) == "10000.50"


@pytest.mark.parametrize(
    "raw",
    [
        "abc",
        "1,000",
        "1.000,50",
        "-5",
        -0.01,
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        float("nan"),
        float("inf"),
        "1e3",
        "$100",
        "100 USD",
        True,
        False,
        [100],
        {"value": 100},
    ],
)
def test_parse_decimal_refuses_what_it_would_have_to_guess(raw: object):
    with pytest.raises(MappingError) as caught:
        parse_decimal(raw, FIELD)
    assert caught.value.field == FIELD
    assert caught.value.value is raw or caught.value.value == raw


def test_parse_decimal_says_why_a_thousands_separator_is_refused():
    with pytest.raises(MappingError, match="ambiguous"):
        parse_decimal("1,000", FIELD)


@given(st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False))
def test_decimal_survives_format_then_parse(value: Decimal):
    assert parse_decimal(format_decimal(value), FIELD) == value


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_a_json_float_parses_to_its_shortest_decimal(value: float):
    parsed = parse_decimal(value, FIELD)
    assert parsed is not None
    assert float(parsed) == value
    assert parsed == Decimal(repr(value))


def test_format_decimal_never_uses_an_exponent():
    assert format_decimal(Decimal("1E+3")) == "1000"
    assert format_decimal(Decimal("10000.50")) == "10000.50"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("USD", "USD"), ("usd", "USD"), ("Eur", "EUR"), (" inr ", "INR"), (None, None), ("", None)],
)
def test_parse_currency_normalises_three_letter_codes(raw: object, expected: object):
    assert parse_currency(raw, "details.currency") == expected


@pytest.mark.parametrize("raw", ["US", "USDD", "$", "840", 840, "U$D", "€", True])
def test_parse_currency_refuses_other_shapes(raw: object):
    with pytest.raises(MappingError) as caught:
        parse_currency(raw, "details.currency")
    assert caught.value.field == "details.currency"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2022-02-28T17:27:47.8754901Z", datetime(2022, 2, 28, 17, 27, 47, 875490, tzinfo=UTC)),
        ("2018-10-29T21:24:52.040469Z", datetime(2018, 10, 29, 21, 24, 52, 40469, tzinfo=UTC)),
        ("2018-11-06T00:00:00Z", datetime(2018, 11, 6, tzinfo=UTC)),
        ("2018-11-06T00:00:00z", datetime(2018, 11, 6, tzinfo=UTC)),
        ("2018-02-17T00:05:39.5485487+00:00", datetime(2018, 2, 17, 0, 5, 39, 548548, tzinfo=UTC)),
        ("2024-05-03T15:50:40.5+05:30", datetime(2024, 5, 3, 10, 20, 40, 500000, tzinfo=UTC)),
        ("2024-05-03T05:20:40-0500", datetime(2024, 5, 3, 10, 20, 40, tzinfo=UTC)),
        ("2024-05-03T10:20:40.1", datetime(2024, 5, 3, 10, 20, 40, 100000, tzinfo=UTC)),
        ("2024-05-03T10:20", datetime(2024, 5, 3, 10, 20, tzinfo=UTC)),
        ("2024-05-03 10:20:40Z", datetime(2024, 5, 3, 10, 20, 40, tzinfo=UTC)),
        ("2024-05-03", datetime(2024, 5, 3, tzinfo=UTC)),
        ("2024-05-03T23:59:59.9999999Z", datetime(2024, 5, 3, 23, 59, 59, 999999, tzinfo=UTC)),
        ("0001-01-01T00:00:00", None),
        ("0001-01-01T00:00:00Z", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_datetime_returns_aware_utc(raw: object, expected: datetime | None):
    parsed = parse_datetime(raw, "createdDateTime")
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "2024-02-30T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-05-03T25:00:00Z",
        "2024-05-03T10:20:40+25:00",
        "03/05/2024",
        "2024-05-03T10:20:40ZZ",
        1714730440,
        True,
        {"date": "2024-05-03"},
    ],
)
def test_parse_datetime_refuses_garbage_naming_the_field(raw: object):
    with pytest.raises(MappingError) as caught:
        parse_datetime(raw, "createdDateTime")
    assert caught.value.field == "createdDateTime"


@given(
    st.datetimes(
        # hypothesis takes naive bounds and attaches the zones itself
        min_value=datetime(1970, 1, 1),  # noqa: DTZ001
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone.min]),
    )
)
def test_datetime_survives_format_then_parse(moment: datetime):
    assert parse_datetime(format_datetime(moment), "updatedDateTime") == moment


def test_format_datetime_writes_partner_centers_seven_digit_shape():
    moment = datetime(2022, 2, 28, 17, 27, 47, 875490, tzinfo=UTC)
    assert format_datetime(moment) == "2022-02-28T17:27:47.8754900Z"


def test_format_datetime_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="naive"):
        format_datetime(datetime(2022, 2, 28))  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-09-30T00:00:00Z", date(2024, 9, 30)),
        ("2022-06-29T23:00:00Z", date(2022, 6, 29)),
        ("2024-06-30T00:00:00-05:00", date(2024, 6, 30)),
        ("2024-12-31", date(2024, 12, 31)),
        ("0001-01-01T00:00:00", None),
        (date(2024, 1, 2), date(2024, 1, 2)),
        (datetime(2024, 1, 2, 3, tzinfo=UTC), date(2024, 1, 2)),
        (None, None),
        ("", None),
    ],
)
def test_parse_date_takes_the_calendar_date_as_written(raw: object, expected: date | None):
    assert parse_date(raw, "details.closingDateTime") == expected


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2999, 12, 31)))
def test_close_date_survives_format_then_parse(day: date):
    assert parse_date(format_close_date(day), "details.closingDateTime") == day


def test_format_close_date_is_midnight_utc():
    assert format_close_date(date(2024, 9, 30)) == "2024-09-30T00:00:00Z"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("Contoso", "Contoso"),
        (" padded ", " padded "),
        (4863040, "4863040"),
        ("São João", "São João"),
    ],
)
def test_parse_text_treats_null_and_empty_alike(raw: object, expected: str | None):
    assert parse_text(raw, "name") == expected


@pytest.mark.parametrize("raw", [True, 1.5, ["a"], {"a": 1}])
def test_parse_text_refuses_non_text(raw: object):
    with pytest.raises(MappingError) as caught:
        parse_text(raw, "name")
    assert caught.value.field == "name"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), ("true", True), ("FALSE", False), (None, None), ("", None)],
)
def test_parse_bool_reads_booleans_and_their_strings(raw: object, expected: bool | None):
    assert parse_bool(raw, "consent.consentToContact") is expected


@pytest.mark.parametrize("raw", ["yes", 1, 0, "maybe"])
def test_parse_bool_refuses_anything_else(raw: object):
    with pytest.raises(MappingError):
        parse_bool(raw, "consent.consentToContact")
