"""How the stores turn what callers give them into what they keep, identically in every store.

JSON: stored as text (``json.dumps`` with ``allow_nan=False``, so only what a JSON column in any
database would accept); decoding what was encoded is how the memory store copies, so a caller that
mutates a mapping after handing it over changes nothing, and both stores give back the same types
(tuples come back as lists, exactly as they do from the database).

Datetimes: must be timezone-aware; kept as integer microseconds since the Unix epoch in UTC, and
given back as aware UTC datetimes. Integers sort the same in every database, carry the full
microsecond precision, and need no time-zone type (SQLite has none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.errors import StateError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def dump_json(value: object, what: str) -> str:
    """``value`` as JSON text, or StateError naming ``what`` when it is not JSON-able."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StateError(f"{what} cannot be stored as JSON: {exc}") from exc


def load_json(text: str, what: str) -> Any:  # noqa: ANN401 -- JSON is Any by nature
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StateError(f"{what} holds text that is not JSON: {exc}") from exc


def copy_mapping(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A deep copy through JSON: what the SQL store would give back after a round-trip."""
    if not isinstance(value, Mapping):
        raise StateError(f"{what} must be a mapping, got {type(value).__name__}")
    copied: dict[str, Any] = load_json(dump_json(dict(value), what), what)
    return copied


def copy_errors(errors: Sequence[str], what: str) -> tuple[str, ...]:
    """Run errors as a tuple of strings, checked the way the SQL store would store them."""
    if isinstance(errors, str) or not all(isinstance(e, str) for e in errors):
        raise StateError(f"{what} must be a sequence of strings")
    return tuple(errors)


def to_micros(value: datetime, what: str) -> int:
    """Microseconds since the epoch, UTC; StateError for a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise StateError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def utc(value: datetime, what: str) -> datetime:
    """The same instant as an aware UTC datetime; StateError for a naive one."""
    return from_micros(to_micros(value, what))


def check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")


def lease_micros(holder: str, ttl: timedelta) -> int:
    """A lease's time to live in microseconds; ValueError for a non-positive one or no holder."""
    if not isinstance(holder, str) or not holder:
        raise ValueError(f"a lease holder must be a non-empty string, got {holder!r}")
    if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
        raise ValueError(f"a lease's ttl must be a positive timedelta, got {ttl!r}")
    return ttl // _MICROSECOND


def referral_key(referral_id: str) -> str:
    """Referral ids are compared case-insensitively, as the CRM's external id is."""
    return referral_id.lower()
