"""The simulated org's records, per sObject, thread-safe, with a real org's data rules.

Every write (the API's, :meth:`RecordStore.edit`'s, the salesperson's) goes through the same
checks, in Salesforce's order: unknown fields and values JSON cannot convert fail the whole
request (:class:`~sandbox.salesforce.errors.ApiError`); everything else is a per-record
:class:`~sandbox.salesforce.errors.RecordRejected` with all of the record's errors:
read-only fields (``INVALID_FIELD_FOR_INSERT_UPDATE``), malformed or dangling ids, text too
long (``STRING_TOO_LONG``), restricted picklists and currencies
(``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``), required fields (``REQUIRED_FIELD_MISSING``)
and, last, unique fields (``DUPLICATE_VALUE``; text compared case-insensitively unless the
field is case-sensitive).

Opportunity's ``IsClosed``, ``IsWon`` and ``ForecastCategoryName`` follow ``StageName`` from
the OpportunityStage table, and ``Probability`` takes the stage's default when the stage
changes without one. ``CreatedDate``, ``LastModifiedDate`` and ``SystemModstamp`` (sandbox
clock, milliseconds) and the by-user ids are stamped on every write. Stored dicts are replaced,
never changed in place, so :meth:`RecordStore.atomic` can roll back a whole batch (from a
journal of the rows it replaced).

Lookups by a field's value (:meth:`RecordStore.find`, :meth:`RecordStore.matching`, the unique
field check) go through :class:`~sandbox.index.Indexes`: they narrow the rows to test, and each
candidate is still compared as before, so an index changes the cost of a lookup, not its answer.
Lookups by a ``SystemModstamp`` range (:meth:`RecordStore.modified_between`, the ``updated``
route, SOQL's change query) go through a :class:`_StampOrder` per sObject: ``(stamp, id)`` kept
sorted on every write, so a range is two binary searches, not a scan of the table.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import threading
from collections.abc import Hashable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from sandbox.index import Fold, Indexes, fold_id15, fold_text
from sandbox.salesforce.errors import ApiError, RecordError, RecordRejected
from sandbox.salesforce.schema import TEXT_TYPES, FieldDef, OrgSchema, SObjectDef
from sandbox.salesforce.values import format_datetime, id18, parse_datetime, same_id, to_wire

__all__ = ["API_USER_ID", "SALES_USER_ID", "Clock", "MultipleMatches", "RecordStore"]

API_USER_ID = id18("005000000000001")
"""The integration user the sandbox's tokens act as."""
SALES_USER_ID = id18("005000000000002")
"""The salesperson whose edits :meth:`RecordStore.edit` makes."""

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class Clock(Protocol):
    def now(self) -> datetime: ...


class MultipleMatches(Exception):
    """An external id value matches several records (upsert answers 300)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} records match")
        self.ids = ids


def _base62(number: int, width: int) -> str:
    out = ""
    while number:
        number, digit = divmod(number, 62)
        out = _BASE62[digit] + out
    return out.rjust(width, "0")


_Stamped = tuple[datetime, str]


class _StampOrder:
    """One sObject's ids sorted by ``SystemModstamp`` (ties by id); rows whose stamp does not
    parse are left out (no range comparison matches them). Not thread-safe: the store's lock
    guards it."""

    def __init__(self) -> None:
        self._keys: list[_Stamped] = []
        self._key_of: dict[str, _Stamped] = {}

    def put(self, record_id: str, record: Mapping[str, Any] | None) -> None:
        """Row ``record_id`` is now ``record`` (``None``: gone)."""
        stamp = None if record is None else parse_datetime(str(record.get("SystemModstamp")))
        key = None if stamp is None else (stamp, record_id)
        old = self._key_of.get(record_id)
        if old == key:
            return
        if old is not None:
            del self._keys[bisect.bisect_left(self._keys, old)]
            del self._key_of[record_id]
        if key is not None:
            bisect.insort(self._keys, key)
            self._key_of[record_id] = key

    def between(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        start_inclusive: bool,
        end_inclusive: bool,
    ) -> list[str]:
        """Ids whose stamp is after ``start`` and before ``end`` (``None``: unbounded)."""
        first, stop = 0, len(self._keys)
        if start is not None:
            find = bisect.bisect_left if start_inclusive else bisect.bisect_right
            first = find(self._keys, start, key=_stamp_of)
        if end is not None:
            find = bisect.bisect_right if end_inclusive else bisect.bisect_left
            stop = find(self._keys, end, key=_stamp_of)
        return [record_id for _, record_id in self._keys[first:stop]]


def _stamp_of(key: _Stamped) -> datetime:
    return key[0]


class RecordStore:
    """Records by sObject and id, in creation order."""

    def __init__(self, org: OrgSchema, clock: Clock) -> None:
        self.org = org
        self.clock = clock
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in org.names()}
        self._serial = itertools.count(1)
        self._indexes = Indexes(lambda row, name: row.get(name))
        self._position: dict[str, int] = {}  # id → creation order
        self._created = itertools.count()
        self._stamps = {name: _StampOrder() for name in org.names()}
        self._journal: list[tuple[str, str, dict[str, Any] | None]] | None = None

    # -- reading ----------------------------------------------------------------------------

    def get(
        self, sobject: str, record_id: str, *, include_deleted: bool = False
    ) -> dict[str, Any] | None:
        """A copy of the record with the fields the org has now, or ``None``."""
        obj = self._sobject(sobject)
        with self._lock:
            raw = self._data[obj.name].get(id18(record_id[:15])) if len(record_id) >= 15 else None
        if raw is None or (raw["IsDeleted"] and not include_deleted):
            return None
        return self._visible(obj, raw)

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of every record (not deleted ones unless asked), oldest first."""
        obj = self._sobject(sobject)
        with self._lock:
            raws = list(self._data[obj.name].values())
        return [self._visible(obj, r) for r in raws if include_deleted or not r["IsDeleted"]]

    def find(self, sobject: str, field_name: str, value: str) -> list[str]:
        """Ids of live records whose ``field_name`` equals ``value`` (case-insensitively for a
        case-insensitive text field)."""
        obj = self._sobject(sobject)
        fdef = obj.field(field_name)
        if fdef is None:
            raise KeyError(f"no field {obj.name}.{field_name}")
        with self._lock:
            rows = self._data[obj.name]
            key = _fold(fdef)(value)
            if key is None:
                candidates: Iterable[str] = rows
            else:
                candidates = self._ordered(self._lookup(obj, fdef, [key]))
            return [
                rid
                for rid in candidates
                if not rows[rid]["IsDeleted"] and _equal(fdef, rows[rid].get(fdef.name), value)
            ]

    def matching(self, sobject: str, field_name: str, values: Iterable[str]) -> set[str]:
        """Ids of records (deleted ones included) whose ``field_name`` may equal one of
        ``values`` as SOQL compares text (without case) and ids (15 or 18 characters): a
        superset for the caller to test, never missing a match."""
        obj = self._sobject(sobject)
        fdef = obj.field(field_name)
        if fdef is None:
            raise KeyError(f"no field {obj.name}.{field_name}")
        fold = _fold(fdef)
        with self._lock:
            return self._lookup(obj, fdef, [k for k in map(fold, values) if k is not None])

    def records_with_ids(
        self, sobject: str, ids: Iterable[str], *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """Copies of the records among ``ids`` (not deleted ones unless asked), oldest first,
        as :meth:`records` would list them."""
        obj = self._sobject(sobject)
        with self._lock:
            rows = self._data[obj.name]
            raws = [rows[i] for i in self._ordered(i for i in ids if i in rows)]
        return [self._visible(obj, r) for r in raws if include_deleted or not r["IsDeleted"]]

    def modified_between(
        self,
        sobject: str,
        start: datetime | None,
        end: datetime | None = None,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = False,
    ) -> set[str]:
        """Ids of records (deleted ones included) whose ``SystemModstamp`` is after ``start``
        and before ``end`` (``None``: unbounded), each bound included as asked."""
        obj = self._sobject(sobject)
        with self._lock:
            return set(
                self._stamps[obj.name].between(
                    start, end, start_inclusive=start_inclusive, end_inclusive=end_inclusive
                )
            )

    def updated_ids(self, sobject: str, start: datetime, end: datetime) -> list[str]:
        """Ids whose ``SystemModstamp`` is in ``[start, end)`` (deleted ones included),
        oldest first."""
        obj = self._sobject(sobject)
        with self._lock:
            found = self._stamps[obj.name].between(
                start, end, start_inclusive=True, end_inclusive=False
            )
            return self._ordered(found)

    # -- writing ----------------------------------------------------------------------------

    def create(self, sobject: str, fields: Mapping[str, Any], *, user_id: str = API_USER_ID) -> str:
        obj = self._sobject(sobject)
        with self._lock:
            return self._write(obj, None, fields, user_id)

    def update(
        self, sobject: str, record_id: str, fields: Mapping[str, Any], *, user_id: str = API_USER_ID
    ) -> None:
        obj = self._sobject(sobject)
        with self._lock:
            current = self._live(obj, record_id)
            self._write(obj, current, fields, user_id)

    def upsert(
        self,
        sobject: str,
        field_name: str,
        value: str,
        fields: Mapping[str, Any],
        *,
        user_id: str = API_USER_ID,
    ) -> tuple[str, bool]:
        """``(id, created)``: create when nothing matches ``field_name = value``, update the one
        match, else :class:`MultipleMatches`. ``fields`` must not hold the external id."""
        obj = self._sobject(sobject)
        with self._lock:
            matches = self.find(obj.name, field_name, value)
            if len(matches) > 1:
                raise MultipleMatches(matches)
            if matches:
                self._write(obj, self._data[obj.name][matches[0]], fields, user_id)
                return matches[0], False
            fdef = obj.field(field_name)
            assert fdef is not None  # noqa: S101 (find() checked it)
            return self._write(obj, None, {**fields, fdef.name: value}, user_id), True

    def edit(self, sobject: str, record_id: str, **fields: object) -> dict[str, Any]:
        """Change a record as a salesperson would in the UI (same rules, new SystemModstamp,
        ``LastModifiedById`` = the salesperson); returns the record."""
        self.update(sobject, record_id, fields, user_id=SALES_USER_ID)
        record = self.get(sobject, record_id)
        assert record is not None  # noqa: S101 (just written)
        return record

    def delete(self, sobject: str, record_id: str) -> None:
        """Move a record to the recycle bin (``IsDeleted``; ``queryAll`` still sees it)."""
        obj = self._sobject(sobject)
        with self._lock:
            current = self._live(obj, record_id)
            stamp = format_datetime(self.clock.now())
            self._put(obj.name, {**current, "IsDeleted": True, "SystemModstamp": stamp})

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
            self._data = {name: {} for name in self.org.names()}
            self._indexes.clear()
            self._position.clear()
            self._stamps = {name: _StampOrder() for name in self.org.names()}
            if self._journal is not None:
                self._journal.clear()

    # -- internals --------------------------------------------------------------------------

    def _put(self, sobject: str, record: dict[str, Any]) -> None:
        """Store ``record`` (new or replacing the one with its id), keeping the indexes, the
        creation order and an open :meth:`atomic` block's journal."""
        rows = self._data[sobject]
        record_id = str(record["Id"])
        old = rows.get(record_id)
        if self._journal is not None:
            self._journal.append((sobject, record_id, old))
        if old is None:
            self._position[record_id] = next(self._created)
        rows[record_id] = record
        self._indexes.replace(sobject, record_id, old, record)
        self._stamps[sobject].put(record_id, record)

    def _undo(self, start: int) -> None:
        assert self._journal is not None  # noqa: S101 (only inside atomic)
        while len(self._journal) > start:
            sobject, record_id, old = self._journal.pop()
            rows = self._data[sobject]
            new = rows.get(record_id)
            if old is None:
                rows.pop(record_id, None)
                self._position.pop(record_id, None)
            else:
                rows[record_id] = old
            self._indexes.replace(sobject, record_id, new, old)
            self._stamps[sobject].put(record_id, old)

    def _lookup(self, obj: SObjectDef, fdef: FieldDef, keys: Iterable[Hashable]) -> set[str]:
        return self._indexes.ids(obj.name, fdef.name, _fold(fdef), keys, self._data[obj.name])

    def _ordered(self, ids: Iterable[str]) -> list[str]:
        return sorted(ids, key=self._position.__getitem__)

    def _sobject(self, name: str) -> SObjectDef:
        obj = self.org.sobject(name)
        if obj is None:
            raise ApiError.not_found()
        return obj

    def _live(self, obj: SObjectDef, record_id: str) -> dict[str, Any]:
        raw = self._data[obj.name].get(id18(record_id[:15])) if len(record_id) in (15, 18) else None
        if raw is None:
            raise ApiError.not_found()
        if raw["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return raw

    @staticmethod
    def _visible(obj: SObjectDef, raw: Mapping[str, Any]) -> dict[str, Any]:
        return {f.name: raw.get(f.name) for f in obj.fields}

    def _new_id(self, obj: SObjectDef) -> str:
        return id18(f"{obj.key_prefix}5g{_base62(next(self._serial), 10)}")

    def _write(
        self,
        obj: SObjectDef,
        current: Mapping[str, Any] | None,
        changes: Mapping[str, Any],
        user_id: str,
    ) -> str:
        creating = current is None
        record = dict(current) if current is not None else {}
        given = _known_fields(obj, changes)
        errors, rejected = self._apply(obj, record, given, creating=creating)
        if creating:
            self._defaults(obj, record)
        if obj.name == "Opportunity":
            self._derive_stage(record, current, set(given))
        missing = [
            f.name
            for f in obj.fields
            if f.name not in rejected
            and record.get(f.name) is None
            and (f.required or (not f.nillable and f.name in given))
        ]
        if missing:
            errors.append(
                RecordError(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    tuple(missing),
                )
            )
        if not errors:
            errors.extend(self._duplicates(obj, record))
        if errors:
            raise RecordRejected(*errors)
        stamp = format_datetime(self.clock.now())
        if creating:
            record["Id"] = self._new_id(obj)
            record["CreatedDate"] = stamp
            record["CreatedById"] = user_id
        record["LastModifiedDate"] = stamp
        record["LastModifiedById"] = user_id
        record["SystemModstamp"] = stamp
        self._put(obj.name, record)
        return str(record["Id"])

    def _apply(
        self,
        obj: SObjectDef,
        record: dict[str, Any],
        given: Mapping[str, tuple[FieldDef, object]],
        *,
        creating: bool,
    ) -> tuple[list[RecordError], set[str]]:
        """Put the writable, valid values of ``given`` into ``record``; the errors, and the
        names of the fields they are about."""
        errors: list[RecordError] = []
        readonly = [
            name
            for name, (fdef, _) in given.items()
            if not (fdef.createable if creating else fdef.updateable)
        ]
        if readonly:
            errors.append(
                RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(readonly)}. Please check the "
                    "security settings of this field and verify that it is read/write for your "
                    "role or permission set.",
                    tuple(readonly),
                )
            )
        rejected = set(readonly)
        for name, (fdef, value) in given.items():
            if name in rejected:
                continue
            wire, error = to_wire(fdef, value)
            error = error or self._check_value(obj, fdef, wire)
            if error is not None:
                errors.append(error)
                rejected.add(name)
            else:
                record[name] = wire
        return errors, rejected

    def _check_value(self, obj: SObjectDef, fdef: FieldDef, wire: object) -> RecordError | None:
        if not isinstance(wire, str):
            return None
        if fdef.type in TEXT_TYPES and fdef.length and len(wire) > fdef.length:
            return RecordError(
                "STRING_TOO_LONG",
                f"{fdef.label}: data value too large: {wire[:100]} (max length={fdef.length})",
                (fdef.name,),
            )
        if fdef.type == "picklist" and fdef.restricted and wire not in fdef.picklist:
            what = (
                "invalid currency code"
                if fdef.name == "CurrencyIsoCode"
                else ("bad value for restricted picklist field")
            )
            return RecordError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{fdef.label}: {what}: {wire}",
                (fdef.name,),
            )
        if fdef.type == "reference":
            return self._check_reference(obj, fdef, wire)
        return None

    def _check_reference(self, obj: SObjectDef, fdef: FieldDef, wire: str) -> RecordError | None:
        target = self.org.sobject_by_prefix(wire[:3])
        if target is None or target.name not in fdef.reference_to:
            return RecordError(
                "FIELD_INTEGRITY_EXCEPTION",
                f"{fdef.label}: id value of incorrect type: {wire}",
                (fdef.name,),
            )
        row = self._data.get(target.name, {}).get(wire)
        if row is None or row["IsDeleted"]:
            return RecordError(
                "INVALID_CROSS_REFERENCE_KEY",
                f"invalid cross reference id ({obj.name}.{fdef.name})",
                (fdef.name,),
            )
        return None

    def _defaults(self, obj: SObjectDef, record: dict[str, Any]) -> None:
        for fdef in obj.fields:
            if fdef.type == "boolean" and record.get(fdef.name) is None:
                record[fdef.name] = False
        if obj.field("CurrencyIsoCode") and record.get("CurrencyIsoCode") is None:
            record["CurrencyIsoCode"] = self.org.corporate_currency

    def _derive_stage(
        self, record: dict[str, Any], current: Mapping[str, Any] | None, given: set[str]
    ) -> None:
        stage = self.org.stage(record.get("StageName") or "")
        if stage is None:
            return
        changed = current is None or current.get("StageName") != stage.name
        record["IsClosed"] = stage.is_closed
        record["IsWon"] = stage.is_won
        if changed:
            record["ForecastCategoryName"] = stage.forecast_category
            if "Probability" not in given or record.get("Probability") is None:
                record["Probability"] = float(stage.probability)

    def _duplicates(self, obj: SObjectDef, record: Mapping[str, Any]) -> list[RecordError]:
        errors = []
        for fdef in obj.fields:
            value = record.get(fdef.name)
            if not fdef.unique or value is None:
                continue
            rows = self._data[obj.name]
            key = _fold(fdef)(value)
            candidates = rows if key is None else self._ordered(self._lookup(obj, fdef, [key]))
            for rid in candidates:
                raw = rows[rid]
                if (
                    rid != record.get("Id")
                    and not raw["IsDeleted"]
                    and _equal(fdef, raw.get(fdef.name), value)
                ):
                    errors.append(
                        RecordError(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {fdef.name} duplicates value on record "
                            f"with id: {rid}",
                        )
                    )
                    break
        return errors


def _known_fields(
    obj: SObjectDef, changes: Mapping[str, object]
) -> dict[str, tuple[FieldDef, object]]:
    """``changes`` by canonical field name; an unknown field fails the whole request."""
    given: dict[str, tuple[FieldDef, object]] = {}
    for key, value in changes.items():
        if key == "attributes":
            continue
        fdef = obj.field(key)
        if fdef is None:
            raise ApiError.malformed(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}"
            )
        given[fdef.name] = (fdef, value)
    return given


def _fold(fdef: FieldDef) -> Fold:
    """The index key of a value of ``fdef``: equal under :func:`_equal` (and SOQL's ``=``)
    implies equal keys."""
    return fold_id15 if fdef.type in ("id", "reference") else fold_text


def _equal(fdef: FieldDef, stored: object, value: object) -> bool:
    if stored is None or value is None:
        return False
    if fdef.type in ("id", "reference"):
        return same_id(str(stored), str(value))
    if isinstance(stored, str) and isinstance(value, str) and not fdef.case_sensitive:
        return stored.lower() == value.lower()
    return bool(stored == value)
