"""The referrals in ``updatedDateTime`` order, kept as they are written: the change feed's index.

The connector's change feed asks, page after page, for ``$filter=updatedDateTime ge T`` with
``$orderby=updatedDateTime asc``. Filtering and sorting every referral for every page made a
page cost O(N log N) and a backfill O(N² log N). :class:`UpdatedOrder` keeps every referral's
sort key, ``(has a time, ticks, id)``, in one sorted list, so such a page is two binary searches
and a slice: O(log N + page). A write moves one key (a binary search and a list shift).

The key is :func:`sandbox.partner_center.odata.sort_referrals`'s order exactly: a missing or
unreadable time sorts lowest, ties by ``id`` ascending, and times compare in 100-ns ticks (so
two spellings of one instant tie). :func:`span_of` says whether a query is one this order can
answer (``updatedDateTime asc`` with only ``updatedDateTime`` range comparisons); anything else
is left to the full scan, which stays the reference: the two must give the same pages.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.partner_center.odata import And, Comparison, Filter, OrderKey, parse_filter
from sandbox.partner_center.wiretime import ticks

__all__ = ["FIELD", "Span", "UpdatedOrder", "span_of"]

FIELD = "updatedDateTime"

_Key = tuple[int, int, str]
_EARLIEST = -(2**63)  # below the ticks of year 1, the earliest a datetime can be


@dataclass(frozen=True, slots=True)
class Span:
    """Referrals whose time is in ``[low, high)`` ticks (``None``: unbounded); ``timeless``:
    those without a readable time too (only when nothing is compared)."""

    low: int | None = None
    high: int | None = None
    timeless: bool = True


def span_of(filter_text: str | None, keys: tuple[OrderKey, ...]) -> Span | None:
    """The :class:`Span` a query selects, if it is sorted by ``updatedDateTime asc`` alone and
    filters only on ranges of it; ``None`` otherwise (the caller scans)."""
    if keys != (OrderKey(FIELD),):
        return None
    if filter_text is None:
        return Span()
    low: int | None = None
    high: int | None = None
    for part in _conjuncts(parse_filter(filter_text)):
        if not isinstance(part, Comparison) or part.field.name != FIELD:
            return None
        if not isinstance(part.expected, int):
            return None  # ``eq null``/``ne null``: not a range
        value = part.expected
        if part.op == "ne":
            return None
        if part.op in ("ge", "gt", "eq"):
            start = value + 1 if part.op == "gt" else value
            low = start if low is None else max(low, start)
        if part.op in ("le", "lt", "eq"):
            stop = value if part.op == "lt" else value + 1
            high = stop if high is None else min(high, stop)
    return Span(low, high, timeless=False)


def _conjuncts(node: Filter) -> list[Filter]:
    if isinstance(node, And):
        return [leaf for part in node.parts for leaf in _conjuncts(part)]
    return [node]


def sort_key(raw: Mapping[str, Any]) -> _Key:
    moment = ticks(raw.get(FIELD))
    return (0, 0, str(raw.get("id"))) if moment is None else (1, moment, str(raw.get("id")))


class UpdatedOrder:
    """Referral ids sorted by :func:`sort_key`. Not thread-safe: the store's lock guards it."""

    def __init__(self) -> None:
        self._keys: list[_Key] = []
        self._key_of: dict[str, _Key] = {}

    def put(self, referral_id: str, raw: Mapping[str, Any]) -> None:
        """``raw`` is now referral ``referral_id`` (new, or moved by a write)."""
        key = sort_key(raw)
        old = self._key_of.get(referral_id)
        if old == key:
            return
        if old is not None:
            del self._keys[bisect.bisect_left(self._keys, old)]
        bisect.insort(self._keys, key)
        self._key_of[referral_id] = key

    def clear(self) -> None:
        self._keys.clear()
        self._key_of.clear()

    def __len__(self) -> int:
        return len(self._keys)

    def bounds(self, span: Span) -> tuple[int, int]:
        """``(first, end)``: the positions in this order that ``span`` covers."""
        first = 0
        if span.low is not None or not span.timeless:
            low = _EARLIEST if span.low is None else span.low
            first = bisect.bisect_left(self._keys, (1, low, ""))
        end = len(self._keys)
        if span.high is not None:
            end = bisect.bisect_left(self._keys, (1, span.high, ""))
        return first, max(first, end)

    def ids(self, start: int, stop: int) -> list[str]:
        """The ids at positions ``[start, stop)``."""
        return [key[2] for key in self._keys[start:stop]]
