"""App-only Entra tokens for Dataverse: msal's client-credentials grant over our session.

The scope comes from config (``https://<org>.crm.dynamics.com/.default``), never from the Web
API's URL: the two differ behind a proxy and in the sandbox. msal keeps the token in its
in-memory cache and reuses it until five minutes before it expires; :meth:`DynamicsAuth.refresh`
(after a 401) forgets it first, since msal refuses ``force_refresh`` for this grant.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
import structlog
from structlog.typing import FilteringBoundLogger

from connector.errors import AuthError, ConfigError, ConfigProblem
from connector.http.entra import EntraHttp, NoThrottleReplay, entra_errors

_SOURCE = "dynamics.auth"


class DynamicsAuth:
    """Access tokens for one Dataverse environment; satisfies the client's ``TokenSource``."""

    def __init__(
        self,
        *,
        authority: str,
        client_id: str,
        client_secret: str,
        scope: str,
        session: requests.Session,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        problems = []
        parts = urlsplit(authority)
        if parts.scheme != "https" or not parts.netloc or not parts.path.strip("/"):
            problems.append(ConfigProblem(_SOURCE, "authority", "must be https://HOST/<tenant>"))
        if not scope.endswith("/.default"):
            problems.append(
                ConfigProblem(_SOURCE, "scope", "must be https://<org>.crm.dynamics.com/.default")
            )
        if not client_secret:
            problems.append(ConfigProblem(_SOURCE, "client_secret", "is required"))
        if problems:
            raise ConfigError(problems)
        self._authority = authority.rstrip("/")
        self._client_id = client_id
        self._secret = client_secret
        self._scopes = [scope]
        self._session = session
        self._entra = EntraHttp(session, self._authority)
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)
        self._lock = threading.Lock()
        self._app: Any = None  # built on first use: msal does tenant discovery (I/O) when built
        self.grants = 0
        """How many tokens came from Entra, not from msal's cache (for metrics and tests)."""

    def token(self) -> str:
        """A valid access token, from msal's cache or a new grant."""
        with self._lock:
            return self._acquire()

    def refresh(self) -> str:
        """A brand-new access token (after a 401): the cached one is dropped first."""
        with self._lock:
            app = self._application()
            with self._entra_errors():
                app.remove_tokens_for_client()
            return self._acquire()

    def _acquire(self) -> str:
        app = self._application()
        result = self._entra.call(lambda: app.acquire_token_for_client(scopes=self._scopes))
        if "access_token" not in result:
            raise AuthError(f"Entra refused the Dataverse client-credentials grant: {_why(result)}")
        if result.get("token_source") != "cache":
            self.grants += 1
            self._log.info("dynamics_token_issued", grants=self.grants)
        return str(result["access_token"])

    def _application(self) -> Any:  # noqa: ANN401 - msal is untyped
        if self._app is not None:
            return self._app
        host = (urlsplit(self._authority).hostname or "").lower()
        try:
            with self._entra_errors():
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._secret,
                    authority=self._authority,
                    http_client=self._entra,
                    http_cache=NoThrottleReplay(),
                    # Instance discovery asks login.microsoftonline.com to vouch for the
                    # authority; ours comes from config, and the sandbox's host is not Microsoft's.
                    instance_discovery=None
                    if host in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS
                    else False,
                )
        except ValueError as exc:  # tenant discovery refused: wrong authority or tenant
            raise AuthError(f"Entra authority {self._authority} unusable: {exc}") from exc
        return self._app

    def _entra_errors(self) -> contextlib.AbstractContextManager[None]:
        return entra_errors(self._authority)


def _why(result: object) -> str:
    """Entra's error code and first line of description; never tokens."""
    if not isinstance(result, dict):
        return "no answer"
    error = result.get("error") or "unknown_error"
    description = str(result.get("error_description") or "").strip()
    first = description.splitlines()[0] if description else ""
    return f"{error}: {first}" if first else str(error)
