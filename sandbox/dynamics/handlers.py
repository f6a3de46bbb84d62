"""Answers for single rows: create (POST), the upsert/create reply, retrieve (GET), and the
JSON helpers every route uses.

A write answers 204 with ``OData-EntityId`` (and ``Location`` when a row was created); with
``Prefer: return=representation`` it answers 201 (created) or 200 (updated) with the row,
``$select`` applied, and ``Preference-Applied: return=representation``. A retrieve answers the
row with its ``ETag``, or 304 when ``If-None-Match`` carries the current etag.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.dynamics.errors import INVALID_ARGUMENT, DataverseError
from sandbox.dynamics.odata import parse_select
from sandbox.dynamics.query import Prefer, render_row
from sandbox.dynamics.schema import AttributeDef, EntityDef
from sandbox.dynamics.store import RowStore
from sandbox.dynamics.upsert import Rows, find_row

__all__ = [
    "JSON_TYPE",
    "create",
    "error_response",
    "json_body",
    "json_response",
    "retrieve",
    "written",
]

JSON_TYPE = "application/json; odata.metadata=minimal"


def create(
    store: RowStore, request: Request, table: EntityDef, prefer: Prefer, root: str
) -> Response:
    if table.logical_name == "opportunityclose":
        raise DataverseError(
            400,
            INVALID_ARGUMENT,
            "opportunityclose rows are created by the WinOpportunity and LoseOpportunity actions.",
        )
    rows = Rows(store, root)
    body = json_body(request)
    row_id, _ = rows.create(table, body)
    return written(store, request, table, row_id, prefer=prefer, root=root, created=True)


def written(
    store: RowStore,
    request: Request,
    table: EntityDef,
    row_id: str,
    *,
    prefer: Prefer,
    root: str,
    created: bool,
) -> Response:
    url = f"{root}/{table.entity_set}({row_id})"
    headers = {"OData-EntityId": url}
    if created:
        headers["Location"] = url
    if not prefer.return_representation:
        return Response(status=204, headers=headers)
    row = store.get(table.logical_name, row_id)
    assert row is not None  # noqa: S101 (just written)
    select = select_of(table, request)
    body = {
        "@odata.context": _entity_context(root, table, select),
        **render_row(table, row, select),
    }
    headers["Preference-Applied"] = "return=representation"
    return json_response(body, 201 if created else 200, headers)


def retrieve(request: Request, table: EntityDef, rows: Rows, key: str, root: str) -> Response:
    for name in request.args:
        if name.startswith("$") and name != "$select":
            raise DataverseError.odata(f"The query parameter {name} is not supported.")
    row = find_row(rows, table, key, missing_ok=False)
    assert row is not None  # noqa: S101 (missing_ok=False raises)
    etag = f'W/"{row["versionnumber"]}"'
    if request.headers.get("If-None-Match") == etag:
        return Response(status=304, headers={"ETag": etag})
    select = select_of(table, request)
    body = {
        "@odata.context": _entity_context(root, table, select),
        **render_row(table, row, select),
    }
    return json_response(body, headers={"ETag": etag})


def select_of(table: EntityDef, request: Request) -> list[AttributeDef] | None:
    return parse_select(table, request.args.get("$select"))


def _entity_context(root: str, table: EntityDef, select: list[AttributeDef] | None) -> str:
    columns = "(" + ",".join(a.value_name for a in select) + ")" if select else ""
    return f"{root}/$metadata#{table.entity_set}{columns}/$entity"


def error_response(exc: DataverseError) -> Response:
    if exc.empty_body:
        return Response(status=exc.status, headers=exc.headers)
    return json_response(exc.body(), exc.status, exc.headers)


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False).encode("utf-8"),
        status=status,
        headers=dict(headers or {}),
        content_type=JSON_TYPE,
    )


def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise DataverseError.odata("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise DataverseError.odata("The request body must be a JSON object.")
    return body
