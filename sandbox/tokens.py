"""The sandbox's tokens: issued by the Entra simulator, checked by every resource simulator.

Access tokens are HS256 JWTs with Entra v1 claims (``aud``, ``tid``, ``oid``, ``scp``...), and
are also remembered here so that :meth:`TokenStore.check` can tell an expired or revoked token
from a forged one. Lifetimes are real seconds (``time.time``), not sandbox-clock time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

DEFAULT_TOKEN_LIFETIME_S = 3600
DEFAULT_REFRESH_LIFETIME_S = 90 * 24 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_jwt(claims: Mapping[str, object], key: bytes) -> str:
    """A compact HS256 JWT (structurally real; only the sandbox knows the key)."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = b64url(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


@dataclass(frozen=True, slots=True)
class EntraUser:
    username: str
    password: str
    object_id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class EntraClient:
    """An app registration. ``client_secret=None`` makes a purely public client."""

    client_id: str
    name: str
    client_secret: str | None
    resources: frozenset[str]
    public_client_flows: bool = False


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """What an access token stands for. ``user`` is ``None`` for an app-only token."""

    client_id: str
    audience: str
    scopes: tuple[str, ...]
    user: EntraUser | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    client_id: str
    user: EntraUser
    expires_at: float


class TokenStore:
    """Issues and checks the sandbox's tokens; shared by Entra and every resource simulator."""

    def __init__(
        self,
        *,
        tenant_id: str,
        lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
        refresh_lifetime_s: int = DEFAULT_REFRESH_LIFETIME_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = tenant_id
        self.default_lifetime_s = lifetime_s
        self.lifetime_s = lifetime_s
        self.refresh_lifetime_s = refresh_lifetime_s
        self._now = now
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._access: dict[str, AccessGrant] = {}
        self._refresh: dict[str, RefreshGrant] = {}

    # issuing

    def issue_access_token(
        self, *, client_id: str, audience: str, scopes: Iterable[str], user: EntraUser | None
    ) -> tuple[str, int]:
        """A new access token and its ``expires_in`` seconds."""
        now = self._now()
        lifetime = self.lifetime_s
        scopes = tuple(scopes)
        claims: dict[str, object] = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime),
            "appid": client_id,
            "tid": self.tenant_id,
            "ver": "1.0",
            "uti": secrets.token_urlsafe(16),
        }
        if user is None:
            claims |= {"oid": client_id, "sub": client_id, "idtyp": "app"}
        else:
            perms = sorted({s.rsplit("/", 1)[-1] for s in scopes} - {".default"})
            claims |= {
                "oid": user.object_id,
                "sub": user.object_id,
                "upn": user.username,
                "name": user.display_name,
                "scp": " ".join(perms or ["user_impersonation"]),
            }
        token = encode_jwt(claims, self._key)
        grant = AccessGrant(client_id, audience.rstrip("/"), scopes, user, now + lifetime)
        with self._lock:
            self._access[token] = grant
        return token, lifetime

    def issue_refresh_token(self, *, client_id: str, user: EntraUser) -> str:
        token = "0.sbx." + secrets.token_urlsafe(48)
        grant = RefreshGrant(client_id, user, self._now() + self.refresh_lifetime_s)
        with self._lock:
            self._refresh[token] = grant
        return token

    def redeem_refresh_token(self, token: str, client_id: str) -> RefreshGrant | str:
        """The grant behind ``token``, or a reason: ``"invalid"``, ``"expired"``, ``"client"``.

        Entra issues a new refresh token on every redemption (rotation) but, like Entra, leaves
        the old one valid until it expires or is revoked.
        """
        with self._lock:
            grant = self._refresh.get(token)
        if grant is None:
            return "invalid"
        if grant.expires_at <= self._now():
            return "expired"
        if grant.client_id != client_id:
            return "client"
        return grant

    # checking (used by the resource simulators)

    def lookup(self, authorization_header: str | None) -> AccessGrant | None:
        """The grant behind a ``Bearer`` header (expired or not), or ``None``."""
        if not authorization_header:
            return None
        scheme, _, token = authorization_header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with self._lock:
            return self._access.get(token.strip())

    def check(self, authorization_header: str | None, audience: str) -> str | None:
        """``None`` if the header carries a live token for ``audience``; else the reason:
        ``"missing"``, ``"invalid"``, ``"expired"`` or ``"wrong_audience"``."""
        if not authorization_header or not authorization_header.strip():
            return "missing"
        grant = self.lookup(authorization_header)
        if grant is None:
            return "invalid"
        if grant.expires_at <= self._now():
            return "expired"
        if grant.audience != audience.rstrip("/"):
            return "wrong_audience"
        return None

    # test controls

    def expire_all(self) -> None:
        """Every access token issued so far expires now (refresh tokens stay valid)."""
        now = self._now()
        with self._lock:
            for token, grant in self._access.items():
                self._access[token] = replace(grant, expires_at=min(grant.expires_at, now))

    def expire_token(self, authorization_header: str | None) -> bool:
        """The access token of a ``Bearer`` header expires now (before its ``exp``); whether
        it was live."""
        grant = self.lookup(authorization_header)
        now = self._now()
        if grant is None or grant.expires_at <= now:
            return False
        token = (authorization_header or "").strip().partition(" ")[2].strip()
        with self._lock:
            self._access[token] = replace(grant, expires_at=now)
        return True

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token issued so far stops working (as after a password reset)."""
        with self._lock:
            self._refresh.clear()

    def reset(self) -> None:
        """Back to the configured lifetime; tokens already issued are kept."""
        self.lifetime_s = self.default_lifetime_s
        with self._lock:
            now = self._now()
            self._access = {t: g for t, g in self._access.items() if g.expires_at > now - 3600}

    def active_count(self) -> int:
        now = self._now()
        with self._lock:
            return sum(1 for g in self._access.values() if g.expires_at > now)
