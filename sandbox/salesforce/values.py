"""Salesforce's wire formats: 18-character ids, dates, datetimes, and JSON values per field type.

Dates are ``"YYYY-MM-DD"``; datetimes are written the way Salesforce writes them,
``"2026-11-22T10:00:00.000+0000"`` (UTC, milliseconds), and read in any ISO 8601 form with an
offset (``Z``, ``+00:00``, ``+0000``). Records keep these strings, so what the store holds is
what the API answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sandbox.salesforce.errors import ApiError, RecordError
from sandbox.salesforce.schema import NUMBER_TYPES, TEXT_TYPES, FieldDef

__all__ = [
    "format_datetime",
    "id18",
    "parse_date",
    "parse_datetime",
    "same_id",
    "to_wire",
]

_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})$"
)


def id18(record_id: str) -> str:
    """The case-safe 18-character form of a 15- or 18-character id."""
    base = record_id[:15]
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(base[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix += _SUFFIX_CHARS[bits]
    return base + suffix


def is_id(value: str) -> bool:
    return bool(_ID_RE.match(value)) and (len(value) == 15 or id18(value) == value)


def same_id(a: str, b: str) -> bool:
    return a[:15] == b[:15]


def format_datetime(moment: datetime) -> str:
    """``2026-11-22T10:00:00.000+0000``: UTC, milliseconds, as Salesforce formats them."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime | None:
    """An aware UTC datetime from ISO 8601 with an offset, else ``None``."""
    match = _DATETIME_RE.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment


def parse_date(text: str) -> date | None:
    if not _DATE_RE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _json_error(fdef: FieldDef, value: object) -> ApiError:
    kind = {"date": "date", "datetime": "datetime", "boolean": "boolean"}.get(fdef.type)
    kind = kind or ("double" if fdef.type in NUMBER_TYPES else "String")
    return ApiError.malformed(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {json_repr(value)} value for field "
        f"{fdef.name} or request may be missing a required field at [line:1, column:1]",
    )


def json_repr(value: object) -> str:
    """How Salesforce's JSON parser names a value in its errors."""
    if isinstance(value, str):
        return f"VALUE_STRING {value}"
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int | float):
        return f"VALUE_NUMBER {value}"
    return "START_OBJECT" if isinstance(value, dict) else "START_ARRAY"


def _text(fdef: FieldDef, value: object) -> tuple[object, RecordError | None]:
    if not isinstance(value, str):
        raise _json_error(fdef, value)
    if fdef.type not in ("id", "reference"):
        return value, None
    if not is_id(value):
        message = f"{fdef.label}: id value of incorrect type: {value}"
        return None, RecordError("MALFORMED_ID", message, (fdef.name,))
    return id18(value), None


def _boolean(fdef: FieldDef, value: object) -> tuple[object, RecordError | None]:
    if not isinstance(value, bool):
        raise _json_error(fdef, value)
    return value, None


def _number(fdef: FieldDef, value: object) -> tuple[object, RecordError | None]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _json_error(fdef, value)
    return round(float(value), fdef.scale), None


def _date(fdef: FieldDef, value: object) -> tuple[object, RecordError | None]:
    if not isinstance(value, str) or parse_date(value) is None:
        raise _json_error(fdef, value)
    return value, None


def _datetime(fdef: FieldDef, value: object) -> tuple[object, RecordError | None]:
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        raise _json_error(fdef, value)
    return format_datetime(moment), None


_CONVERTERS: dict[str, Callable[[FieldDef, object], tuple[object, RecordError | None]]] = {
    **dict.fromkeys(TEXT_TYPES, _text),
    **dict.fromkeys(NUMBER_TYPES, _number),
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
}


def to_wire(fdef: FieldDef, value: object) -> tuple[object, RecordError | None]:
    """The stored form of a JSON ``value`` for ``fdef``, or a per-record error.

    Values JSON cannot turn into the field's type raise :class:`ApiError` 400
    ``JSON_PARSER_ERROR`` (the whole request fails, as Salesforce's deserializer does)."""
    if value is None:
        return None, None
    return _CONVERTERS[fdef.type](fdef, value)
