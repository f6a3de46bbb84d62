"""Salesforce access tokens, obtained by us, not by simple-salesforce.

Two grants, both for a daemon with no user present:

- ``client_credentials``: ``grant_type=client_credentials`` with the connected app's consumer
  key and secret in HTTP Basic, exactly as simple-salesforce sends it; the token acts as the
  app's configured run-as user.
- ``jwt``: the JWT bearer grant. The assertion is signed RS256 with the private key whose
  certificate is on the connected app: ``iss`` = consumer key, ``sub`` = username, ``aud`` =
  the login URL (the origin of ``token_url``: ``https://login.salesforce.com`` in production,
  ``https://test.salesforce.com`` for sandboxes, or the My Domain), ``exp`` = now + 3 minutes.

Why not simple-salesforce's own login (``Salesforce(consumer_key=…, domain=…)``)?

1. It builds the token URL as ``https://{domain}.salesforce.com/services/oauth2/token``: the host
   is hard-coded, so a configured ``token_url`` (a sandbox, a proxy, the local simulator) cannot
   be reached without rewriting URLs inside the transport.
2. It keeps the token for itself, so a token cannot be fetched through our https-only session
   with our retry and error classification, nor be logged about without leaking it.
3. Its re-login on 401 re-posts the grant up to three times inside the library (a second retry
   layer) and does not exist at all in ``session_id`` mode.

So this module fetches the token with our session, and the client builds
``Salesforce(session_id=token, instance_url=…, version=…, session=our_session)`` ("direct"
mode: no login, no re-login). On ``401 INVALID_SESSION_ID`` the client calls :meth:`refresh`
once, rebuilds that object and repeats the request once; a second 401 is an ``AuthError``.
Salesforce tokens carry no lifetime in the response, so a token is kept until it is refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import jwt
import requests
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from structlog.typing import FilteringBoundLogger

from connector.crm.salesforce.wire import TokenResponse
from connector.errors import (
    AuthError,
    ConfigError,
    ConfigProblem,
    RateLimited,
    TransientError,
)
from connector.http.retry import parse_retry_after
from connector.http.session import DEFAULT_TIMEOUT, is_certificate_failure

AuthMode = Literal["client_credentials", "jwt"]
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_S = 180
_SOURCE = "salesforce.auth"
_MODES: tuple[str, ...] = ("client_credentials", "jwt")


class SalesforceAuth:
    """Access tokens for one Salesforce org; satisfies the client's ``TokenSource``."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        session: requests.Session,
        mode: AuthMode = "client_credentials",
        client_secret: str | None = None,
        username: str | None = None,
        private_key_pem: bytes | None = None,
        private_key_file: Path | None = None,
        audience: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        wall_clock: Callable[[], float] = time.time,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        problems: list[ConfigProblem] = []
        parts = urlsplit(token_url)
        if parts.scheme != "https" or not parts.netloc:
            problems.append(ConfigProblem(_SOURCE, "token_url", "must be an https:// URL"))
        key: RSAPrivateKey | None = None
        if mode not in _MODES:
            problems.append(
                ConfigProblem(_SOURCE, "auth_mode", f"unknown {mode!r}: client_credentials|jwt")
            )
        elif mode == "client_credentials":
            if not client_secret:
                problems.append(
                    ConfigProblem(_SOURCE, "client_secret", "required for client_credentials")
                )
        elif mode == "jwt":
            if not username:
                problems.append(ConfigProblem(_SOURCE, "username", "required for jwt"))
            key = _load_key(private_key_pem, private_key_file, problems)
        if problems:
            raise ConfigError(problems)
        self._token_url = token_url
        self._audience = audience or f"{parts.scheme}://{parts.netloc}"
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._key = key
        self._mode: AuthMode = mode
        self._session = session
        self._timeout = timeout
        self._wall_clock = wall_clock
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)
        self._lock = threading.Lock()
        self._token: str | None = None
        self.instance_url: str | None = None
        """The ``instance_url`` of the last token response (for a check, never trusted)."""
        self.grants = 0
        """How many tokens were fetched (for metrics and tests)."""

    @property
    def mode(self) -> AuthMode:
        return self._mode

    def token(self) -> str:
        """The current access token, fetching one if there is none yet."""
        with self._lock:
            if self._token is None:
                self._token = self._fetch()
            return self._token

    def refresh(self) -> str:
        """A new access token (after a 401): the old one is forgotten first."""
        with self._lock:
            self._token = None
            self._token = self._fetch()
            return self._token

    # -- the grant ----------------------------------------------------------------------------

    def assertion(self) -> str:
        """The signed JWT bearer assertion (jwt mode only); public for tests."""
        if self._key is None or self._username is None:
            raise AuthError("a JWT assertion needs auth_mode = 'jwt'")
        now = int(self._wall_clock())
        claims = {
            "iss": self._client_id,
            "sub": self._username,
            "aud": self._audience,
            "exp": now + JWT_LIFETIME_S,
        }
        return jwt.encode(claims, self._key, algorithm="RS256")

    def _fetch(self) -> str:
        auth: tuple[str, str] | None = None
        if self._mode == "jwt":
            data = {"grant_type": JWT_GRANT, "assertion": self.assertion()}
        else:
            data = {"grant_type": "client_credentials"}
            auth = (self._client_id, self._client_secret or "")  # requests sends HTTP Basic
        try:
            response = self._session.post(
                self._token_url,
                data=data,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            if not is_certificate_failure(exc):  # a connection cut during TLS: transient
                raise TransientError(
                    f"Salesforce token endpoint unreachable: {type(exc).__name__}"
                ) from exc
            raise AuthError(
                f"TLS failure talking to the Salesforce token endpoint: {type(exc).__name__}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise TransientError(
                f"Salesforce token endpoint unreachable: {type(exc).__name__}"
            ) from exc
        body = _json_object(response)
        status = response.status_code
        if status == 200 and isinstance(body.get("access_token"), str) and body["access_token"]:
            token = cast(TokenResponse, body)
            self.instance_url = token.get("instance_url")
            self.grants += 1
            self._log.info("salesforce_token_issued", mode=self._mode, grants=self.grants)
            return token["access_token"]
        reason = _describe(body, response)
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"), server_date=response.headers.get("Date")
        )
        if status == 429:
            raise RateLimited(f"Salesforce token endpoint: {reason}", retry_after=retry_after)
        if status >= 500:  # a 503's Retry-After holds the client's gate like any other
            raise TransientError(
                f"Salesforce token endpoint answered {status}: {reason}", retry_after=retry_after
            )
        raise AuthError(f"Salesforce refused the {self._mode} grant ({status}): {reason}")


def _load_key(
    pem: bytes | None, path: Path | None, problems: list[ConfigProblem]
) -> RSAPrivateKey | None:
    if pem is None:
        if path is None:
            problems.append(ConfigProblem(_SOURCE, "private_key_file", "required for jwt"))
            return None
        try:
            pem = path.read_bytes()
        except OSError as exc:
            problems.append(
                ConfigProblem(_SOURCE, "private_key_file", f"cannot read {path}: {exc.strerror}")
            )
            return None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        problems.append(
            ConfigProblem(_SOURCE, "private_key_file", f"not an unencrypted PEM private key: {exc}")
        )
        return None
    if not isinstance(key, RSAPrivateKey):
        problems.append(ConfigProblem(_SOURCE, "private_key_file", "must be an RSA key (RS256)"))
        return None
    return key


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(body: dict[str, Any], response: requests.Response) -> str:
    """``error: error_description`` from the token endpoint; never the token or the request."""
    error = body.get("error")
    description = body.get("error_description")
    if isinstance(error, str) and error:
        return f"{error}: {description}" if isinstance(description, str) and description else error
    return response.reason or "(no error body)"
