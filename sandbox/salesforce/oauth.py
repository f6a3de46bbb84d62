"""Salesforce's OAuth 2.0 token endpoint for a daemon, and the sessions it hands out.

``POST /services/oauth2/token`` (form-encoded) with

* ``grant_type=client_credentials``: the connected app's consumer key and secret, in HTTP
  Basic (as simple-salesforce sends them) or as ``client_id``/``client_secret`` form fields;
* ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``: RS256, signed
  with the key whose certificate is configured on the connected app; ``iss`` = consumer key,
  ``sub`` = the sandbox user's username, ``aud`` = ``https://login.salesforce.com``,
  ``https://test.salesforce.com`` or the simulator's own URL (a My Domain login, as Salesforce
  accepts the My Domain URL as audience), ``exp`` in the future (a string of digits is
  accepted, as simple-salesforce sends it).

Success (A8)::

    {"access_token": "00D…!AQ…", "instance_url": "https://HOST:PORT",
     "id": "https://login.salesforce.com/id/00D…/005…", "token_type": "Bearer",
     "issued_at": "<epoch ms>", "signature": "<base64 HMAC-SHA256(id + issued_at, secret)>",
     "scope": "api"}

Failures answer 400 ``{"error": …, "error_description": …}`` (``invalid_client_id``,
``invalid_client``, ``invalid_grant``, ``unsupported_grant_type``). Sessions live
``lifetime_s`` real seconds; a missing, unknown or expired one is ``INVALID_SESSION_ID``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox.salesforce.errors import OAuthError

__all__ = [
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_JWT_BEARER",
    "JWT_AUDIENCES",
    "ConnectedApp",
    "SessionStore",
    "generate_key_and_certificate",
]

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
DEFAULT_LIFETIME_S = 7200


def generate_key_and_certificate(common_name: str = "referral-sync") -> tuple[bytes, bytes]:
    """A fresh RSA-2048 private key (PKCS#8 PEM) and its self-signed certificate (PEM), as a
    partner makes them for a connected app's "Use digital signatures"."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class ConnectedApp:
    """The org's connected app and its pre-authorized run-as user."""

    client_id: str
    client_secret: str
    certificate_pem: bytes
    username: str
    user_id: str
    org_id: str

    @classmethod
    def generate(cls, *, org_id: str, user_id: str, certificate_pem: bytes) -> ConnectedApp:
        return cls(
            client_id="3MVG9" + secrets.token_urlsafe(60).replace("-", "A").replace("_", "B"),
            client_secret=secrets.token_hex(32).upper(),
            certificate_pem=certificate_pem,
            username="integration@referral-sync.sandbox",
            user_id=user_id,
            org_id=org_id,
        )


@dataclass(frozen=True, slots=True)
class Session:
    client_id: str
    grant: str
    expires_at: float


class SessionStore:
    """Issues and checks access tokens (``00D…!…``); lifetimes are real seconds."""

    def __init__(
        self,
        app: ConnectedApp,
        *,
        lifetime_s: float = DEFAULT_LIFETIME_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.lifetime_s = lifetime_s
        self.default_lifetime_s = lifetime_s
        self._now = now
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    # -- the token endpoint ---------------------------------------------------------------

    def token(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, instance_url: str
    ) -> dict[str, Any]:
        """The token reply for a token request, or :class:`OAuthError`."""
        grant = form.get("grant_type", "")
        if grant == GRANT_CLIENT_CREDENTIALS:
            client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
            self._check_client(client_id, secret)
        elif grant == GRANT_JWT_BEARER:
            self._check_assertion(form.get("assertion", ""), instance_url)
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        return self.issue(instance_url, grant)

    def issue(self, instance_url: str, grant: str = GRANT_CLIENT_CREDENTIALS) -> dict[str, Any]:
        """A new session for the connected app, as the token endpoint would answer it."""
        now = self._now()
        token = f"{self.app.org_id[:15]}!AQ" + secrets.token_urlsafe(72)
        with self._lock:
            self._sessions[token] = Session(self.app.client_id, grant, now + self.lifetime_s)
        identity = f"https://login.salesforce.com/id/{self.app.org_id}/{self.app.user_id}"
        issued_at = str(int(now * 1000))
        digest = hmac.new(
            self.app.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        return {
            "access_token": token,
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(digest).decode(),
            "scope": "api",
        }

    def _check_client(self, client_id: str, secret: str) -> None:
        if not hmac.compare_digest(client_id, self.app.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(secret, self.app.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _check_assertion(self, assertion: str, instance_url: str) -> None:
        if not assertion:
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            claims = jwt.decode(
                assertion,
                self._public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_grant", "expired authorization code") from None
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims["iss"] != self.app.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        allowed = {*JWT_AUDIENCES, instance_url.rstrip("/")}
        if not any(str(a).rstrip("/") in allowed for a in audiences):
            raise OAuthError("invalid_grant", "audience is invalid")
        if claims["sub"] != self.app.username:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")

    def _public_key(self) -> rsa.RSAPublicKey:
        key = x509.load_pem_x509_certificate(self.app.certificate_pem).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise OAuthError("invalid_grant", "the connected app's certificate is not RSA")
        return key

    # -- checking sessions ----------------------------------------------------------------

    def check(self, authorization_header: str | None) -> bool:
        """Whether the header carries a live session (``Bearer`` or ``OAuth`` scheme)."""
        if not authorization_header:
            return False
        scheme, _, token = authorization_header.strip().partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return False
        with self._lock:
            session = self._sessions.get(token.strip())
        return session is not None and session.expires_at > self._now()

    def expire_all(self) -> None:
        """Every session issued so far expires now."""
        now = self._now()
        with self._lock:
            for token, session in self._sessions.items():
                if session.expires_at > now:
                    self._sessions[token] = Session(session.client_id, session.grant, now)

    def expire_token(self, authorization_header: str | None) -> bool:
        """The session of a ``Bearer``/``OAuth`` header expires now; whether it was live."""
        if not self.check(authorization_header):
            return False
        token = (authorization_header or "").strip().partition(" ")[2].strip()
        now = self._now()
        with self._lock:
            session = self._sessions[token]
            self._sessions[token] = Session(session.client_id, session.grant, now)
        return True

    def reset(self) -> None:
        self.lifetime_s = self.default_lifetime_s

    def active_count(self) -> int:
        now = self._now()
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.expires_at > now)
