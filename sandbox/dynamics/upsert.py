"""Rows named in a URL: retrieve, upsert and delete by primary key or alternate key (§C2).

``PATCH <set>(<key>)`` without conditions is an upsert (204 both ways; 201 / 200 with
``Prefer: return=representation``). ``If-Match: *`` makes it update-only: a missing row
answers 404 ``{"error": {"code": "", "message": "<table> With Id = <key> Does Not Exist"}}``.
``If-None-Match: *`` makes it create-only: an existing row answers 412 ``{"error": {"code": "",
"message": "A record with matching key values already exists."}}``. ``If-Match: W/"<n>"``
must match the row's version (412 ``0x80060882``). ``If-None-Match: null`` (the documented
default header) means nothing. The key columns are stripped from the body on update; on create
the body's values win over the URL's.

The alternate key named in the URL must be one the table defines, exactly (400 otherwise).
A GET or DELETE of a missing row answers 404: ``0x80040217`` "<table> With Id = <id> Does Not
Exist" by id, ``0x80060891`` "A record with the specified key values does not exist in <table>
entity" by alternate key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.dynamics.errors import (
    CONCURRENCY_MISMATCH,
    DUPLICATE_RECORD,
    KEY_NOT_FOUND,
    DataverseError,
)
from sandbox.dynamics.payload import parse_body
from sandbox.dynamics.refs import EntityRef, parse_key
from sandbox.dynamics.schema import EntityDef
from sandbox.dynamics.store import Lookup, Row, RowStore
from sandbox.dynamics.values import convert

__all__ = ["Outcome", "Rows", "delete_row", "find_row", "upsert_row"]


@dataclass(frozen=True, slots=True)
class Outcome:
    row_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class _Located:
    row_id: str | None  # the existing row's id, if any
    url_id: str | None  # a primary key given in the URL
    key_values: dict[str, object]


@dataclass(slots=True)
class Rows:
    """The store seen from one request (its service root, for ``@odata.bind`` URLs)."""

    store: RowStore
    root: str

    def table_for_set(self, entity_set: str) -> EntityDef:
        table = self.store.schema.by_set(entity_set)
        if table is None:
            raise DataverseError.odata(f"Resource not found for the segment '{entity_set}'.", 404)
        return table

    def resolve(self, ref: EntityRef) -> Lookup:
        table = self.table_for_set(ref.entity_set)
        located = _locate_pairs(self.store, table, ref.row_id, ref.key)
        if located.row_id is None:
            raise _missing(table, ref.row_id)
        return Lookup(table.logical_name, located.row_id)

    def create(self, table: EntityDef, body: Mapping[str, object]) -> tuple[str, bool]:
        changes = parse_body(table, body, self.resolve, self.root)
        wanted = changes.pop(table.primary_id, None)
        if wanted is not None:
            id_attr = table.attribute(table.primary_id)
            assert id_attr is not None  # noqa: S101 (every table has its primary id)
            wanted = str(convert(table.logical_name, id_attr, wanted))
            if self.store.get(table.logical_name, wanted) is not None:
                raise DataverseError(412, DUPLICATE_RECORD, "Cannot insert duplicate key.")
        return self.store.write(table.logical_name, None, changes, create_id=wanted)


def _missing(table: EntityDef, row_id: str | None) -> DataverseError:
    if row_id is not None:
        return DataverseError.not_found(table.logical_name, row_id)
    return DataverseError(
        404,
        KEY_NOT_FOUND,
        f"A record with the specified key values does not exist in {table.logical_name} entity",
    )


def _locate(store: RowStore, table: EntityDef, key: str) -> _Located:
    row_id, pairs = parse_key(key)
    return _locate_pairs(store, table, row_id, pairs)


def _locate_pairs(
    store: RowStore,
    table: EntityDef,
    row_id: str | None,
    pairs: tuple[tuple[str, str | int], ...],
) -> _Located:
    if row_id is not None:
        found = store.get(table.logical_name, row_id)
        return _Located(row_id if found else None, row_id, {})
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names) or table.key(names) is None:
        raise DataverseError.odata(
            f"The key '{','.join(names)}' is not a valid alternate key of the "
            f"'{table.logical_name}' entity."
        )
    values: dict[str, object] = {}
    for name, value in pairs:
        attr = table.attribute(name)
        assert attr is not None  # noqa: S101 (the key names existing columns)
        values[name] = convert(table.logical_name, attr, value)
    return _Located(store.find_by_key(table.logical_name, values), None, values)


def find_row(rows: Rows, table: EntityDef, key: str, *, missing_ok: bool) -> Row | None:
    located = _locate(rows.store, table, key)
    row = rows.store.get(table.logical_name, located.row_id) if located.row_id else None
    if row is None and not missing_ok:
        raise _missing(table, located.url_id)
    return row


def _etag(row: Row) -> str:
    return f'W/"{row["versionnumber"]}"'


def _check_version(row: Row, if_match: str | None) -> None:
    if if_match not in (None, "*") and if_match.strip() != _etag(row):
        raise DataverseError(
            412,
            CONCURRENCY_MISMATCH,
            "The version of the existing record doesn't match the RowVersion property provided.",
        )


def upsert_row(
    rows: Rows,
    table: EntityDef,
    key: str,
    body: Mapping[str, object],
    *,
    if_match: str | None,
    if_none_match: str | None,
) -> Outcome:
    store = rows.store
    with store.atomic():
        located = _locate(store, table, key)
        current = store.get(table.logical_name, located.row_id) if located.row_id else None
        if current is not None and if_none_match == "*":
            raise DataverseError(412, "", "A record with matching key values already exists.")
        if current is None and if_match is not None:
            raise DataverseError(
                404, "", f"{table.logical_name} With Id = {located.url_id or key} Does Not Exist"
            )
        if current is not None:
            _check_version(current, if_match)
        changes = parse_body(table, body, rows.resolve, rows.root)
        if current is not None:
            for name in located.key_values:
                changes.pop(name, None)
            row_id, created = store.write(table.logical_name, located.row_id, changes)
        else:
            merged = {**located.key_values, **changes}
            row_id, created = store.write(
                table.logical_name, None, merged, create_id=located.url_id
            )
    return Outcome(row_id, created)


def delete_row(rows: Rows, table: EntityDef, key: str, if_match: str | None) -> None:
    row = find_row(rows, table, key, missing_ok=False)
    assert row is not None  # noqa: S101 (missing_ok=False raises)
    _check_version(row, if_match)
    rows.store.delete(table.logical_name, str(row[table.primary_id]))
