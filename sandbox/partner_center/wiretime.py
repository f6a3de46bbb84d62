"""Partner Center's datetimes on the wire: ISO 8601 UTC with seven fractional digits and ``Z``.

The real API writes ``2019-05-30T09:03:46.8540434Z`` (.NET ticks, 100 ns). Python keeps
microseconds, so comparisons here use :func:`ticks` (100 ns units since the epoch) to keep the
seventh digit: two values that differ only there still sort apart.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["format_wire", "moment_ticks", "normalize", "parse_wire", "ticks"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d{1,7}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?"
)


def format_wire(moment: datetime) -> str:
    """``2026-01-01T00:00:00.1234560Z`` for an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("wire datetimes must be timezone-aware")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def parse_wire(text: object) -> tuple[datetime, int] | None:
    """``(aware UTC datetime, 100-ns remainder)`` for an ISO date or datetime, else ``None``.

    A date alone means midnight UTC. Datetimes must carry ``Z`` or an offset: a naive time is
    ambiguous, so it is refused rather than guessed.
    """
    if not isinstance(text, str):
        return None
    match = _ISO.fullmatch(text.strip())
    if match is None:
        return None
    try:
        moment = datetime.fromisoformat(match["date"]).replace(tzinfo=UTC)
        if match["h"] is not None:
            frac = (match["frac"] or "").ljust(7, "0")
            moment = moment.replace(
                hour=int(match["h"]),
                minute=int(match["m"]),
                second=int(match["s"] or 0),
                microsecond=int(frac[:6]),
            )
            tz = match["tz"]
            if tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
                moment -= sign * offset
            return moment, int(frac[6])
    except ValueError:
        return None
    return moment, 0


def ticks(text: object) -> int | None:
    """100-ns units since 1970 for a wire datetime, ``None`` if it is not one."""
    parsed = parse_wire(text)
    if parsed is None:
        return None
    moment, extra = parsed
    return moment_ticks(moment) + extra


def moment_ticks(moment: datetime) -> int:
    """100-ns units since 1970 for an aware datetime."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 10


def normalize(text: object) -> str | None:
    """The canonical wire form of an ISO date/datetime, ``None`` if it is not one."""
    parsed = parse_wire(text)
    if parsed is None:
        return None
    moment, extra = parsed
    return format_wire(moment)[:-2] + f"{extra}Z"
