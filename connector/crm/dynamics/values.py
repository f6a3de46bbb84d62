"""Column values between the port (typed Python) and the Web API's JSON, by column metadata.

Out: ``Decimal`` as a JSON number, dates as ``"2026-03-31"`` (Edm.Date), aware datetimes as
UTC ``"…Z"`` (Edm.DateTimeOffset); a naive datetime is refused. In: Money/Decimal as
``Decimal``, whole numbers and status reasons as ``int``, DateOnly columns as ``date``, other
datetimes as aware UTC ``datetime``; a choice column's value is given back as its label (the
adapter does that, it holds the labels). No I/O.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from connector.crm.dynamics import wire
from connector.crm.dynamics.metadata import Column


def to_json(value: object) -> object:
    """A port value as Web API JSON (raises ValueError for what JSON cannot carry)."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite number: {value}")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"refusing to send a naive datetime: {value!r}")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    raise ValueError(f"cannot send a {type(value).__name__}")


def from_json(raw: object, column: Column) -> object:  # noqa: PLR0911 - one return per type
    """A Web API JSON value typed as the port reads it (unreadable values: as sent)."""
    if raw is None:
        return None
    kind = column.type
    try:
        if kind in wire.MONEY_TYPES and isinstance(raw, int | float | Decimal | str):
            return raw if isinstance(raw, Decimal) else Decimal(str(raw))
        if kind in (*wire.INTEGER_TYPES, wire.STATUS, wire.STATE) and isinstance(raw, int):
            return int(raw)
        if kind == "DateTime" and isinstance(raw, str):
            if column.date_only:
                return date.fromisoformat(raw[:10])
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
    except (ArithmeticError, InvalidOperation, ValueError):
        return raw
    return raw


def parse_modified(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def odata_string(text: str) -> str:
    """An OData string literal: in single quotes, a quote inside doubled (crm-apis §C2)."""
    return "'" + text.replace("'", "''") + "'"
