"""The environment's rows, per table, thread-safe, with a real environment's data rules.

Every write (the Web API's, the actions', the salesperson's) passes :meth:`RowStore.write`:
columns must exist and be valid for create/update, values convert to the column's type
(:func:`~sandbox.dynamics.values.convert`), lookups must point at live rows of a target table,
enforced required columns must be set, statecode/statuscode must agree
(:mod:`sandbox.dynamics.states`), and alternate keys stay unique (412 ``0x80040237``).
``createdon``, ``modifiedon``, ``modifiedby`` and ``versionnumber`` (one counter for the whole
environment, like SQL rowversion; the row's etag is ``W/"<versionnumber>"``) are stamped on
every write. Deletes leave a tombstone with the version, for change tracking. Stored dicts are
replaced, never changed in place, so :meth:`RowStore.atomic` can roll a change set back.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sandbox.dynamics.errors import DUPLICATE_RECORD, INVALID_ARGUMENT, DataverseError
from sandbox.dynamics.schema import LOOKUP_TYPES, AttributeDef, EntityDef, OrgSchema
from sandbox.dynamics.states import STATE_COLUMNS, check_state_change
from sandbox.dynamics.values import convert, format_datetime

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
            for row_id, row in self._rows.get(entity, {}).items():
                if all(_same(row.get(c), v) for c, v in values.items()):
                    return row_id
        return None

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
                self._tombstones.get(entity, {}).pop(new_id, None)
            record["modifiedon"] = stamp
            record["modifiedby"] = Lookup("systemuser", user_id)
            record["versionnumber"] = version
            if entity == "contact":
                names = (record.get("firstname"), record.get("lastname"))
                record["fullname"] = " ".join(n for n in names if n)
            self._rows.setdefault(entity, {})[record[table.primary_id]] = record
            return str(record[table.primary_id]), creating

    def delete(self, entity: str, row_id: str) -> bool:
        """Delete a row (a tombstone remembers it for change tracking); ``False`` if absent."""
        self._table(entity)
        with self._lock:
            row = self._rows.get(entity, {}).pop(row_id.lower(), None)
            if row is None:
                return False
            version = next(self._version)
            self._last_version = version
            self._tombstones.setdefault(entity, {})[row_id.lower()] = version
            return True

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Hold the store; if the block raises, every write made inside it is undone."""
        with self._lock:
            rows = {name: dict(table) for name, table in self._rows.items()}
            tombstones = {name: dict(t) for name, t in self._tombstones.items()}
            try:
                yield
            except BaseException:
                self._rows, self._tombstones = rows, tombstones
                raise

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._tombstones.clear()

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


def _same(stored: object, value: object) -> bool:
    if isinstance(stored, Lookup):
        stored = stored.row_id
    if isinstance(stored, str) and isinstance(value, str):
        return stored.lower() == value.lower()
    return stored is not None and stored == value
