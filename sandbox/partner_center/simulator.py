"""The Partner Center Referrals API as a WSGI app (spec §1, §2, §7).

Routes (under ``/v1.0/engagements``), with the route names fault rules use:

=======  =========================  ====================
GET      /referrals                 ``referrals_list``
POST     /referrals                 ``referrals_create``
GET      /referrals/{id}            ``referrals_get``
PATCH    /referrals/{id}            ``referrals_patch``
PUT      /referrals/{id}            ``referrals_put``
=======  =========================  ====================

The webhook registration API and the signing certificate (``webhooks_*`` routes) are
:mod:`sandbox.partner_center.webhooks`; its :class:`WebhookService` (``.webhooks``) hears of
every write to the store.

Every route needs ``Authorization: Bearer <token>`` for ``https://api.partner.microsoft.com``:
missing, unknown, expired or wrong-audience → 401 ``unauthenticated``; an app-only token
→ 403 ``accessDenied`` (the referral APIs support App+User only). Every reply carries
``request-id`` and echoes ``client-request-id``; JSON replies are
``application/json; charset=utf-8``; GET and the replies holding a referral carry ``ETag``.

PATCH answers ``204`` with an empty body unless ``Prefer: return=representation`` asks for the
referral (200). ``If-Match`` is optional on PATCH (absent = no concurrency check, as the docs
say) and required on PUT (absent → 400 ``invalidRequest``: UNDOCUMENTED; the docs only say
"be sure to set" it). A stale ``If-Match`` → 412 ``preconditionFailed``; it must be the eTag
exactly as returned (quotes included; ``*`` is not special). POST answers 200, as the swagger
says (201 is UNDOCUMENTED). Bodies must be ``application/json`` (415 otherwise) and valid JSON
(400 otherwise).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.partner_center.errors import ApiError, error_body
from sandbox.partner_center.listing import PageTokens, page_of, parse_list_args
from sandbox.partner_center.odata import ODataError
from sandbox.partner_center.store import Clock, ReferralStore
from sandbox.partner_center.webhooks import CERTIFICATE_PATH, REGISTRATION_PATH, WebhookService
from sandbox.requestlog import RequestLog
from sandbox.tokens import TokenStore
from sandbox.wsgi import Environ, StartResponse

__all__ = ["AUDIENCE", "BASE_PATH", "ROUTES", "ROUTE_NAMES", "PartnerCenterSimulator"]

AUDIENCE = "https://api.partner.microsoft.com"
BASE_PATH = "/v1.0/engagements"

ROUTES = Map(
    [
        Rule(f"{BASE_PATH}/referrals", methods=["GET"], endpoint="referrals_list"),
        Rule(f"{BASE_PATH}/referrals", methods=["POST"], endpoint="referrals_create"),
        Rule(f"{BASE_PATH}/referrals/<referral_id>", methods=["GET"], endpoint="referrals_get"),
        Rule(f"{BASE_PATH}/referrals/<referral_id>", methods=["PATCH"], endpoint="referrals_patch"),
        Rule(f"{BASE_PATH}/referrals/<referral_id>", methods=["PUT"], endpoint="referrals_put"),
        Rule(f"{REGISTRATION_PATH}/events", methods=["GET"], endpoint="webhooks_events"),
        Rule(REGISTRATION_PATH, methods=["POST"], endpoint="webhooks_register"),
        Rule(REGISTRATION_PATH, methods=["GET"], endpoint="webhooks_registration"),
        Rule(REGISTRATION_PATH, methods=["PUT"], endpoint="webhooks_update"),
        Rule(
            f"{REGISTRATION_PATH}/validationEvents", methods=["POST"], endpoint="webhooks_validate"
        ),
        Rule(
            f"{REGISTRATION_PATH}/validationEvents/<correlation_id>",
            methods=["GET"],
            endpoint="webhooks_validation",
        ),
        Rule(CERTIFICATE_PATH, methods=["GET"], endpoint="webhooks_certificate"),
    ],
    strict_slashes=False,
)

ROUTE_NAMES = tuple(sorted({str(rule.endpoint) for rule in ROUTES.iter_rules()}))
"""What :meth:`PartnerCenterSimulator.route_of` answers (or ``other``), for fault rules."""

_UNAUTHENTICATED = {
    "missing": "Authorization header with a Bearer token is required.",
    "invalid": "The access token is not valid.",
    "expired": "The access token has expired.",
    "wrong_audience": f"The access token is not for {AUDIENCE}.",
}
_JSON_TYPES = frozenset({"application/json", "application/json-patch+json"})


class PartnerCenterSimulator:
    """The WSGI app. ``store`` holds the referrals (seed it, inspect it, edit it in tests).

    ``log`` is the sandbox's request log, kept for tests' convenience: the fault injector in
    front of this app is what records the requests.
    """

    def __init__(
        self,
        tokens: TokenStore,
        clock: Clock,
        *,
        log: RequestLog | None = None,
        store: ReferralStore | None = None,
        page_tokens: PageTokens | None = None,
    ) -> None:
        self.tokens = tokens
        self.clock = clock
        self.log = log
        self.store = store if store is not None else ReferralStore(clock)
        self._page_tokens = page_tokens or PageTokens()
        self.webhooks = WebhookService(clock, partner_id=self.store.partner.organization_id)
        self.store.add_observer(self.webhooks.on_referral_written)

    @staticmethod
    def route_of(environ: Environ) -> str:
        """The route name of a request (for fault rules and the request log), else ``other``."""
        try:
            endpoint, _ = ROUTES.bind_to_environ(environ).match()
        except HTTPException:
            return "other"
        return str(endpoint)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = ROUTES.bind_to_environ(environ).match()
            if str(endpoint).startswith("webhooks_"):
                response = self._webhooks(str(endpoint), request, args)
            else:
                self._authenticate(request)
                handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
                response = handler(request, **args)
        except ApiError as exc:
            response = _json(exc.body(), exc.status, exc.headers)
        except MethodNotAllowed as exc:
            allowed = ", ".join(exc.valid_methods or ())
            body = error_body("invalidRequest", f"{request.method} is not allowed here.")
            response = _json(body, 405, {"Allow": allowed})
        except HTTPException:
            body = error_body("itemNotFound", f"No resource at {request.path}.", "route")
            response = _json(body, 404)
        response.headers["request-id"] = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id")
        if client_request_id:
            response.headers["client-request-id"] = client_request_id
        return response(environ, start_response)

    # -- routes --------------------------------------------------------------------------

    def _referrals_list(self, request: Request) -> Response:
        try:
            query, position = parse_list_args(request.args.to_dict(flat=False), self._page_tokens)
            page = page_of(self.store, query, position)
        except ODataError as exc:
            raise ApiError.invalid(str(exc), target="query") from None
        root = _root(request)
        body: dict[str, Any] = {"@odata.context": f"{root}/v1.0/$metadata#Referrals"}
        if page.count is not None:
            body["@odata.count"] = page.count
        body["value"] = page.value
        if page.next_position is not None:
            token = self._page_tokens.encode(query, page.next_position)
            body["@odata.nextLink"] = f"{root}{BASE_PATH}/referrals?$skiptoken={quote(token)}"
        return _json(body)

    def _referrals_get(self, request: Request, referral_id: str) -> Response:
        raw = self.store.get(referral_id)
        # the doc's single-entity context, typo "engagments" included (spec §2)
        context = f"{_root(request)}/v1.0/engagments/referrals/$metadata#Referrals/$entity"
        return _referral(raw, context)

    def _referrals_create(self, request: Request) -> Response:
        return _referral(self.store.create(_json_body(request)))

    def _referrals_patch(self, request: Request, referral_id: str) -> Response:
        document = _json_body(request)
        updated = self.store.patch(referral_id, document, request.headers.get("If-Match"))
        if "return=representation" in request.headers.get("Prefer", "").replace(" ", ""):
            return _referral(updated)
        return Response(status=204)

    def _referrals_put(self, request: Request, referral_id: str) -> Response:
        if_match = request.headers.get("If-Match")
        if not if_match:
            raise ApiError.invalid("the If-Match header is required", target="If-Match")
        return _referral(self.store.replace(referral_id, _json_body(request), if_match))

    def _webhooks(self, endpoint: str, request: Request, args: Mapping[str, str]) -> Response:
        # The certificate is fetched by receivers, who hold no token. The webhook APIs take
        # App-only tokens as well as App+User ones (the docs say so; referrals take App+User).
        if endpoint != "webhooks_certificate":
            self._authenticate(request, app_only_allowed=True)
        return self.webhooks.handle(endpoint, request, **args)

    # -- helpers -------------------------------------------------------------------------

    def _authenticate(self, request: Request, *, app_only_allowed: bool = False) -> None:
        header = request.headers.get("Authorization")
        reason = self.tokens.check(header, AUDIENCE)
        if reason is not None:
            raise ApiError(
                401,
                "unauthenticated",
                _UNAUTHENTICATED.get(reason, "The caller is not authenticated."),
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        grant = self.tokens.lookup(header)
        if grant is None or (grant.user is None and not app_only_allowed):
            raise ApiError(
                403, "accessDenied", "Referrals support App+User (delegated) tokens only."
            )


def _root(request: Request) -> str:
    # Always https: the simulator is only ever served over TLS. The docs' example nextLink
    # starts with http:// (spec §2), but a client must follow the link it is given, and
    # handing out an http:// URL for a TLS-only server would just be a broken link.
    return f"https://{request.host}"


def _json(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False).encode("utf-8"),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json; charset=utf-8",
    )


def _referral(raw: Mapping[str, Any], context: str | None = None) -> Response:
    body = {"@odata.context": context, **raw} if context else raw
    headers = {"ETag": raw["eTag"]} if isinstance(raw.get("eTag"), str) else {}
    return _json(body, headers=headers)


def _json_body(request: Request) -> object:
    if request.mimetype not in _JSON_TYPES:
        raise ApiError(415, "invalidRequest", "Content-Type must be application/json.")
    try:
        return json.loads(request.get_data())
    except (ValueError, UnicodeDecodeError):
        raise ApiError.invalid("the body is not valid JSON") from None
