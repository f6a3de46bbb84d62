"""JSON values in and out of Dataverse columns: the Web API's Edm types, strictly.

A value JSON cannot convert to the column's Edm type fails the request with the OData
reader's 400 (``0x80060888`` "Cannot convert the literal …"); a value of the right type that
breaks a column rule (length, option value) fails with the platform's validation codes. Stored
values are JSON-ready: date-only columns as ``"2026-03-31"`` (Edm.Date), other datetimes as UTC
``"2026-03-31T08:15:00Z"`` (Edm.DateTimeOffset, whole seconds, as Dataverse stores them),
money and decimals as numbers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime

from sandbox.dynamics.errors import OPTION_OUT_OF_RANGE, DataverseError
from sandbox.dynamics.schema import (
    BIGINT,
    BOOLEAN,
    DATETIME,
    DECIMAL,
    INTEGER,
    MEMO,
    MONEY,
    PICKLIST,
    STATE,
    STATUS,
    STRING,
    UNIQUEIDENTIFIER,
    AttributeDef,
)

__all__ = ["convert", "format_datetime", "is_guid", "parse_datetime"]

MONEY_LIMIT = 922_337_203_685_477
INT_LIMIT = 2_147_483_647
_EDM = {
    MONEY: "Edm.Decimal",
    DECIMAL: "Edm.Decimal",
    INTEGER: "Edm.Int32",
    BIGINT: "Edm.Int64",
    BOOLEAN: "Edm.Boolean",
    UNIQUEIDENTIFIER: "Edm.Guid",
}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def format_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(text: str) -> datetime | None:
    if not _DATETIME_RE.match(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def is_guid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower() and len(text) == 36
    except ValueError:
        return False


def _cannot_convert(value: object, edm: str) -> DataverseError:
    return DataverseError.odata(
        f"Cannot convert the literal '{value}' to the expected type '{edm}'."
    )


def convert(entity: str, attr: AttributeDef, value: object) -> object:
    """The stored form of ``value`` for ``attr`` (``None`` clears the column)."""
    if value is None:
        return None
    converter = _CONVERTERS.get(attr.type)
    if converter is None:
        raise DataverseError.unknown_property(attr.logical_name, entity)
    return converter(entity, attr, value)


def _integer(entity: str, attr: AttributeDef, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _cannot_convert(value, _EDM[attr.type])
    if attr.type == INTEGER and abs(value) > INT_LIMIT:
        raise DataverseError.validation(
            f"The value {value} of '{attr.logical_name}' on record of type '{entity}' is "
            "outside the valid range."
        )
    return value


def _boolean(entity: str, attr: AttributeDef, value: object) -> bool:
    if not isinstance(value, bool):
        raise _cannot_convert(value, "Edm.Boolean")
    return value


def _guid(entity: str, attr: AttributeDef, value: object) -> str:
    if not isinstance(value, str) or not is_guid(value.lower()):
        raise _cannot_convert(value, "Edm.Guid")
    return value.lower()


def _text(entity: str, attr: AttributeDef, value: object) -> str:
    if not isinstance(value, str):
        raise _cannot_convert(value, "Edm.String")
    if attr.max_length is not None and len(value) > attr.max_length:
        raise DataverseError.validation(
            f"The length of the '{attr.logical_name}' attribute of the '{entity}' entity "
            f"exceeded the maximum allowed length of '{attr.max_length}'."
        )
    return value


def _number(entity: str, attr: AttributeDef, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _cannot_convert(value, "Edm.Decimal")
    if attr.type == MONEY and abs(value) > MONEY_LIMIT:
        raise DataverseError.validation(
            f"The value {value} of '{attr.logical_name}' on record of type '{entity}' is outside "
            f"the valid range. Accepted Values: -{MONEY_LIMIT} to {MONEY_LIMIT}"
        )
    return float(value)


def _option(entity: str, attr: AttributeDef, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _cannot_convert(value, "Edm.Int32")
    if attr.option(value) is None:
        accepted = ",".join(str(o.value) for o in attr.options)
        raise DataverseError(
            400,
            OPTION_OUT_OF_RANGE,
            f"A validation error occurred. The value {value} of '{attr.logical_name}' on record "
            f"of type '{entity}' is outside the valid range. Accepted Values: {accepted}",
        )
    return value


def _datetime(entity: str, attr: AttributeDef, value: object) -> str:
    if not isinstance(value, str):
        raise _cannot_convert(value, "Edm.Date" if attr.date_only else "Edm.DateTimeOffset")
    if attr.date_only:
        if not _DATE_RE.match(value):
            raise _cannot_convert(value, "Edm.Date")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise _cannot_convert(value, "Edm.Date") from None
    moment = parse_datetime(value)
    if moment is None:
        raise _cannot_convert(value, "Edm.DateTimeOffset")
    return format_datetime(moment)


_CONVERTERS: dict[str, Callable[[str, AttributeDef, object], object]] = {
    STRING: _text,
    MEMO: _text,
    MONEY: _number,
    DECIMAL: _number,
    INTEGER: _integer,
    BIGINT: _integer,
    BOOLEAN: _boolean,
    PICKLIST: _option,
    STATE: _option,
    STATUS: _option,
    DATETIME: _datetime,
    UNIQUEIDENTIFIER: _guid,
}
