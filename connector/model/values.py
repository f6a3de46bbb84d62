"""Parsing and formatting of the scalar values the model is made of.

Every parser takes the raw value and the name of the field it came from, and either returns a
canonical value (``None`` for "absent") or raises :class:`~connector.errors.MappingError`
naming that field and the value. The rules, in one place:

- Text: ``None`` and ``""`` (or whitespace only) are both absent; anything else is kept exactly,
  except what no CRM or state store can hold: control characters other than tab, line feed and
  carriage return (invalid in XML 1.0, NUL is refused by PostgreSQL) and lone UTF-16 surrogates
  (JSON can carry ``"\\ud800"``, UTF-8 cannot) are refused, naming the field.
- Money: :class:`~decimal.Decimal`, never ``float``. A JSON number or a plain numeric string
  (``10000``, ``"10000"``, ``10000.5``, ``"10000.50"``). Negative, NaN, infinity, exponents in
  strings, thousands separators (``"1,000"`` reads as 1000 or as 1.0 depending on the locale),
  digits of other scripts (``"٢٥٠٠٠"``) and amounts of 10^18 or more (beyond any CRM's money
  field) are refused rather than guessed.
- Currency: ISO 4217 shape, three letters; lower case is upper-cased, anything else refused.
- Datetimes: ISO 8601, always returned aware in UTC. ``Z`` or an offset; up to 7 fractional
  digits (Partner Center writes .NET ticks), truncated to microseconds; a missing zone is read
  as UTC (the API documents every datetime as UTC). ``0001-01-01T00:00:00`` is .NET's
  ``DateTime.MinValue`` and means "not set": it reads as absent.
- Dates: ``YYYY-MM-DD`` or a datetime, whose calendar date *as written* is taken (a closing date
  written as ``2025-06-30T00:00:00-05:00`` is the 30th, not the 1st in UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from connector.errors import MappingError

__all__ = [
    "check_amount",
    "check_text",
    "format_close_date",
    "format_datetime",
    "format_decimal",
    "parse_bool",
    "parse_currency",
    "parse_date",
    "parse_datetime",
    "parse_decimal",
    "parse_text",
]

_PLAIN_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?"
    r"(?P<zone>Z|z|[+-]\d{2}:?\d{2})?)?",
    re.ASCII,
)
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_NET_MIN_YEAR = 1
_MAX_AMOUNT_DIGITS = 18  # Salesforce currency fields hold 18 digits; Dataverse money fewer


def parse_text(raw: object, field: str) -> str | None:
    """Optional text: ``None``/``""``/blank → ``None``; numbers become their digits."""
    if type(raw) is str:  # the common case first
        return check_text(raw, field) if raw.strip() else None
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise MappingError(field, raw, "expected text, got a boolean")
    if isinstance(raw, int):
        return str(raw)
    if not isinstance(raw, str):
        raise MappingError(field, raw, f"expected text, got {type(raw).__name__}")
    return check_text(raw, field) if raw.strip() else None


def check_text(text: str, field: str) -> str:
    """``text`` unchanged, unless it holds a character no CRM or state store can keep."""
    bad = _UNSTORABLE.search(text)
    if bad is not None:
        char = f"U+{ord(bad.group(0)):04X}"
        raise MappingError(field, text, f"contains {char} at {bad.start()}, which no CRM can store")
    return text


def parse_bool(raw: object, field: str) -> bool | None:
    """Optional flag: JSON booleans, or the strings ``"true"``/``"false"`` in any case."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in {"true", "false"}:
        return raw.strip().lower() == "true"
    raise MappingError(field, raw, "expected true or false")


def parse_decimal(raw: object, field: str) -> Decimal | None:
    """A non-negative amount of money, exactly as written; ``None``/``""`` → ``None``."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise MappingError(field, raw, "expected an amount, got a boolean")
    if isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        # repr() is the shortest string that reads back as this float: 10000.5, not 10000.50000001.
        value = Decimal(repr(raw))
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if "," in text:
            raise MappingError(field, raw, "thousands or decimal commas are ambiguous; refused")
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise MappingError(field, raw, "not a plain decimal number")
        value = Decimal(text)
    else:
        raise MappingError(field, raw, f"expected an amount, got {type(raw).__name__}")
    return check_amount(value, field, raw)


def check_amount(value: Decimal, field: str, raw: object | None = None) -> Decimal:
    """``value`` if it is a finite, non-negative amount; else :class:`MappingError`."""
    shown = value if raw is None else raw
    if not value.is_finite():
        raise MappingError(field, shown, "an amount must be a finite number")
    if value < 0:
        raise MappingError(field, shown, "an amount cannot be negative")
    if value and value.adjusted() >= _MAX_AMOUNT_DIGITS:
        raise MappingError(field, shown, "an amount of 10^18 or more is beyond any CRM")
    return value


def format_decimal(value: Decimal) -> str:
    """Plain positional notation, never an exponent: ``Decimal("1E+3")`` → ``"1000"``."""
    return format(value, "f")


def parse_currency(raw: object, field: str) -> str | None:
    """An ISO 4217 code (three letters), upper-cased; ``None``/``""`` → ``None``."""
    text = parse_text(raw, field)
    if text is None:
        return None
    if not _CURRENCY.fullmatch(text.strip()):
        raise MappingError(field, raw, "expected a three-letter ISO 4217 currency code")
    return text.strip().upper()


def _match_datetime(raw: object, field: str) -> re.Match[str] | None:
    text = parse_text(raw, field)
    if text is None:
        return None
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise MappingError(field, raw, "not an ISO 8601 date/time")
    return match


def _zone(match: re.Match[str]) -> timezone:
    zone = match.group("zone")
    if zone is None or zone in {"Z", "z"}:
        return UTC
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-offset if zone[0] == "-" else offset)


def _build(match: re.Match[str], field: str, raw: object) -> datetime | None:
    frac = (match.group("frac") or "")[:6].ljust(6, "0")
    try:
        day = date.fromisoformat(match.group("date"))
        if day.year == _NET_MIN_YEAR and day.month == 1 and day.day == 1:
            return None
        return datetime(
            day.year,
            day.month,
            day.day,
            int(match.group("h") or 0),
            int(match.group("m") or 0),
            int(match.group("s") or 0),
            int(frac),
            tzinfo=_zone(match),
        )
    except ValueError as exc:
        raise MappingError(field, raw, f"not a valid date/time ({exc})") from None


def parse_datetime(raw: object, field: str) -> datetime | None:
    """An aware UTC datetime; ``None``/``""``/.NET's ``0001-01-01`` → ``None``."""
    match = _match_datetime(raw, field)
    if match is None:
        return None
    moment = _build(match, field, raw)
    return None if moment is None else moment.astimezone(UTC)


def parse_date(raw: object, field: str) -> date | None:
    """A calendar date, from ``YYYY-MM-DD`` or from a datetime (its date as written)."""
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    match = _match_datetime(raw, field)
    if match is None:
        return None
    moment = _build(match, field, raw)
    return None if moment is None else moment.date()


def format_datetime(moment: datetime) -> str:
    """Partner Center's own shape: UTC, 7 fractional digits, ``Z``. Naive input is refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"refusing to format a naive datetime: {moment!r}")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def format_close_date(day: date) -> str:
    """A closing date as Partner Center stores it: midnight UTC, ``YYYY-MM-DDT00:00:00Z``."""
    return f"{day.isoformat()}T00:00:00Z"
