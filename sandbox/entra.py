"""Entra ID (Azure AD) simulator: OpenID discovery, the v2.0 token and device-code endpoints.

Grants: ``client_credentials`` (Dataverse, app-only), and for Partner Center's App+User model
``urn:ietf:params:oauth:grant-type:device_code``, ``refresh_token`` and ``password`` (ROPC).
The sandbox's own user approves every device code at once (after ``device_pending_polls``
``authorization_pending`` replies, so msal's polling is exercised), so nothing waits for a human.

Clients: a client registered with ``public_client_flows=True`` (Entra's "Allow public client
flows") may use the user grants without a secret, as msal's ``PublicClientApplication`` does; if
it sends a secret, the secret must be right. ``client_credentials`` always needs the secret.

:class:`~sandbox.tokens.TokenStore` (re-exported here) issues the access tokens and is what
the other simulators call to check ``Authorization`` headers. Token lifetimes are real
seconds, not sandbox-clock time. Errors have Entra's JSON shape and status codes (400, or 401
for ``invalid_client``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from sandbox.tokens import (
    AccessGrant,
    EntraClient,
    EntraUser,
    RefreshGrant,
    TokenStore,
    b64url,
    encode_jwt,
)
from sandbox.wsgi import Environ, StartResponse

__all__ = [
    "PARTNER_CENTER_RESOURCE",
    "PARTNER_CENTER_SCOPE",
    "AccessGrant",
    "EntraClient",
    "EntraError",
    "EntraSimulator",
    "EntraUser",
    "SandboxTenant",
    "TokenStore",
]

PARTNER_CENTER_RESOURCE = "https://api.partner.microsoft.com"
PARTNER_CENTER_SCOPE = f"{PARTNER_CENTER_RESOURCE}/.default"
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
DELEGATED_PERMISSIONS = frozenset({".default", "user_impersonation"})
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_PASSWORD = "password"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
USER_GRANTS = frozenset({GRANT_PASSWORD, GRANT_REFRESH_TOKEN, GRANT_DEVICE_CODE})
DEVICE_CODE_LIFETIME_S = 900


# -- errors ----------------------------------------------------------------------------------


class EntraError(Exception):
    """An OAuth error reply: ``error`` (the OAuth code), the AADSTS number and message."""

    def __init__(self, error: str, aadsts: int, message: str, status: int = 400) -> None:
        super().__init__(f"{error}: AADSTS{aadsts}: {message}")
        self.error = error
        self.aadsts = aadsts
        self.message = message
        self.status = status

    def response(self, correlation_id: str | None) -> Response:
        now = datetime.now(UTC)
        trace_id = str(uuid.uuid4())
        correlation_id = correlation_id or str(uuid.uuid4())
        timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{self.aadsts}: {self.message} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {now.strftime('%Y-%m-%d %H:%M:%S')}Z"
        )
        body = {
            "error": self.error,
            "error_description": description,
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.aadsts}",
        }
        return _json(body, self.status)


def _json(body: object, status: int = 200) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json; charset=utf-8",
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )


# -- the simulator ---------------------------------------------------------------------------


@dataclass(slots=True)
class _DeviceCode:
    client_id: str
    scopes: tuple[str, ...]
    user: EntraUser
    expires_at: float
    pending_polls: int


@dataclass(frozen=True, slots=True)
class _Scope:
    resource: str
    scopes: tuple[str, ...]
    reserved: frozenset[str]


@dataclass(slots=True)
class EntraSimulator:
    """The WSGI app. ``resources`` are the audiences this tenant knows (Partner Center's and the
    Dataverse org's); ``user`` is the sandbox user who approves device codes."""

    tokens: TokenStore
    domain: str
    clients: Mapping[str, EntraClient]
    users: Mapping[str, EntraUser]
    resources: frozenset[str]
    device_user: EntraUser
    device_interval_s: int = 1
    device_pending_polls: int = 1
    _devices: dict[str, _DeviceCode] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tenant_id(self) -> str:
        return self.tokens.tenant_id

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except EntraError as exc:
            response = exc.response(request.headers.get("client-request-id"))
        return response(environ, start_response)

    @staticmethod
    def route_of(environ: Environ) -> str:
        """A stable route name for fault rules and the request log."""
        path: str = environ.get("PATH_INFO", "")
        for suffix, route in (
            ("/.well-known/openid-configuration", "discovery"),
            ("/oauth2/v2.0/token", "token"),
            ("/oauth2/v2.0/devicecode", "devicecode"),
        ):
            if path.endswith(suffix):
                return route
        if path.startswith("/common/userrealm/"):
            return "userrealm"
        return "other"

    # routing

    def _dispatch(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and parts[:2] == ["common", "userrealm"] and len(parts) == 3:
            return self._user_realm(parts[2])
        if request.method == "GET" and parts == ["devicelogin"]:
            return Response("The sandbox user approves every device code at once.\n")
        if len(parts) >= 2:
            tenant, rest = parts[0], parts[1:]
            if rest == ["v2.0", ".well-known", "openid-configuration"] and request.method == "GET":
                self._check_tenant(tenant)
                return self._discovery(request, tenant)
            if rest == ["oauth2", "v2.0", "token"] and request.method == "POST":
                self._check_tenant(tenant)
                return self._token(request)
            if rest == ["oauth2", "v2.0", "devicecode"] and request.method == "POST":
                self._check_tenant(tenant)
                return self._device_code(request)
        return _json({"error": "not_found", "error_description": request.path}, 404)

    def _check_tenant(self, tenant: str) -> None:
        if tenant not in {self.tenant_id, self.domain, "common", "organizations"}:
            raise EntraError(
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )

    def _discovery(self, request: Request, tenant: str) -> Response:
        base = f"https://{request.host}"
        issuer = f"{base}/{self.tenant_id}/v2.0"
        prefix = f"{base}/{tenant}/oauth2/v2.0"
        return _json(
            {
                "token_endpoint": f"{prefix}/token",
                "authorization_endpoint": f"{prefix}/authorize",
                "device_authorization_endpoint": f"{prefix}/devicecode",
                "end_session_endpoint": f"{prefix}/logout",
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "issuer": issuer,
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "response_types_supported": ["code", "id_token", "code id_token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["HS256"],
                "request_uri_parameter_supported": False,
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            }
        )

    def _user_realm(self, username: str) -> Response:
        domain = username.rpartition("@")[2].lower()
        known = domain == self.domain.lower()
        body: dict[str, object] = {
            "ver": "1.0",
            "account_type": "Managed" if known else "Unknown",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        }
        if known:
            body |= {"domain_name": self.domain, "federation_brand_name": "Referral Sync sandbox"}
        return _json(body)

    # device code

    def _device_code(self, request: Request) -> Response:
        form = request.form
        client = self._client(form.get("client_id"))
        scope = self._parse_scope(form.get("scope"), client, GRANT_DEVICE_CODE)
        device_code = "DAQABAAEAAA" + secrets.token_urlsafe(48)
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        with self._lock:
            self._devices[device_code] = _DeviceCode(
                client_id=client.client_id,
                scopes=(*scope.scopes, *sorted(scope.reserved)),
                user=self.device_user,
                expires_at=time.time() + DEVICE_CODE_LIFETIME_S,
                pending_polls=self.device_pending_polls,
            )
        uri = f"https://{request.host}/devicelogin"
        return _json(
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": uri,
                "expires_in": DEVICE_CODE_LIFETIME_S,
                "interval": self.device_interval_s,
                "message": f"To sign in, use a web browser to open the page {uri} and enter the "
                f"code {user_code} to authenticate. (The sandbox user approves it at once.)",
            }
        )

    # token endpoint

    def _token(self, request: Request) -> Response:
        form = request.form
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _missing("grant_type")
        if grant_type not in {GRANT_CLIENT_CREDENTIALS, *USER_GRANTS}:
            raise EntraError(
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        client = self._client(form.get("client_id"))
        self._authenticate(client, grant_type, form.get("client_secret"), form)
        if grant_type == GRANT_DEVICE_CODE:
            # The scope was fixed when the device code was issued; msal does not repeat it.
            device = self._redeem_device_code(client, form)
            scope = self._parse_scope(" ".join(device.scopes), client, grant_type)
            return self._user_tokens(request, client, device.user, scope)
        scope = self._parse_scope(form.get("scope"), client, grant_type)
        if grant_type == GRANT_CLIENT_CREDENTIALS:
            token, expires_in = self.tokens.issue_access_token(
                client_id=client.client_id, audience=scope.resource, scopes=scope.scopes, user=None
            )
            return _json(
                {
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                    "ext_expires_in": expires_in,
                    "access_token": token,
                }
            )
        user = self._user_for(grant_type, client, form)
        return self._user_tokens(request, client, user, scope)

    def _client(self, client_id: str | None) -> EntraClient:
        if not client_id:
            raise _missing("client_id")
        client = self.clients.get(client_id)
        if client is None:
            raise EntraError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.domain}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant.",
            )
        return client

    @staticmethod
    def _authenticate(
        client: EntraClient, grant_type: str, secret: str | None, form: Mapping[str, str]
    ) -> None:
        if "client_assertion" in form:
            raise EntraError(
                "invalid_client",
                700027,
                "Client assertion failed: the sandbox accepts client secrets only.",
                status=401,
            )
        if secret is not None:
            if client.client_secret is None or not hmac.compare_digest(
                secret.encode(), client.client_secret.encode()
            ):
                raise EntraError(
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request "
                    f"is the client secret value, not the client secret ID, for a secret added "
                    f"to app '{client.client_id}'.",
                    status=401,
                )
            return
        if grant_type in USER_GRANTS and client.public_client_flows:
            return
        raise EntraError(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
            status=401,
        )

    def _parse_scope(self, raw: str | None, client: EntraClient, grant_type: str) -> _Scope:
        if not raw or not raw.strip():
            raise _missing("scope")
        requested = raw.split()
        reserved = frozenset(s for s in requested if s in RESERVED_SCOPES)
        wanted = [s for s in requested if s not in RESERVED_SCOPES]
        if not wanted:
            if grant_type == GRANT_CLIENT_CREDENTIALS:
                raise _bad_scope(
                    raw,
                    "Client credential flows must have a scope value with "
                    "/.default suffixed to the resource identifier.",
                    1002012,
                )
            wanted = [f"{PARTNER_CENTER_RESOURCE}/user_impersonation"]
        resources = set()
        for scope in wanted:
            resource, sep, permission = scope.rpartition("/")
            if not sep or not resource.startswith("https://") or not permission:
                raise _bad_scope(
                    raw, "The provided value for the input parameter 'scope' is not valid.", 70011
                )
            if grant_type == GRANT_CLIENT_CREDENTIALS and permission != ".default":
                raise _bad_scope(
                    raw,
                    "Client credential flows must have a scope value with "
                    "/.default suffixed to the resource identifier.",
                    1002012,
                )
            if permission not in DELEGATED_PERMISSIONS:
                raise _bad_scope(raw, f"The scope '{scope}' does not exist on the resource.", 70011)
            resources.add(resource.rstrip("/"))
        if len(resources) > 1:
            raise _bad_scope(
                raw,
                "Tokens issued for a single resource only: the scope names several resources.",
                28000,
            )
        (resource,) = resources
        if resource not in self.resources:
            raise EntraError(
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.domain}. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant.",
            )
        if resource not in client.resources:
            raise EntraError(
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{client.client_id}' named '{client.name}' for resource '{resource}'.",
            )
        return _Scope(resource, tuple(wanted), reserved)

    def _user_for(self, grant_type: str, client: EntraClient, form: Mapping[str, str]) -> EntraUser:
        if grant_type == GRANT_PASSWORD:
            username, password = form.get("username"), form.get("password")
            if not username:
                raise _missing("username")
            if password is None:
                raise _missing("password")
            user = self.users.get(username.lower())
            if user is None:
                raise EntraError(
                    "invalid_grant",
                    50034,
                    f"The user account {username} does not exist in the {self.domain} directory. "
                    "To sign into this application, the account must be added to the directory.",
                )
            if not hmac.compare_digest(password.encode(), user.password.encode()):
                raise EntraError(
                    "invalid_grant",
                    50126,
                    "Error validating credentials due to invalid username or password.",
                )
            return user
        if grant_type == GRANT_REFRESH_TOKEN:
            token = form.get("refresh_token")
            if not token:
                raise _missing("refresh_token")
            result = self.tokens.redeem_refresh_token(token, client.client_id)
            if isinstance(result, RefreshGrant):
                return result.user
            messages = {
                "invalid": (9002313, "Invalid request. Request is malformed or invalid."),
                "expired": (700082, "The refresh token has expired due to inactivity."),
                "client": (
                    70000,
                    "Provided grant is invalid or malformed: the token was issued to another app.",
                ),
            }
            code, message = messages[result]
            raise EntraError("invalid_grant", code, message)
        raise AssertionError(f"not a user grant: {grant_type}")

    def _redeem_device_code(self, client: EntraClient, form: Mapping[str, str]) -> _DeviceCode:
        code = form.get("device_code")
        if not code:
            raise _missing("device_code")
        with self._lock:
            device = self._devices.get(code)
            if device is None or device.client_id != client.client_id:
                raise EntraError(
                    "invalid_grant",
                    70000,
                    "The provided value for the input parameter 'device_code' is not valid.",
                )
            if device.expires_at <= time.time():
                del self._devices[code]
                raise EntraError(
                    "expired_token",
                    70020,
                    "The provided value for the input parameter 'device_code' is expired.",
                )
            if device.pending_polls > 0:
                device.pending_polls -= 1
                raise EntraError(
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            del self._devices[code]
            return device

    def _user_tokens(
        self, request: Request, client: EntraClient, user: EntraUser, scope: _Scope
    ) -> Response:
        access, expires_in = self.tokens.issue_access_token(
            client_id=client.client_id, audience=scope.resource, scopes=scope.scopes, user=user
        )
        body: dict[str, object] = {
            "token_type": "Bearer",
            "scope": " ".join(scope.scopes),
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access,
        }
        if (
            "offline_access" in scope.reserved
            or request.form.get("grant_type") == GRANT_REFRESH_TOKEN
        ):
            body["refresh_token"] = self.tokens.issue_refresh_token(
                client_id=client.client_id, user=user
            )
        if "openid" in scope.reserved:
            body["id_token"] = self._id_token(request, client, user)
        if request.form.get("client_info") == "1":
            info = {"uid": user.object_id, "utid": self.tenant_id}
            body["client_info"] = b64url(json.dumps(info).encode())
        return _json(body)

    def _id_token(self, request: Request, client: EntraClient, user: EntraUser) -> str:
        now = int(time.time())
        claims = {
            "aud": client.client_id,
            "iss": f"https://{request.host}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": user.display_name,
            "oid": user.object_id,
            "preferred_username": user.username,
            "sub": hashlib.sha256(f"{user.object_id}:{client.client_id}".encode()).hexdigest(),
            "tid": self.tenant_id,
            "ver": "2.0",
        }
        return encode_jwt(claims, b"sandbox-id-token")


def _missing(parameter: str) -> EntraError:
    return EntraError(
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{parameter}'.",
    )


def _bad_scope(raw: str, message: str, code: int) -> EntraError:
    return EntraError("invalid_scope", code, f"{message} Scope: {quote(raw, safe=' /:.')}")


# -- the sandbox tenant ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SandboxTenant:
    """The directory a sandbox run invents: one tenant, one user, two app registrations.

    The Partner Center app is confidential (it has a secret, written to ``sandbox.json``) *and*
    allows public client flows, so the daemon may use ``ConfidentialClientApplication`` with the
    secret or ``PublicClientApplication`` without it. The Dataverse app is confidential only.
    """

    tenant_id: str
    domain: str
    user: EntraUser
    partner_center_app: EntraClient
    dataverse_app: EntraClient
    dataverse_org: str

    @classmethod
    def generate(cls) -> SandboxTenant:
        domain = "referralsync-sandbox.onmicrosoft.com"
        org = "org" + secrets.token_hex(4)
        user = EntraUser(
            username=f"partner.admin@{domain}",
            password="Sbx-" + secrets.token_urlsafe(12),
            object_id=str(uuid.uuid4()),
            display_name="Sandbox Partner Admin",
        )
        return cls(
            tenant_id=str(uuid.uuid4()),
            domain=domain,
            user=user,
            partner_center_app=EntraClient(
                client_id=str(uuid.uuid4()),
                name="Referral Sync (Partner Center)",
                client_secret="pc~" + secrets.token_urlsafe(30),
                resources=frozenset({PARTNER_CENTER_RESOURCE}),
                public_client_flows=True,
            ),
            dataverse_app=EntraClient(
                client_id=str(uuid.uuid4()),
                name="Referral Sync (Dataverse)",
                client_secret="dv~" + secrets.token_urlsafe(30),
                resources=frozenset({f"https://{org}.crm.dynamics.com"}),
            ),
            dataverse_org=org,
        )

    @property
    def dataverse_resource(self) -> str:
        return f"https://{self.dataverse_org}.crm.dynamics.com"

    def simulator(self, tokens: TokenStore, *, device_pending_polls: int = 1) -> EntraSimulator:
        apps = (self.partner_center_app, self.dataverse_app)
        return EntraSimulator(
            tokens=tokens,
            domain=self.domain,
            clients={app.client_id: app for app in apps},
            users={self.user.username.lower(): self.user},
            resources=frozenset({PARTNER_CENTER_RESOURCE, self.dataverse_resource}),
            device_user=self.user,
            device_pending_polls=device_pending_polls,
        )

    def info(self, authority: str, *, user_realm_discovery: bool) -> dict[str, object]:
        """The ``entra`` section of ``sandbox.json``."""
        pc, dv = self.partner_center_app, self.dataverse_app
        return {
            "authority": authority,
            "tenant_id": self.tenant_id,
            "domain": self.domain,
            "user_realm_discovery": user_realm_discovery,
            "partner_center": {
                "client_id": pc.client_id,
                "client_secret": pc.client_secret,
                "username": self.user.username,
                "password": self.user.password,
                "scope": PARTNER_CENTER_SCOPE,
            },
            "dataverse": {
                "client_id": dv.client_id,
                "client_secret": dv.client_secret,
                "scope": f"{self.dataverse_resource}/.default",
                "resource": self.dataverse_resource,
            },
        }
