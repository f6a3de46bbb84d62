"""Equality indexes for the simulators' stores: row ids by a folded column value.

A simulator looks rows up by a column (an external id, a name, an e-mail) far more often than
it writes them; scanning every row for every literal made a backfill of N cost O(N²). An
:class:`Indexes` keeps, per table and column, ``folded value → ids``, built from the rows the
first time that column is looked up and kept current by every write after that.

An index only *narrows* a lookup: the fold must send any two values the simulator would call
equal to the same key (lower case for text compared without case, the 15-character prefix for
a Salesforce id), and the caller still tests each candidate with its own comparison. So an
index can make a lookup faster but never more lenient than the comparison it stands in for.
Values the fold does not handle (``None``, numbers, …) are left out; a lookup of such a value
must not use the index.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

__all__ = ["Fold", "Indexes", "fold_id15", "fold_text"]

Fold = Callable[[object], Hashable | None]
"""A stored or looked-up value → its index key, or ``None`` (not indexed)."""


def fold_text(value: object) -> Hashable | None:
    """Text compared without case."""
    return value.lower() if isinstance(value, str) else None


def fold_id15(value: object) -> Hashable | None:
    """A Salesforce id: 15 and 18 characters name the same record."""
    return value[:15] if isinstance(value, str) else None


_Key = tuple[str, Fold]


class Indexes:
    """Per table, per ``(column, fold)``: ids by folded value. Not thread-safe: the store
    holds its own lock around every call."""

    def __init__(self, value_of: Callable[[Mapping[str, Any], str], object]) -> None:
        self._value_of = value_of
        self._tables: dict[str, dict[_Key, dict[Hashable, set[str]]]] = {}

    def ids(
        self,
        table: str,
        column: str,
        fold: Fold,
        keys: Iterable[Hashable],
        rows: Mapping[str, Mapping[str, Any]],
    ) -> set[str]:
        """Ids of ``rows`` (the table's rows by id, for a first build) whose ``column`` folds
        to one of ``keys``."""
        index = self._tables.setdefault(table, {}).get((column, fold))
        if index is None:
            index = {}
            for row_id, row in rows.items():
                key = fold(self._value_of(row, column))
                if key is not None:
                    index.setdefault(key, set()).add(row_id)
            self._tables[table][(column, fold)] = index
        out: set[str] = set()
        for key in keys:
            found = index.get(key)
            if found:
                out |= found
        return out

    def replace(
        self,
        table: str,
        row_id: str,
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any] | None,
    ) -> None:
        """Row ``row_id`` of ``table`` was ``old`` (``None``: absent) and is now ``new``."""
        for (column, fold), index in self._tables.get(table, {}).items():
            before = None if old is None else fold(self._value_of(old, column))
            after = None if new is None else fold(self._value_of(new, column))
            if before == after:
                continue
            if before is not None:
                ids = index.get(before)
                if ids is not None:
                    ids.discard(row_id)
                    if not ids:
                        del index[before]
            if after is not None:
                index.setdefault(after, set()).add(row_id)

    def clear(self) -> None:
        """Forget every index (each is rebuilt on its next lookup)."""
        self._tables.clear()
