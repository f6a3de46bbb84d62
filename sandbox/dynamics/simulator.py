"""The Dataverse Web API v9.2 as a WSGI app (crm-apis §C), over :class:`RowStore`.

Routes under ``/api/data/v9.2/``, with the route names fault rules and the request log use:

======  ===============================================  ======================
GET     ``<set>`` (``$select $filter $orderby $top``)      ``query``
POST    ``<set>``                                         ``create``
GET     ``<set>(<id>)`` / ``<set>(<key>='…')``            ``retrieve``
PATCH   ``<set>(<id>)`` / ``<set>(<key>='…')``            ``upsert``
DELETE  ``<set>(<id>)`` / ``<set>(<key>='…')``            ``delete``
POST    ``$batch``                                        ``batch``
POST    ``WinOpportunity`` / ``LoseOpportunity``          ``win_opportunity`` / ``lose_opportunity``
GET     ``EntityDefinitions…``                            ``metadata``
POST    ``EntityDefinitions(…)/Attributes`` / ``/Keys``      ``customize``
GET     ``WhoAmI``                                        ``whoami``
======  ===============================================  ======================

Anything else is ``other`` (404 "Resource not found for the segment …"). Entity sets:
``opportunities``, ``accounts``, ``contacts``, ``transactioncurrencies``, ``opportunitycloses``
(read-only: rows come from the actions).

Every request needs ``Authorization: Bearer <token>`` issued by the Entra simulator for the
environment's resource (``https://<org>.crm.dynamics.com``); see :mod:`sandbox.dynamics.auth`.
Then service protection (:mod:`sandbox.dynamics.protection`) counts it. Upsert semantics
(§C2) are in :mod:`sandbox.dynamics.upsert`; the metadata writes (new columns, alternate keys
whose index is built in the background) in :mod:`sandbox.dynamics.customize`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.clock import SandboxClock
from sandbox.dynamics.actions import LOSE, WIN, close_opportunity
from sandbox.dynamics.auth import authenticate
from sandbox.dynamics.batch import BatchPart, InnerResponse, parse_batch, run_batch
from sandbox.dynamics.customize import (
    attribute_url,
    create_attribute,
    create_key,
    key_url,
    settle_keys,
)
from sandbox.dynamics.errors import DataverseError
from sandbox.dynamics.handlers import (
    create,
    error_response,
    json_body,
    json_response,
    retrieve,
    written,
)
from sandbox.dynamics.metadata import find_table, metadata_response
from sandbox.dynamics.protection import Limits, ServiceProtection
from sandbox.dynamics.query import Prefer, Query, run_query
from sandbox.dynamics.refs import API_PREFIX, split_segment
from sandbox.dynamics.salesperson import SalespersonSimulator
from sandbox.dynamics.schema import OrgSchema
from sandbox.dynamics.store import API_USER_ID, RowStore
from sandbox.dynamics.tables import CURRENCIES, DEFAULT_TABLES
from sandbox.dynamics.upsert import Rows, delete_row, upsert_row
from sandbox.requestlog import RequestLog
from sandbox.tokens import TokenStore
from sandbox.wsgi import Environ, StartResponse

__all__ = ["ROUTE_NAMES", "DataverseSimulator"]

ROUTE_NAMES = (
    "batch",
    "create",
    "customize",
    "delete",
    "lose_opportunity",
    "metadata",
    "other",
    "query",
    "retrieve",
    "upsert",
    "whoami",
    "win_opportunity",
)
DEFAULT_EXPIRE_DAYS = 7.0
DEFAULT_KEY_INDEX_SECONDS = 10.0
ORGANIZATION_ID = "0f9a3bd6-4b1e-4c3b-9d2a-5a1d7c0e0001"
BUSINESS_UNIT_ID = "0f9a3bd6-4b1e-4c3b-9d2a-5a1d7c0e0002"


@dataclass(frozen=True, slots=True)
class _Call:
    """One request being answered: who asked, the service root, the path after it."""

    request: Request
    user: str
    root: str
    rest: str


class DataverseSimulator:
    """The WSGI app. In-process handles for tests: ``store`` (rows), ``schema`` (metadata),
    ``protection`` (service protection limits), ``salesperson`` (a CRM user),
    ``key_index_seconds`` (sandbox seconds a new alternate key's index takes to build)."""

    def __init__(
        self,
        clock: SandboxClock,
        tokens: TokenStore,
        *,
        audience: str,
        authority: str = "",
        log: RequestLog | None = None,
        limits: Limits | None = None,
        expire_days: float = DEFAULT_EXPIRE_DAYS,
    ) -> None:
        self.clock = clock
        self.tokens = tokens
        self.audience = audience.rstrip("/")
        self.authority = authority
        self.log = log
        self.schema = OrgSchema(DEFAULT_TABLES)
        self.store = RowStore(self.schema, clock)
        self.protection = ServiceProtection(clock, limits, speed=lambda: clock.speed)
        self.salesperson = SalespersonSimulator(self.store)
        self.default_expire_days = expire_days
        self.expire_days = expire_days
        self.processing_delay_s = 0.0
        self.key_index_seconds = DEFAULT_KEY_INDEX_SECONDS
        self._seed_currencies()

    def _seed_currencies(self) -> None:
        for code, name, symbol, rate in CURRENCIES:
            self.store.write(
                "transactioncurrency",
                None,
                {
                    "isocurrencycode": code,
                    "currencyname": name,
                    "currencysymbol": symbol,
                    "exchangerate": rate,
                    "currencyprecision": 0 if code == "JPY" else 2,
                },
            )

    def currency_id(self, iso_code: str) -> str:
        found = self.store.find_by_key("transactioncurrency", {"isocurrencycode": iso_code})
        if found is None:
            raise KeyError(iso_code)
        return found

    def reset(self) -> None:
        """Between tests: default metadata, limits, delta-token expiry; rows stay."""
        self.schema.reset()
        self.protection.reset()
        self.expire_days = self.default_expire_days
        self.processing_delay_s = 0.0
        self.key_index_seconds = DEFAULT_KEY_INDEX_SECONDS

    # -- routing ------------------------------------------------------------------------------

    @staticmethod
    def route_of(environ: Environ) -> str:
        method = environ.get("REQUEST_METHOD", "GET")
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith(API_PREFIX):
            return "other"
        rest = path[len(API_PREFIX) :]
        fixed = {
            ("POST", "$batch"): "batch",
            ("GET", "WhoAmI"): "whoami",
            ("POST", WIN): "win_opportunity",
            ("POST", LOSE): "lose_opportunity",
        }
        if (method, rest) in fixed:
            return fixed[(method, rest)]
        if rest.startswith("EntityDefinitions") and method == "GET":
            return "metadata"
        if rest.startswith("EntityDefinitions(") and method == "POST":
            return "customize"
        if "/" in rest or not rest:
            return "other"
        _, key = split_segment(rest) if rest.endswith(")") else (rest, None)
        table_routes = {"GET": "query", "POST": "create"}
        row_routes = {"GET": "retrieve", "PATCH": "upsert", "DELETE": "delete"}
        return (row_routes if key is not None else table_routes).get(method, "other")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            user = authenticate(self.tokens, request, self.audience, self.authority)
            with self.protection.admit(user) as headers:
                if self.processing_delay_s:
                    time.sleep(self.processing_delay_s)
                response = self._dispatch(request, user)
                response.headers.update(headers)
        except DataverseError as exc:
            response = error_response(exc)
        response.headers["OData-Version"] = "4.0"
        return response(environ, start_response)

    def _dispatch(self, request: Request, user: str) -> Response:
        settle_keys(self.schema, self.store, self.clock.now())
        route = self.route_of(request.environ)
        call = _Call(
            request,
            user,
            f"https://{request.host}{API_PREFIX.rstrip('/')}",
            request.path[len(API_PREFIX) :] if request.path.startswith(API_PREFIX) else "",
        )
        handlers: dict[str, Callable[[_Call], Response]] = {
            "batch": self._batch,
            "whoami": self._whoami,
            "win_opportunity": self._action,
            "lose_opportunity": self._action,
            "metadata": self._metadata,
            "customize": self._customize,
            "other": self._not_routed,
        }
        handler = handlers.get(route)
        if handler is not None:
            return handler(call)
        return self._rows(call, route)

    def _whoami(self, call: _Call) -> Response:
        return json_response(
            {
                "@odata.context": f"{call.root}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": BUSINESS_UNIT_ID,
                "UserId": API_USER_ID,
                "OrganizationId": ORGANIZATION_ID,
            }
        )

    def _action(self, call: _Call) -> Response:
        rows = Rows(self.store, call.root)
        close_opportunity(self.store, call.rest, json_body(call.request), rows.resolve, call.root)
        return Response(status=204)

    def _metadata(self, call: _Call) -> Response:
        args = call.request.args
        return json_response(metadata_response(self.schema, call.rest.split("/"), args, call.root))

    def _customize(self, call: _Call) -> Response:
        segments = call.rest.split("/")
        if len(segments) != 2 or segments[1] not in ("Attributes", "Keys"):
            raise DataverseError.odata(
                "The requested resource does not support http method 'POST'.", 405
            )
        table = find_table(self.schema, segments[0])
        body = json_body(call.request)
        solution = call.request.headers.get("MSCRM.SolutionUniqueName") or None
        if segments[1] == "Attributes":
            attr = create_attribute(self.schema, table, body, solution)
            url = attribute_url(call.root, table, attr)
        else:
            key = create_key(
                self.schema,
                table,
                body,
                solution,
                now=self.clock.now(),
                index_seconds=self.key_index_seconds,
            )
            url = key_url(call.root, table, key)
        return Response(status=204, headers={"OData-EntityId": url})

    def _rows(self, call: _Call, route: str) -> Response:
        request, root, rest = call.request, call.root, call.rest
        name, key = split_segment(rest) if rest.endswith(")") else (rest, None)
        table = self.schema.by_set(name)
        if table is None:
            raise DataverseError.odata(f"Resource not found for the segment '{name}'.", 404)
        prefer = Prefer.parse(", ".join(request.headers.getlist("Prefer")))
        if route == "query":
            query = Query(
                request.args.to_dict(),
                prefer,
                f"{root}/{table.entity_set}",
                root,
                self.expire_days,
            )
            result = run_query(self.store, table, query)
            headers = {"Preference-Applied": ", ".join(result.applied)} if result.applied else {}
            return json_response(result.body, headers=headers)
        if route == "create":
            return create(self.store, request, table, prefer, root)
        rows = Rows(self.store, root)
        assert key is not None  # noqa: S101 (route_of saw the key)
        if route == "retrieve":
            return retrieve(request, table, rows, key, root)
        if route == "delete":
            delete_row(rows, table, key, request.headers.get("If-Match"))
            return Response(status=204)
        outcome = upsert_row(
            rows,
            table,
            key,
            json_body(request),
            if_match=request.headers.get("If-Match"),
            if_none_match=request.headers.get("If-None-Match"),
        )
        return written(
            self.store,
            request,
            table,
            outcome.row_id,
            prefer=prefer,
            root=root,
            created=outcome.created,
        )

    def _not_routed(self, call: _Call) -> Response:
        request, rest = call.request, call.rest
        segment = rest.split("/", maxsplit=1)[0] or request.path
        name = split_segment(segment)[0] if segment.endswith(")") else segment
        if self.schema.by_set(name) is not None or rest in ("$batch", WIN, LOSE, "WhoAmI"):
            raise DataverseError.odata(
                f"The requested resource does not support http method '{request.method}'.", 405
            )
        raise DataverseError.odata(f"Resource not found for the segment '{segment}'.", 404)

    # -- rows ---------------------------------------------------------------------------------

    def _batch(self, call: _Call) -> Response:
        request, user = call.request, call.user
        prefer = Prefer.parse(", ".join(request.headers.getlist("Prefer")))
        items = parse_batch(request.headers.get("Content-Type", ""), request.get_data())

        def execute(part: BatchPart) -> InnerResponse:
            url = part.url
            if url.startswith(("https://", "http://")):
                split = urlsplit(url)
                path, query = split.path, split.query
            else:
                path, _, query = url.partition("?")
                if not path.startswith("/"):
                    path = API_PREFIX + path
            if path.rstrip("/") == API_PREFIX + "$batch":
                raise DataverseError.odata("Batch requests cannot be nested.")
            builder = EnvironBuilder(
                path=path,
                query_string=query,
                method=part.method,
                headers=list(part.headers.items()),
                data=part.body,
                base_url=f"https://{request.host}/",
            )
            try:
                inner = Request(builder.get_environ())
            finally:
                builder.close()
            try:
                response = self._dispatch(inner, user)
            except DataverseError as exc:
                response = error_response(exc)
            return InnerResponse(
                response.status_code, list(response.headers.items()), response.get_data()
            )

        status, content_type, body = run_batch(
            items, execute, self.store.atomic, continue_on_error=prefer.continue_on_error
        )
        headers = (
            {"Preference-Applied": "odata.continue-on-error"} if prefer.continue_on_error else {}
        )
        return Response(body, status=status, content_type=content_type, headers=headers)
