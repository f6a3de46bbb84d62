"""The Salesforce REST API as a WSGI app (crm-apis §A), over :class:`RecordStore`.

Routes, with the route names fault rules and the request log use (``/services/data/vNN.N``
prefix omitted):

======  ===============================================  =======================
POST    /services/oauth2/token                           ``token``
GET     /sobjects/{SObject}/describe                     ``describe``
POST    /sobjects/{SObject}                              ``sobject_create``
GET     /sobjects/{SObject}/{id}  (``?fields=a,b``)      ``sobject_get``
GET     /sobjects/{SObject}/{ExtField}/{value}           ``sobject_get``
PATCH   /sobjects/{SObject}/{id}                         ``sobject_update``
DELETE  /sobjects/{SObject}/{id}                         ``sobject_delete``
PATCH   /sobjects/{SObject}/{ExtField}/{value}           ``sobject_upsert``
GET     /sobjects/{SObject}/updated/?start=&end=         ``updated``
POST    /composite/sobjects                              ``collections_create``
PATCH   /composite/sobjects/{SObject}/{ExtField}         ``collections_upsert``
GET     /query?q=                                        ``query``
GET     /queryAll?q=                                     ``query_all``
GET     /query/{locator}, /queryAll/{locator}            ``query_more``
GET     /limits                                          ``limits``
======  ===============================================  =======================

Anything else is ``other`` (404 ``NOT_FOUND``). Every ``/services/data`` reply carries
``Sforce-Limit-Info: api-usage=n/N``; each authenticated call counts one, and once the daily
quota is spent calls answer 403 ``REQUEST_LIMIT_EXCEEDED``. A missing, unknown or expired
session answers 401 ``[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]``.

Upsert by external id: 201 (created) or 200 (updated; 204 before API v46) with
``{"id","success","errors","created"}``; the external id field must not be in the body; several
matches answer 300 with the matching records' URLs (a JSON array of strings). Collections
upsert takes at most 200 records (400 ``EXCEEDED_ID_LIMIT`` beyond), all of that sObject,
each with ``attributes.type`` and the external id; results come back in order; with
``allOrNone`` one failure rolls the batch back and every other record reports
``ALL_OR_NONE_OPERATION_ROLLED_BACK``. Two records of one request with the same external id
both fail with ``DUPLICATE_VALUE`` "Duplicate external id specified".

Collections create takes at most 200 records of any sObjects, each with ``attributes.type``
and no ``Id`` (400 ``INVALID_FIELD`` otherwise); results ``{"id","success","errors"}`` come
back in order, a refused record failing alone (or, with ``allOrNone``, rolling all back).

Query batches are 2,000 records, or ``Sforce-Query-Options: batchSize=N`` (200..2,000);
``nextRecordsUrl`` is server-relative (``/services/data/vNN.N/query/01g…-2000``), a snapshot
taken when the query ran.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.requestlog import RequestLog
from sandbox.salesforce.errors import ROLLED_BACK, ApiError, OAuthError, RecordError, RecordRejected
from sandbox.salesforce.oauth import ConnectedApp, SessionStore, generate_key_and_certificate
from sandbox.salesforce.salesperson import SalespersonSimulator
from sandbox.salesforce.schema import DEFAULT_CURRENCIES, EXTERNAL_ID_FIELD, OrgSchema
from sandbox.salesforce.soql import SoqlError, execute
from sandbox.salesforce.store import API_USER_ID, Clock, MultipleMatches, RecordStore
from sandbox.salesforce.values import format_datetime, parse_datetime
from sandbox.wsgi import Environ, StartResponse

__all__ = ["ROUTES", "ROUTE_NAMES", "SalesforceSimulator"]

DATA = "/services/data/v<version>"
ROUTES = Map(
    [
        Rule("/services/oauth2/token", methods=["POST"], endpoint="token"),
        Rule(f"{DATA}/limits", methods=["GET"], endpoint="limits"),
        Rule(f"{DATA}/query", methods=["GET"], endpoint="query"),
        Rule(f"{DATA}/queryAll", methods=["GET"], endpoint="query_all"),
        Rule(f"{DATA}/query/<locator>", methods=["GET"], endpoint="query_more"),
        Rule(f"{DATA}/queryAll/<locator>", methods=["GET"], endpoint="query_more"),
        Rule(f"{DATA}/sobjects/<sobject>/describe", methods=["GET"], endpoint="describe"),
        Rule(f"{DATA}/sobjects/<sobject>/updated/", methods=["GET"], endpoint="updated"),
        Rule(f"{DATA}/sobjects/<sobject>", methods=["POST"], endpoint="sobject_create"),
        Rule(f"{DATA}/sobjects/<sobject>/<record_id>", methods=["GET"], endpoint="sobject_get"),
        Rule(
            f"{DATA}/sobjects/<sobject>/<record_id>", methods=["PATCH"], endpoint="sobject_update"
        ),
        Rule(
            f"{DATA}/sobjects/<sobject>/<record_id>", methods=["DELETE"], endpoint="sobject_delete"
        ),
        Rule(
            f"{DATA}/sobjects/<sobject>/<field>/<path:value>",
            methods=["GET"],
            endpoint="sobject_get",
        ),
        Rule(
            f"{DATA}/sobjects/<sobject>/<field>/<path:value>",
            methods=["PATCH"],
            endpoint="sobject_upsert",
        ),
        Rule(f"{DATA}/composite/sobjects", methods=["POST"], endpoint="collections_create"),
        Rule(
            f"{DATA}/composite/sobjects/<sobject>/<field>",
            methods=["PATCH"],
            endpoint="collections_upsert",
        ),
    ],
    strict_slashes=False,
    merge_slashes=False,
)

ROUTE_NAMES = tuple(sorted({str(rule.endpoint) for rule in ROUTES.iter_rules()} | {"other"}))

DEFAULT_DAILY_QUOTA = 100_000
DEFAULT_BATCH_SIZE = 2000
MIN_BATCH_SIZE = 200
MAX_COLLECTION = 200
MIN_VERSION = 20.0
UPSERT_BODY_VERSION = 46.0
JSON_TYPE = "application/json;charset=UTF-8"
_SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
_VERSION_RE = re.compile(r"^\d{2}\.0$")


class _Cursor:
    """What is left of a query: the remaining records, handed out a batch at a time."""

    def __init__(self, records: list[dict[str, Any]], total: int, batch: int) -> None:
        self.records = records
        self.total = total
        self.batch = batch
        self.position = 0


class SalesforceSimulator:
    """The WSGI app. In-process handles for tests: ``store`` (records), ``org`` (metadata),
    ``tokens`` (sessions and the connected app), ``salesperson`` (scripted CRM users)."""

    def __init__(
        self,
        clock: Clock,
        *,
        log: RequestLog | None = None,
        api_version: str = "62.0",
        daily_quota: int = DEFAULT_DAILY_QUOTA,
        currencies: tuple[str, ...] = DEFAULT_CURRENCIES,
        token_lifetime_s: float = 7200,
        app: ConnectedApp | None = None,
        private_key_pem: bytes | None = None,
    ) -> None:
        self.clock = clock
        self.log = log
        self.api_version = api_version
        self.org = OrgSchema(currencies=tuple(currencies))
        self.store = RecordStore(self.org, clock)
        if app is None:
            private_key_pem, certificate = generate_key_and_certificate()
            app = ConnectedApp.generate(
                org_id=self.org.org_id, user_id=API_USER_ID, certificate_pem=certificate
            )
        self.private_key_pem = private_key_pem
        self.tokens = SessionStore(app, lifetime_s=token_lifetime_s)
        self.salesperson = SalespersonSimulator(self.store)
        self.external_id_field = EXTERNAL_ID_FIELD
        self.default_quota = daily_quota
        self.daily_quota = daily_quota
        self._used = 0
        self._lock = threading.Lock()
        self._cursors: dict[str, _Cursor] = {}

    # -- test controls ----------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every session issued so far expires now (the next call answers 401)."""
        self.tokens.expire_all()

    def set_api_usage(self, used: int, quota: int | None = None) -> None:
        """Set the org's API calls used in the last 24 h (and the quota)."""
        with self._lock:
            self._used = used
            if quota is not None:
                self.daily_quota = quota

    @property
    def api_usage(self) -> tuple[int, int]:
        with self._lock:
            return self._used, self.daily_quota

    def reset(self) -> None:
        """Between tests: quota and usage back to the start, default token lifetime and
        metadata (records stay)."""
        self.set_api_usage(0, self.default_quota)
        self.org.reset()
        self.tokens.reset()
        with self._lock:
            self._cursors.clear()

    @staticmethod
    def route_of(environ: Environ) -> str:
        try:
            endpoint, _ = ROUTES.bind_to_environ(environ).match()
        except HTTPException:
            return "other"
        return str(endpoint)

    # -- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith("/services/oauth2/"):
            response = self._oauth(request)
        else:
            response = self._rest(request)
        return response(environ, start_response)

    def _oauth(self, request: Request) -> Response:
        try:
            ROUTES.bind_to_environ(request.environ).match()
        except HTTPException:
            return _json({"error": "not_found", "error_description": "not found"}, 404)
        auth = request.authorization
        basic = (
            (auth.username or "", auth.password or "")
            if auth is not None and auth.type == "basic"
            else None
        )
        try:
            body = self.tokens.token(request.form.to_dict(), basic, _root(request))
        except OAuthError as exc:
            return _json(exc.body(), exc.status)
        return _json(body)

    def _rest(self, request: Request) -> Response:
        try:
            response = self._dispatch(request)
        except ApiError as exc:
            response = _json(exc.body(), exc.status, exc.headers)
        used, quota = self.api_usage
        response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{quota}"
        return response

    def _dispatch(self, request: Request) -> Response:
        try:
            endpoint, args = ROUTES.bind_to_environ(request.environ).match()
        except MethodNotAllowed as exc:
            self._authenticate(request)
            allowed = ",".join(sorted(exc.valid_methods or ()))
            raise ApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
            ) from None
        except HTTPException:
            self._authenticate(request)
            raise ApiError.not_found() from None
        self._authenticate(request)
        args = dict(args)
        version = str(args.pop("version"))
        if not _VERSION_RE.match(version) or not (
            MIN_VERSION <= float(version) <= float(self.api_version)
        ):
            raise ApiError.not_found()
        handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
        return handler(request, version, **args)

    def _authenticate(self, request: Request) -> None:
        if not self.tokens.check(request.headers.get("Authorization")):
            raise ApiError(401, "", "", body=_SESSION_EXPIRED)
        with self._lock:
            if self._used >= self.daily_quota:
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self._used += 1

    # -- sObjects -----------------------------------------------------------------------------

    def _describe(self, request: Request, version: str, sobject: str) -> Response:
        body = self.org.describe(sobject, version)
        if body is None:
            raise ApiError.not_found()
        return _json(body)

    def _sobject_create(self, request: Request, version: str, sobject: str) -> Response:
        body = _json_object(request)
        try:
            record_id = self.store.create(sobject, body)
        except RecordRejected as exc:
            raise ApiError.rejected(exc) from None
        return _json({"id": record_id, "success": True, "errors": []}, 201)

    def _sobject_get(
        self, request: Request, version: str, sobject: str, record_id: str = "", **ext: str
    ) -> Response:
        obj = self.org.sobject(sobject)
        if obj is None:
            raise ApiError.not_found()
        if ext:
            record = self._by_external_id(obj.name, ext["field"], ext["value"], version)
        else:
            record = self.store.get(obj.name, record_id)
        if record is None:
            raise ApiError.not_found()
        wanted = request.args.get("fields")
        names = [f.name for f in obj.fields]
        if wanted:
            names = []
            for raw in wanted.split(","):
                fdef = obj.field(raw.strip())
                if fdef is None:
                    raise ApiError(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{raw.strip()}' on sobject of type {obj.name}",
                    )
                names.append(fdef.name)
        out: dict[str, Any] = {"attributes": _attributes(obj.name, record["Id"], version)}
        out.update({name: record.get(name) for name in names})
        return _json(out)

    def _by_external_id(
        self, sobject: str, field_name: str, value: str, version: str
    ) -> dict[str, Any] | None:
        ids = self._match(sobject, field_name, value)
        if len(ids) > 1:
            raise ApiError(300, "", "", body=[_url(sobject, i, version) for i in ids])
        return self.store.get(sobject, ids[0]) if ids else None

    def _match(self, sobject: str, field_name: str, value: str) -> list[str]:
        obj = self.org.sobject(sobject)
        fdef = obj.field(field_name) if obj else None
        if obj is None or fdef is None:
            raise ApiError.not_found()
        if fdef.name == "Id":
            record = self.store.get(obj.name, value)
            return [record["Id"]] if record else []
        if not fdef.external_id:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Field {fdef.name} is not an External ID or indexed field for {obj.name}",
            )
        return self.store.find(obj.name, fdef.name, value)

    def _sobject_update(
        self, request: Request, version: str, sobject: str, record_id: str
    ) -> Response:
        body = _json_object(request)
        try:
            self.store.update(sobject, record_id, body)
        except RecordRejected as exc:
            raise ApiError.rejected(exc) from None
        return Response(status=204)

    def _sobject_delete(
        self, request: Request, version: str, sobject: str, record_id: str
    ) -> Response:
        self.store.delete(sobject, record_id)
        return Response(status=204)

    def _sobject_upsert(
        self, request: Request, version: str, sobject: str, field: str, value: str
    ) -> Response:
        obj = self.org.sobject(sobject)
        fdef = obj.field(field) if obj else None
        if obj is None or fdef is None:
            raise ApiError.not_found()
        body = _json_object(request)
        for key in body:
            if key.lower() in (fdef.name.lower(), "id"):
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"The {key} field should not be specified in the sobject data.",
                )
        matches = self._match(obj.name, fdef.name, value)
        if len(matches) > 1:
            raise ApiError(300, "", "", body=[_url(obj.name, i, version) for i in matches])
        update_only = request.args.get("updateOnly", "").lower() == "true"
        if update_only and not matches:
            raise ApiError.not_found(
                f"Provided external ID field does not exist or is not accessible: {value}"
            )
        try:
            record_id, created = self.store.upsert(obj.name, fdef.name, value, body)
        except RecordRejected as exc:
            raise ApiError.rejected(exc) from None
        except MultipleMatches as exc:
            raise ApiError(
                300, "", "", body=[_url(obj.name, i, version) for i in exc.ids]
            ) from None
        if not created and float(version) < UPSERT_BODY_VERSION:
            return Response(status=204)
        result = {"id": record_id, "success": True, "errors": [], "created": created}
        return _json(result, 201 if created else 200)

    def _collections_upsert(
        self, request: Request, version: str, sobject: str, field: str
    ) -> Response:
        if float(version) < UPSERT_BODY_VERSION:
            raise ApiError.not_found()
        obj = self.org.sobject(sobject)
        if obj is None:
            raise ApiError.not_found()
        fdef = obj.field(field)
        if fdef is None or not (fdef.external_id or fdef.name == "Id"):
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Field {field} is not an External ID or indexed field for {obj.name}",
            )
        body = _json_object(request)
        records = body.get("records")
        all_or_none = body.get("allOrNone", False)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(400, "JSON_PARSER_ERROR", "records must be a list of sObjects")
        if not isinstance(all_or_none, bool):
            raise ApiError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
        if len(records) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"Maximum number of records allowed in a request is {MAX_COLLECTION}",
            )
        for record in records:
            attributes = record.get("attributes")
            if not isinstance(attributes, dict) or not attributes.get("type"):
                raise ApiError(
                    400,
                    "INVALID_INPUT",
                    "Invalid input. Each record must have an attributes map with a type.",
                )
            if str(attributes["type"]).lower() != obj.name.lower():
                raise ApiError(
                    400,
                    "INVALID_INPUT",
                    f"One or more records have a type different from {obj.name}",
                )
        return _json(self._upsert_batch(obj.name, fdef.name, records, all_or_none))

    def _collections_create(self, request: Request, version: str) -> Response:
        body = _json_object(request)
        records = body.get("records")
        all_or_none = body.get("allOrNone", False)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ApiError(400, "JSON_PARSER_ERROR", "records must be a list of sObjects")
        if not isinstance(all_or_none, bool):
            raise ApiError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
        if len(records) > MAX_COLLECTION:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"Maximum number of records allowed in a request is {MAX_COLLECTION}",
            )
        typed: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            attributes = record.get("attributes")
            if not isinstance(attributes, dict) or not attributes.get("type"):
                raise ApiError(
                    400,
                    "INVALID_INPUT",
                    "Invalid input. Each record must have an attributes map with a type.",
                )
            obj = self.org.sobject(str(attributes["type"]))
            if obj is None:
                raise ApiError(
                    400, "INVALID_TYPE", f"sObject type '{attributes['type']}' is not supported."
                )
            if any(k.lower() == "id" for k in record):
                raise ApiError(400, "INVALID_FIELD", "Cannot specify Id in an insert call")
            typed.append((obj.name, {k: v for k, v in record.items() if k != "attributes"}))

        def create_one(sobject: str, fields: dict[str, Any]) -> dict[str, Any]:
            try:
                return {"id": self.store.create(sobject, fields), "success": True, "errors": []}
            except RecordRejected as exc:
                failed = _failure(list(exc.errors))
                failed.pop("created")
                return failed

        def apply() -> list[dict[str, Any]]:
            results = [create_one(sobject, fields) for sobject, fields in typed]
            if all_or_none and not all(r["success"] for r in results):
                rolled = _failure([ROLLED_BACK])
                rolled.pop("created")
                raise _RolledBack([r if not r["success"] else rolled for r in results])
            return results

        try:
            with self.store.atomic():
                return _json(apply())
        except _RolledBack as exc:
            return _json(exc.results)

    def _upsert_batch(
        self, sobject: str, field_name: str, records: list[dict[str, Any]], all_or_none: bool
    ) -> list[dict[str, Any]]:
        keys = [_key_of(r, field_name) for r in records]
        seen: dict[str, int] = {}
        for key in keys:
            if key is not None:
                seen[key.lower()] = seen.get(key.lower(), 0) + 1

        def apply() -> list[dict[str, Any]]:
            results = [
                self._upsert_one(sobject, field_name, record, key, seen)
                for record, key in zip(records, keys, strict=True)
            ]
            if all_or_none and not all(r["success"] for r in results):
                raise _RolledBack(
                    [r if not r["success"] else _failure([ROLLED_BACK]) for r in results]
                )
            return results

        try:
            with self.store.atomic():
                return apply()
        except _RolledBack as exc:
            return exc.results

    def _upsert_one(
        self,
        sobject: str,
        field_name: str,
        record: Mapping[str, Any],
        key: str | None,
        seen: Mapping[str, int],
    ) -> dict[str, Any]:
        if key is None:
            return _failure([RecordError("MISSING_ARGUMENT", f"{field_name} not specified")])
        if seen[key.lower()] > 1:
            return _failure(
                [RecordError("DUPLICATE_VALUE", f"Duplicate external id specified: {key}")]
            )
        fields = {k: v for k, v in record.items() if k.lower() != field_name.lower()}
        try:
            record_id, created = self.store.upsert(sobject, field_name, key, fields)
        except RecordRejected as exc:
            return _failure(list(exc.errors))
        except MultipleMatches as exc:
            return _failure(
                [
                    RecordError(
                        "DUPLICATE_EXTERNAL_ID",
                        f"{field_name}: more than one record found for external id field: "
                        f"{[str(i) for i in exc.ids]}",
                        (field_name,),
                    )
                ]
            )
        return {"id": record_id, "success": True, "errors": [], "created": created}

    # -- queries --------------------------------------------------------------------------------

    def _query(self, request: Request, version: str, include_deleted: bool = False) -> Response:
        text = request.args.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            result = execute(
                text,
                self.org,
                self.store,
                now=self.clock.now(),
                version=version,
                include_deleted=include_deleted,
            )
        except SoqlError as exc:
            raise ApiError(400, exc.code, exc.message) from None
        if result.count_only:
            return _json({"totalSize": result.total_size, "done": True, "records": []})
        batch = _batch_size(request.headers.get("Sforce-Query-Options", ""))
        cursor = _Cursor(result.records, result.total_size, batch)
        locator = "01g" + secrets.token_hex(8)[:15]
        return self._page(locator, cursor, version, "queryAll" if include_deleted else "query")

    def _query_all(self, request: Request, version: str) -> Response:
        return self._query(request, version, include_deleted=True)

    def _query_more(self, request: Request, version: str, locator: str) -> Response:
        base, _, position = locator.rpartition("-")
        with self._lock:
            cursor = self._cursors.get(base)
        if cursor is None or not position.isdigit() or int(position) != cursor.position:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        kind = "queryAll" if "/queryAll/" in request.path else "query"
        return self._page(base, cursor, version, kind)

    def _page(self, locator: str, cursor: _Cursor, version: str, kind: str) -> Response:
        start = cursor.position
        end = min(start + cursor.batch, len(cursor.records))
        body: dict[str, Any] = {"totalSize": cursor.total, "done": end >= len(cursor.records)}
        cursor.position = end
        with self._lock:
            if body["done"]:
                self._cursors.pop(locator, None)
            else:
                self._cursors[locator] = cursor
                body["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{locator}-{end}"
        body["records"] = cursor.records[start:end]
        return _json(body)

    def _updated(self, request: Request, version: str, sobject: str) -> Response:
        obj = self.org.sobject(sobject)
        if obj is None:
            raise ApiError.not_found()
        start = _replication_date(request.args.get("start"), "start")
        end = _replication_date(request.args.get("end"), "end")
        now = self.clock.now()
        if start >= end:
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", "start date must be before the end date"
            )
        if start < now - timedelta(days=30):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate cannot be more than 30 days ago",
            )
        covered = min(end, now.replace(second=0, microsecond=0))
        ids = self.store.updated_ids(obj.name, start, covered)
        return _json({"ids": ids, "latestDateCovered": format_datetime(covered)})

    def _limits(self, request: Request, version: str) -> Response:
        used, quota = self.api_usage
        return _json({"DailyApiRequests": {"Max": quota, "Remaining": max(quota - used, 0)}})


class _RolledBack(Exception):
    """Raised inside :meth:`RecordStore.atomic` to undo an allOrNone batch."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        super().__init__("allOrNone batch rolled back")
        self.results = results


def _failure(errors: list[RecordError]) -> dict[str, Any]:
    return {
        "id": None,
        "success": False,
        "errors": [e.collection() for e in errors],
        "created": False,
    }


def _key_of(record: Mapping[str, Any], field_name: str) -> str | None:
    for key, value in record.items():
        if key.lower() == field_name.lower() and isinstance(value, str) and value:
            return value
    return None


def _batch_size(header: str) -> int:
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "batchsize" and value.strip().isdigit():
            return max(MIN_BATCH_SIZE, min(DEFAULT_BATCH_SIZE, int(value.strip())))
    return DEFAULT_BATCH_SIZE


def _replication_date(value: str | None, name: str) -> datetime:
    moment = parse_datetime(value) if value else None
    if moment is None:
        raise ApiError(
            400, "INVALID_REPLICATION_DATE" if value else "MISSING_ARGUMENT", f"{name} is invalid"
        )
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _root(request: Request) -> str:
    return f"https://{request.host}"


def _url(sobject: str, record_id: str, version: str) -> str:
    return f"/services/data/v{version}/sobjects/{sobject}/{record_id}"


def _attributes(sobject: str, record_id: str, version: str) -> dict[str, str]:
    return {"type": sobject, "url": _url(sobject, record_id, version)}


def _json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False).encode("utf-8"),
        status=status,
        headers=dict(headers or {}),
        content_type=JSON_TYPE,
    )


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            400, "JSON_PARSER_ERROR", "Unexpected character: the request body is not valid JSON"
        ) from None
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of SObject from a non-object value",
        )
    return body
