"""The environment's rows, per table, thread-safe, with a real environment's data rules.

Every write (the Web API's, the actions', the salesperson's) passes :meth:`RowStore.write`:
columns must exist and be valid for create/update, values convert to the column's type
(:func:`~sandbox.dynamics.values.convert`), lookups must point at live rows of a target table,
enforced required columns must be set, statecode/statuscode must agree
(:mod:`sandbox.dynamics.states`), and alternate keys stay unique (412 ``0x80040237``).
``createdon``, ``modifiedon``, ``modifiedby`` and ``versionnumber`` (one counter for the whole
environment, like SQL rowversion; the row's etag is ``W/"<versionnumber>"``) are stamped on
every write. Deletes leave a tombstone with the version, for change tracking. Stored dicts are
replaced, never changed in place, so :meth:`RowStore.atomic` can roll a change set back (from a
journal of the rows and tombstones it replaced).

Lookups by column value (:meth:`RowStore.find_by_key`, :meth:`RowStore.matching`, the
alternate-key check) go through :class:`~sandbox.index.Indexes`: they narrow the rows to test,
and each candidate is still compared as before, so an index changes a lookup's cost, not its
answer.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sandbox.dynamics.errors import DUPLICATE_RECORD, INVALID_ARGUMENT, DataverseError
from sandbox.dynamics.schema import LOOKUP_TYPES, AttributeDef, EntityDef, OrgSchema
from sandbox.dynamics.states import STATE_COLUMNS, check_state_change
from sandbox.dynamics.values import convert, format_datetime
from sandbox.index import Indexes, fold_text

__all__ = ["API_USER_ID", "SALES_USER_ID", "Clock", "Lookup", "Row", "RowStore"]

API_USER_ID = "6f0f3c0e-5d7a-4e7e-9c55-00000000a001"
"""The application user the sandbox's app-only tokens act as."""
SALES_USER_ID = "6f0f3c0e-5d7a-4e7e-9c55-00000000b002"
"""The salesperson whose edits :class:`~sandbox.dynamics.salesperson.SalespersonSimulator` makes."""
FIRST_VERSION = 5_000_000

Row = dict[str, Any]


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class Lookup:
    """A lookup column's value: the target table and row id."""

    table: str
    row_id: str


class RowStore:
    def __init__(self, schema: OrgSchema, clock: Clock) -> None:
        self.schema = schema
        self.clock = clock
        self._lock = threading.RLock()
        self._rows: dict[str, dict[str, Row]] = {}
        self._tombstones: dict[str, dict[str, int]] = {}
        self._version = itertools.count(FIRST_VERSION)
        self._last_version = FIRST_VERSION - 1
        self._indexes = Indexes(_column)
        self._position: dict[tuple[str, str], int] = {}  # (table, id) → order of creation
        self._created = itertools.count()
        self._journal: list[_Undo] | None = None

    # -- reading ------------------------------------------------------------------------------

    def get(self, entity: str, row_id: str) -> Row | None:
        with self._lock:
            row = self._rows.get(entity, {}).get(row_id.lower())
        return dict(row) if row is not None else None

    def rows(self, entity: str) -> list[Row]:
        """Copies of every live row, oldest first."""
        with self._lock:
            return [dict(r) for r in self._rows.get(entity, {}).values()]

    def find_by_key(self, entity: str, values: Mapping[str, object]) -> str | None:
        """The id of the live row whose columns equal ``values`` (strings compared without
        case, as Dataverse's collation does)."""
        self._table(entity)
        with self._lock:
            rows = self._rows.get(entity, {})
            candidates: Iterable[str] = rows
            for column, value in values.items():
                key = fold_text(value)
                if key is not None:
                    candidates = self._ordered(entity, self._ids_by(entity, column, [key]))
                    break
            for row_id in candidates:
                row = rows[row_id]
                if all(_same(row.get(c), v) for c, v in values.items()):
                    return row_id
        return None

    def matching(self, entity: str, column: str, values: Iterable[str]) -> set[str]:
        """Ids of live rows whose ``column`` (a lookup's row id) may equal one of ``values``
        without case: a superset for the caller to test, never missing a match."""
        with self._lock:
            return self._ids_by(
                entity, column, [k for k in map(fold_text, values) if k is not None]
            )

    def rows_with_ids(self, entity: str, ids: Iterable[str]) -> list[Row]:
        """Copies of the live rows among ``ids``, oldest first (as :meth:`rows` lists them)."""
        with self._lock:
            rows = self._rows.get(entity, {})
            return [dict(rows[i]) for i in self._ordered(entity, (i for i in ids if i in rows))]

    @property
    def version(self) -> int:
        """The latest versionnumber handed out (a change-tracking high-water mark)."""
        with self._lock:
            return self._last_version

    def changes_since(self, entity: str, version: int) -> tuple[list[Row], list[tuple[str, int]]]:
        """Live rows written after ``version`` (oldest change first), and ``(id, version)`` of
        rows deleted after it."""
        with self._lock:
            live = self._rows.get(entity, {}).values()
            rows = [dict(r) for r in live if r["versionnumber"] > version]
            tombstones = self._tombstones.get(entity, {}).items()
            deleted = [(i, v) for i, v in tombstones if v > version]
        rows.sort(key=lambda r: int(r["versionnumber"]))
        return rows, deleted

    # -- writing ------------------------------------------------------------------------------

    def write(
        self,
        entity: str,
        row_id: str | None,
        changes: Mapping[str, object],
        *,
        user_id: str = API_USER_ID,
        create_id: str | None = None,
        closing: bool = False,
    ) -> tuple[str, bool]:
        """Create (``row_id`` ``None`` or not found and ``create_id`` given) or update a row;
        ``(id, created)``. ``changes`` maps logical names to JSON values or :class:`Lookup`.
        ``closing`` lets WinOpportunity/LoseOpportunity set a closed state."""
        table = self._table(entity)
        with self._lock:
            current = self._rows.get(entity, {}).get(row_id.lower()) if row_id else None
            creating = current is None
            record: Row = dict(current) if current is not None else {}
            given = self._apply(table, record, changes, creating=creating, closing=closing)
            check_state_change(table, current, record, given, closing=closing)
            if creating:
                self._defaults(table, record)
                self._require(table, record)
            self._check_keys(table, record, current)
            self._exchange_rate(table, record)
            version = next(self._version)
            self._last_version = version
            stamp = format_datetime(self.clock.now())
            if creating:
                new_id = (create_id or row_id or str(uuid.uuid4())).lower()
                record[table.primary_id] = new_id
                record["createdon"] = stamp
            record["modifiedon"] = stamp
            record["modifiedby"] = Lookup("systemuser", user_id)
            record["versionnumber"] = version
            if entity == "contact":
                names = (record.get("firstname"), record.get("lastname"))
                record["fullname"] = " ".join(n for n in names if n)
            if creating:
                self._set_tombstone(entity, record[table.primary_id], None)
            self._put(entity, str(record[table.primary_id]), record)
            return str(record[table.primary_id]), creating

    def delete(self, entity: str, row_id: str) -> bool:
        """Delete a row (a tombstone remembers it for change tracking); ``False`` if absent."""
        self._table(entity)
        with self._lock:
            if row_id.lower() not in self._rows.get(entity, {}):
                return False
            self._put(entity, row_id.lower(), None)
            version = next(self._version)
            self._last_version = version
            self._set_tombstone(entity, row_id.lower(), version)
            return True

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Hold the store; if the block raises, every write made inside it is undone."""
        with self._lock:
            outer = self._journal is None
            if outer:
                self._journal = []
            assert self._journal is not None  # noqa: S101 (just set)
            start = len(self._journal)
            try:
                yield
            except BaseException:
                self._undo(start)
                raise
            finally:
                if outer:
                    self._journal = None

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._tombstones.clear()
            self._indexes.clear()
            self._position.clear()
            if self._journal is not None:
                self._journal.clear()

    # -- keeping rows, indexes and the journal together ------------------------------------

    def _put(self, entity: str, row_id: str, row: Row | None) -> None:
        """Make ``row`` (``None``: no row) the row ``row_id`` of ``entity``."""
        rows = self._rows.setdefault(entity, {})
        old = rows.get(row_id)
        if self._journal is not None:
            self._journal.append(_Undo(entity, row_id, old, self._position.get((entity, row_id))))
        if row is None:
            rows.pop(row_id, None)
            self._position.pop((entity, row_id), None)
        else:
            if old is None:
                self._position[(entity, row_id)] = next(self._created)
            rows[row_id] = row
        self._indexes.replace(entity, row_id, old, row)

    def _set_tombstone(self, entity: str, row_id: str, version: int | None) -> None:
        stones = self._tombstones.setdefault(entity, {})
        if self._journal is not None:
            self._journal.append(_Undo(entity, row_id, None, None, stones.get(row_id), True))
        if version is None:
            stones.pop(row_id, None)
        else:
            stones[row_id] = version

    def _undo(self, start: int) -> None:
        assert self._journal is not None  # noqa: S101 (only inside atomic)
        reordered: set[str] = set()
        while len(self._journal) > start:
            undo = self._journal.pop()
            if undo.tombstone:
                stones = self._tombstones.setdefault(undo.entity, {})
                if undo.version is None:
                    stones.pop(undo.row_id, None)
                else:
                    stones[undo.row_id] = undo.version
                continue
            rows = self._rows.setdefault(undo.entity, {})
            new = rows.pop(undo.row_id, None)
            self._position.pop((undo.entity, undo.row_id), None)
            if undo.row is not None:
                assert undo.position is not None  # noqa: S101 (journalled with its row)
                rows[undo.row_id] = undo.row
                self._position[(undo.entity, undo.row_id)] = undo.position
                reordered.add(undo.entity)
            self._indexes.replace(undo.entity, undo.row_id, new, undo.row)
        for entity in reordered:  # a row put back goes back to its place
            rows = self._rows[entity]
            order = sorted(rows, key=lambda i: self._position[(entity, i)])
            self._rows[entity] = {i: rows[i] for i in order}

    def _ids_by(self, entity: str, column: str, keys: Iterable[Hashable]) -> set[str]:
        return self._indexes.ids(entity, column, fold_text, keys, self._rows.get(entity, {}))

    def _ordered(self, entity: str, ids: Iterable[str]) -> list[str]:
        return sorted(ids, key=lambda i: self._position[(entity, i)])

    # -- rules --------------------------------------------------------------------------------

    def _table(self, entity: str) -> EntityDef:
        table = self.schema.entity(entity)
        if table is None:
            raise DataverseError.odata(f"Resource not found for the segment '{entity}'.", 404)
        return table

    def _apply(
        self,
        table: EntityDef,
        record: Row,
        changes: Mapping[str, object],
        *,
        creating: bool,
        closing: bool,
    ) -> set[str]:
        given: set[str] = set()
        for name, value in changes.items():
            attr = table.attribute(name)
            if attr is None:
                raise DataverseError.unknown_property(name, table.logical_name)
            if name == table.primary_id:
                if not creating and value is not None and str(value).lower() != record[name]:
                    raise DataverseError(
                        400,
                        INVALID_ARGUMENT,
                        "Entity Id must be the same as the value set in property bag.",
                    )
                continue
            allowed = attr.valid_for_create if creating else attr.valid_for_update
            if not allowed and not (closing and name in STATE_COLUMNS):
                raise DataverseError(
                    400,
                    INVALID_ARGUMENT,
                    f"The '{name}' attribute is not valid for "
                    f"{'create' if creating else 'update'} on '{table.logical_name}'.",
                )
            record[name] = (
                self._lookup(table, attr, value)
                if attr.type in LOOKUP_TYPES
                else (convert(table.logical_name, attr, value))
            )
            given.add(name)
        return given

    def _lookup(self, table: EntityDef, attr: AttributeDef, value: object) -> Lookup | None:
        if value is None:
            return None
        if not isinstance(value, Lookup) or value.table not in attr.targets:
            raise DataverseError.odata(
                f"A 'PrimitiveValue' node with non-null value was found when trying to read the "
                f"value of the navigation property '{attr.logical_name}'; however, a 'StartArray' "
                "node, a 'StartObject' node, or a 'PrimitiveValue' node with null value was "
                "expected."
            )
        if value.row_id not in self._rows.get(value.table, {}):
            raise DataverseError.not_found(value.table, value.row_id)
        return value

    def _defaults(self, table: EntityDef, record: Row) -> None:
        for attr in table.attributes:
            record.setdefault(attr.logical_name, None)
        if table.attribute("statecode") is not None and record.get("statecode") is None:
            record["statecode"] = 0
        if table.attribute("statuscode") is not None and record.get("statuscode") is None:
            state = table.attribute("statecode")
            option = state.option(0) if state is not None else None
            record["statuscode"] = option.default_status if option else 1
        if table.attribute("isrevenuesystemcalculated") is not None:
            record["isrevenuesystemcalculated"] = bool(record["isrevenuesystemcalculated"])
        currency = table.attribute("transactioncurrencyid")
        if currency is not None and record.get("transactioncurrencyid") is None:
            base = self.find_by_key(
                "transactioncurrency", {"isocurrencycode": self.schema.base_currency}
            )
            if base is not None:
                record["transactioncurrencyid"] = Lookup("transactioncurrency", base)

    def _exchange_rate(self, table: EntityDef, record: Row) -> None:
        """A row in a transaction currency carries that currency's rate (read-only)."""
        if table.logical_name == "transactioncurrency" or table.attribute("exchangerate") is None:
            return
        ref = record.get("transactioncurrencyid")
        currencies = self._rows.get("transactioncurrency", {})
        row = currencies.get(ref.row_id) if isinstance(ref, Lookup) else None
        record["exchangerate"] = row.get("exchangerate") if row else None

    @staticmethod
    def _require(table: EntityDef, record: Row) -> None:
        for name in table.enforced_required:
            if table.attribute(name) is not None and record.get(name) in (None, ""):
                raise DataverseError.validation(
                    f"Required field '{name}' of entity '{table.logical_name}' is missing."
                )

    def _check_keys(self, table: EntityDef, record: Row, current: Row | None) -> None:
        own = current.get(table.primary_id) if current else None
        for key in table.keys:
            if not key.active:  # its index is not built yet: nothing enforces it
                continue
            values = {c: record.get(c) for c in key.attributes}
            if any(v is None for v in values.values()):
                continue
            other = self.find_by_key(table.logical_name, values)
            if other is not None and other != own:
                shown = ",".join(str(v) for v in values.values())
                raise DataverseError(
                    412,
                    DUPLICATE_RECORD,
                    f"A record that has the attribute values {shown} already exists. The entity "
                    f"key {key.logical_name} requires that this set of attributes contains unique "
                    "values. Select unique values and try again.",
                )


@dataclass(frozen=True, slots=True)
class _Undo:
    """What a write inside :meth:`RowStore.atomic` replaced: a row (and its place), or, with
    ``tombstone``, a tombstone's version."""

    entity: str
    row_id: str
    row: Row | None
    position: int | None
    version: int | None = None
    tombstone: bool = False


def _column(row: Mapping[str, Any], name: str) -> object:
    value = row.get(name)
    return value.row_id if isinstance(value, Lookup) else value


def _same(stored: object, value: object) -> bool:
    if isinstance(stored, Lookup):
        stored = stored.row_id
    if isinstance(stored, str) and isinstance(value, str):
        return stored.lower() == value.lower()
    return stored is not None and stored == value
