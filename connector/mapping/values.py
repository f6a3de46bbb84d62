"""Shaping values for a CRM field (the named transforms) and fingerprinting them. No I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from connector.errors import MappingError
from connector.mapping.spec import FieldMap, Transform
from connector.model.values import check_amount, check_text, format_decimal, parse_currency

__all__ = ["fingerprint", "retype", "shape", "wire_value"]

_AS_IS = frozenset({str, int, float, bool, type(None)})
"""Types :func:`wire_value` returns unchanged (tested by exact type first: most values are)."""


def shape(spec: FieldMap, value: object, warnings: list[str]) -> object:
    """``value`` as ``spec`` writes it; a value that cannot be shaped is a MappingError."""
    transform = spec.transform
    if value is None or value in ("", [], ()):
        return None
    if transform is Transform.JOIN:
        parts = value if isinstance(value, list | tuple) else [value]
        value = check_text(
            spec.separator.join(str(p) for p in parts if p not in (None, "")), spec.crm
        )
        return _cut(spec, value, warnings) if value else None
    if transform in (Transform.TEXT, Transform.TRUNCATE):
        text = check_text(value if isinstance(value, str) else str(value), spec.crm)
        if transform is Transform.TRUNCATE or spec.length is not None:
            return _cut(spec, text, warnings)
        return text
    if transform is Transform.LOOKUP:
        table = dict(spec.table)
        if str(value) not in table:
            raise MappingError(spec.crm, value, f"not in the field's lookup table ({_keys(table)})")
        return table[str(value)]
    return _typed(spec, transform, value)


def _typed(spec: FieldMap, transform: Transform, value: object) -> object:
    if transform is Transform.DECIMAL:
        return _decimal(spec.crm, value)
    if transform is Transform.CURRENCY:
        return parse_currency(value, spec.crm)
    if transform is Transform.DATE:
        if isinstance(value, datetime):
            return value.astimezone(UTC).date()
        if isinstance(value, date):
            return value
        raise MappingError(spec.crm, value, "is not a date")
    if transform is Transform.DATETIME:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
        raise MappingError(spec.crm, value, "is not an aware date and time")
    if transform is Transform.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise MappingError(spec.crm, value, "is not true or false")
    raise AssertionError(f"unhandled transform {transform}")  # pragma: no cover - enum is closed


def _decimal(field: str, value: object) -> Decimal:
    if isinstance(value, bool):
        raise MappingError(field, value, "is not a number")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise MappingError(field, value, "is not a number") from None
    return check_amount(number, field, value)


def _cut(spec: FieldMap, text: str, warnings: list[str]) -> str:
    if spec.length is not None and len(text) > spec.length:
        warnings.append(f"{spec.crm}: cut from {len(text)} to {spec.length} characters")
        return text[: spec.length]
    return text


def _keys(table: Mapping[str, object]) -> str:
    return ", ".join(sorted(table))


def wire_value(value: object) -> object:
    """A JSON-able, comparison-stable form of a shaped value (for fingerprints and plans)."""
    if type(value) in _AS_IS:
        return value
    return _wire_form(value)


def _wire_form(value: object) -> object:
    if isinstance(value, Decimal):
        return format_decimal(value.normalize())
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [wire_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): wire_value(v) for k, v in value.items()}
    return value


def fingerprint(values: Mapping[str, object]) -> str:
    """A digest of ``values`` that changes when, and only when, one of them changes."""
    text = json.dumps(wire_value(values), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def retype(spec: FieldMap, raw: object) -> object:
    """A value :func:`wire_value` wrote, typed again as ``spec`` shapes it (dates, decimals)."""
    if spec.transform is Transform.DATE and isinstance(raw, str):
        return date.fromisoformat(raw)
    if spec.transform is Transform.DATETIME and isinstance(raw, str):
        return datetime.fromisoformat(raw)
    if spec.transform is Transform.DECIMAL and isinstance(raw, str | int | float):
        return Decimal(str(raw))
    return raw
