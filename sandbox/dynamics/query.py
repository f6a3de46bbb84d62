"""``GET <entity set>``: filtering, ordering, ``$top``, paging and change tracking (§C4, §C8).

Paging: ``Prefer: odata.maxpagesize=N`` (default and most 5000; answered with
``Preference-Applied``) cuts the result into pages; ``@odata.nextLink`` is the request URL with
``$skiptoken=<cookie>`` (a paging cookie in Dataverse's XML shape naming the last row, so a page
never repeats or skips rows that were there when the query began). ``$top`` limits the result,
and is ignored when ``odata.maxpagesize`` is also sent. ``$skip`` is refused, as Dataverse
refuses it. ``$expand`` is not simulated (400).

Change tracking: ``Prefer: odata.track-changes`` on a table with change tracking enabled answers
every row and, on the last page, ``@odata.deltaLink`` (``$deltatoken=<version>!<MM/dd/yyyy
HH:mm:ss>``). Following it returns the rows written since (current values, oldest change
first) and ``{"@odata.context": "…/$metadata#<set>/$deletedEntity", "id", "reason":
"deleted"}`` for rows deleted since, then a new delta link. ``$filter``, ``$orderby``,
``$expand`` and ``$top`` are refused with change tracking. A token older than
``expire_days`` days of sandbox time answers 400 ``0x80044352`` (ExpiredVersionStamp: do a full
sync).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from sandbox.dynamics.errors import EXPIRED_VERSION_STAMP, INVALID_ARGUMENT, DataverseError
from sandbox.dynamics.odata import column_value, parse_filter_plan, parse_orderby, parse_select
from sandbox.dynamics.schema import AttributeDef, EntityDef
from sandbox.dynamics.store import Row, RowStore

__all__ = ["MAX_PAGE_SIZE", "Prefer", "Query", "QueryResult", "render_row", "run_query"]

MAX_PAGE_SIZE = 5000
KNOWN_OPTIONS = frozenset(
    {"$select", "$filter", "$orderby", "$top", "$count", "$skiptoken", "$deltatoken"}
)
_NOT_WITH_TRACKING = ("$filter", "$orderby", "$expand", "$top")
_DELTA_RE = re.compile(r"^(\d+)!(\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})$")
_COOKIE_RE = re.compile(r'^<cookie pagenumber="(\d+)" pagingcookie="([A-Za-z0-9_=-]+)" />$')


@dataclass(frozen=True, slots=True)
class Prefer:
    """The request's ``Prefer`` preferences that matter here."""

    max_page_size: int | None = None
    track_changes: bool = False
    return_representation: bool = False
    continue_on_error: bool = False

    @classmethod
    def parse(cls, header: str) -> Prefer:
        values: dict[str, str] = {}
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name:
                values[name.strip().lower()] = value.strip().strip('"')
        size = values.get("odata.maxpagesize")
        if size is not None and (not size.isdigit() or int(size) < 1):
            raise DataverseError.odata(f"The value '{size}' of odata.maxpagesize is not valid.")
        return cls(
            max_page_size=min(int(size), MAX_PAGE_SIZE) if size else None,
            track_changes="odata.track-changes" in values,
            return_representation=values.get("return") == "representation",
            continue_on_error="odata.continue-on-error" in values,
        )


@dataclass(frozen=True, slots=True)
class Query:
    """One ``GET <set>``: its query options, preferences, URL (without the query) and the
    service root."""

    args: Mapping[str, str]
    prefer: Prefer
    url: str
    root: str
    expire_days: float


@dataclass(frozen=True, slots=True)
class QueryResult:
    body: dict[str, Any]
    applied: tuple[str, ...]


def render_row(table: EntityDef, row: Row, select: list[AttributeDef] | None) -> dict[str, Any]:
    """A row as the Web API returns it: ``@odata.etag``, the columns asked for (all by
    default; lookups as ``_x_value``) and always the primary id."""
    out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
    for attr in select if select is not None else table.attributes:
        out[attr.value_name] = column_value(attr, row)
    out[table.primary_id] = row[table.primary_id]
    return out


def run_query(store: RowStore, table: EntityDef, query: Query) -> QueryResult:
    """Answer ``GET <root>/<set>?<args>``."""
    args, prefer, url, root = query.args, query.prefer, query.url, query.root
    for name in args:
        if name == "$skip":
            raise DataverseError.odata("The query parameter $skip is not supported.")
        if name.startswith("$") and name not in KNOWN_OPTIONS:
            raise DataverseError.odata(f"The query parameter {name} is not supported.")
    select = parse_select(table, args.get("$select"))
    context = f"{root}/$metadata#{table.entity_set}"
    if select is not None:
        context += "(" + ",".join(a.value_name for a in select) + ")"
    tracking = prefer.track_changes or "$deltatoken" in args
    if tracking:
        return _tracked(store, table, query, select, context)
    if "$filter" in args:
        predicate, plan = parse_filter_plan(table, args["$filter"])
        rows = (
            store.rows(table.logical_name)
            if plan is None
            else store.rows_with_ids(
                table.logical_name,
                set().union(*(store.matching(table.logical_name, c, v) for c, v in plan)),
            )
        )
        rows = [r for r in rows if predicate(r)]
    else:
        rows = store.rows(table.logical_name)
    order = parse_orderby(table, args["$orderby"]) if "$orderby" in args else []
    compare = _comparator(order)
    key_of = functools.partial(_sort_key, table, order)
    rows.sort(key=functools.cmp_to_key(lambda a, b: compare(key_of(a), key_of(b))))
    top = _top(args.get("$top"))
    if top is not None and prefer.max_page_size is None:
        rows = rows[:top]
    body: dict[str, Any] = {"@odata.context": context}
    if args.get("$count") == "true":
        body["@odata.count"] = min(len(rows), MAX_PAGE_SIZE)
    cookie = _read_cookie(args.get("$skiptoken"))
    page_number = 1
    if cookie is not None:
        page_number, after = int(cookie["page"]), list(cookie["after"])
        rows = [r for r in rows if compare(key_of(r), after) > 0]
    size = prefer.max_page_size or MAX_PAGE_SIZE
    page, more = rows[:size], len(rows) > size
    body["value"] = [render_row(table, r, select) for r in page]
    if more:
        token = _cookie(page_number + 1, {"page": page_number + 1, "after": key_of(page[-1])})
        body["@odata.nextLink"] = _link(url, args, "$skiptoken", token)
    applied = (f"odata.maxpagesize={size}",) if prefer.max_page_size else ()
    return QueryResult(body, applied)


def _tracked(
    store: RowStore,
    table: EntityDef,
    query: Query,
    select: list[AttributeDef] | None,
    context: str,
) -> QueryResult:
    for name in _NOT_WITH_TRACKING:
        if name in query.args:
            raise DataverseError.odata(
                f"The query option '{name}' is not supported with change tracking "
                "(Prefer: odata.track-changes)."
            )
    if not table.change_tracking:
        raise DataverseError(
            400,
            INVALID_ARGUMENT,
            f"Change tracking is not enabled for the entity '{table.logical_name}'.",
        )
    if "$deltatoken" in query.args:
        body = _delta(store, table, query, select, context)
    else:
        body = _initial(store, table, query, select, context)
    applied = ["odata.track-changes"]
    if query.prefer.max_page_size:
        applied.append(f"odata.maxpagesize={query.prefer.max_page_size}")
    return QueryResult(body, tuple(applied))


def _initial(
    store: RowStore,
    table: EntityDef,
    query: Query,
    select: list[AttributeDef] | None,
    context: str,
) -> dict[str, Any]:
    """Every row, in primary-key order, a page at a time; the delta link on the last page."""
    cookie = _read_cookie(query.args.get("$skiptoken"))
    size = query.prefer.max_page_size or MAX_PAGE_SIZE
    version = int(cookie["upto"]) if cookie else store.version
    rows = sorted(store.rows(table.logical_name), key=lambda r: str(r[table.primary_id]))
    if cookie is not None:
        rows = [r for r in rows if str(r[table.primary_id]) > str(cookie["after"])]
    page, more = rows[:size], len(rows) > size
    body: dict[str, Any] = {"@odata.context": context}
    body["value"] = [render_row(table, r, select) for r in page]
    if more:
        state = {"after": page[-1][table.primary_id], "upto": version}
        body["@odata.nextLink"] = _link(query.url, query.args, "$skiptoken", _cookie(2, state))
    else:
        body["@odata.deltaLink"] = _delta_link(query, version, store.clock.now())
    return body


def _delta(
    store: RowStore,
    table: EntityDef,
    query: Query,
    select: list[AttributeDef] | None,
    context: str,
) -> dict[str, Any]:
    """Rows written and rows deleted since the token, in version order, a page at a time."""
    now = store.clock.now()
    since = _read_delta(query.args["$deltatoken"], now, query.expire_days)
    cookie = _read_cookie(query.args.get("$skiptoken"))
    size = query.prefer.max_page_size or MAX_PAGE_SIZE
    upto = int(cookie["upto"]) if cookie else store.version
    after = int(cookie["after"]) if cookie else since
    rows, deleted = store.changes_since(table.logical_name, after)
    entries: list[tuple[int, dict[str, Any]]] = [
        (int(r["versionnumber"]), render_row(table, r, select))
        for r in rows
        if r["versionnumber"] <= upto
    ]
    gone = f"{query.root}/$metadata#{table.entity_set}/$deletedEntity"
    entries += [
        (v, {"@odata.context": gone, "id": i, "reason": "deleted"}) for i, v in deleted if v <= upto
    ]
    entries.sort(key=lambda e: e[0])
    body: dict[str, Any] = {"@odata.context": f"{context}/$delta"}
    page, more = entries[:size], len(entries) > size
    body["value"] = [e for _, e in page]
    if more:
        state = {"after": page[-1][0], "upto": upto}
        body["@odata.nextLink"] = _link(query.url, query.args, "$skiptoken", _cookie(2, state))
    else:
        body["@odata.deltaLink"] = _delta_link(query, upto, now)
    return body


def _top(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise DataverseError.odata(f"Invalid value '{text}' for $top query option found.")
    return int(text)


def _sort_key(table: EntityDef, order: list[tuple[AttributeDef, bool]], row: Row) -> list[Any]:
    return [column_value(a, row) for a, _ in order] + [row[table.primary_id]]


def _comparator(order: list[tuple[AttributeDef, bool]]) -> Callable[[list[Any], list[Any]], int]:
    directions = [desc for _, desc in order] + [False]

    def compare(left: list[Any], right: list[Any]) -> int:
        for a, b, desc in zip(left, right, directions, strict=True):
            if a == b:
                continue
            if a is None or b is None:
                result = -1 if a is None else 1  # SQL Server: null first ascending
            else:
                x, y = (
                    (a.lower(), b.lower()) if isinstance(a, str) and isinstance(b, str) else (a, b)
                )
                result = 0 if x == y else (-1 if x < y else 1)
            if result:
                return -result if desc else result
        return 0

    return compare


def _cookie(page: int, state: Mapping[str, Any]) -> str:
    data = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
    return f'<cookie pagenumber="{page}" pagingcookie="{data}" />'


def _read_cookie(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    match = _COOKIE_RE.match(text)
    try:
        state = json.loads(base64.urlsafe_b64decode(match.group(2))) if match else None
    except ValueError:
        state = None
    if not isinstance(state, dict):
        raise DataverseError.odata("The $skiptoken value is not a valid paging cookie.")
    return state


def _link(url: str, args: Mapping[str, str], name: str, value: str) -> str:
    pairs = [(k, v) for k, v in args.items() if k not in ("$skiptoken",)] + [(name, value)]
    return url + "?" + "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in pairs)


def _delta_link(query: Query, version: int, now: datetime) -> str:
    pairs = {k: v for k, v in query.args.items() if k == "$select"}
    token = f"{version}!{now.astimezone(UTC).strftime('%m/%d/%Y %H:%M:%S')}"
    return _link(query.url, pairs, "$deltatoken", token)


def _read_delta(token: str, now: datetime, expire_days: float) -> int:
    match = _DELTA_RE.match(unquote(token))
    if match is None:
        raise DataverseError.odata(f"The delta token '{token}' is not valid.")
    issued = datetime.strptime(match.group(2), "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC)
    if now - issued > timedelta(days=expire_days):
        raise DataverseError(
            400,
            EXPIRED_VERSION_STAMP,
            "Version stamp associated with the client has expired. Please perform a full sync.",
        )
    return int(match.group(1))
