"""Entra tokens for Partner Center (App+User) through msal, with a persistent token cache.

Modes (the Referrals API accepts delegated, user tokens only):

- ``device_code``: ``login()`` runs msal's device-code flow once (``referral-sync login
  partner-center``); the daemon then lives on the cached refresh token. Device code is a
  public-client flow (msal offers it on ``PublicClientApplication`` only), so no client secret.
- ``password``: ROPC with ``username``/``password``, as Partner Center's own docs show; with a
  client secret as a confidential client, else as a public client.
- ``refresh_token``: a refresh token read from a secret file (the Secure Application Model),
  redeemed once; msal keeps the rotated one in the cache afterwards.

``token()`` never prompts: cached access token, else a silent refresh, else the configured
non-interactive grant; in ``device_code`` mode with nothing usable cached it raises
:class:`AuthError` telling the operator to log in. The cache is msal's
``SerializableTokenCache``, written atomically to an owner-only (0600) file after every change.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msal
import requests
import structlog
from structlog.typing import FilteringBoundLogger

from connector.errors import AuthError, ConfigError, ConfigProblem
from connector.http.entra import EntraHttp, NoThrottleReplay, entra_errors

AuthMode = Literal["device_code", "password", "refresh_token"]

DEFAULT_SCOPES: tuple[str, ...] = ("https://api.partner.microsoft.com/.default",)
LOGIN_HINT = "run `referral-sync login partner-center`"
_SOURCE = "partner_center.auth"


def _print_to_stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class PartnerCenterAuth:
    """Access tokens for the Partner Center API; satisfies the client's ``TokenSource``."""

    def __init__(
        self,
        *,
        authority: str,
        client_id: str,
        token_cache_path: Path,
        session: requests.Session,
        mode: AuthMode = "device_code",
        client_secret: str | None = None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        username: str | None = None,
        password: str | None = None,
        refresh_token_file: Path | None = None,
        prompt: Callable[[str], None] = _print_to_stderr,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        problems = _check_settings(
            authority=authority,
            mode=mode,
            client_secret=client_secret,
            username=username,
            password=password,
            refresh_token_file=refresh_token_file,
            scopes=scopes,
        )
        if problems:
            raise ConfigError(problems)
        self._authority = authority.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._scopes = list(scopes)
        self._mode: AuthMode = mode
        self._username = username
        self._password = password
        self._refresh_token_file = refresh_token_file
        self._session = session
        self._entra = EntraHttp(session, self._authority)
        self._prompt = prompt
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)
        self._cache_path = token_cache_path
        self._cache = msal.SerializableTokenCache()
        self._lock = threading.RLock()
        self._app: Any = None  # built on first use: msal does tenant discovery (I/O) when built
        self._load_cache()

    # -- public API ---------------------------------------------------------------------------

    def login(self) -> str:
        """Sign in once (device code: shows msal's message through ``prompt``); returns the user.

        In the non-interactive modes this just runs the configured grant, which checks it works.
        """
        with self._lock:
            app = self._application()
            if self._mode == "device_code":
                flow = self._call(lambda: app.initiate_device_flow(scopes=self._scopes))
                if "user_code" not in flow:
                    raise AuthError(f"device-code sign-in could not start: {_describe(flow)}")
                self._prompt(str(flow.get("message", "")))
                result = self._call(lambda: app.acquire_token_by_device_flow(flow))
            else:
                result = self._grant(app)
            self._access_token(result, "sign-in")
            claims = result.get("id_token_claims") or {}
            user = str(claims.get("preferred_username") or self._username or "")
            self._log.info("partner_center_signed_in", mode=self._mode, user=user)
            return user

    def token(self) -> str:
        """A valid access token, from the cache or silently refreshed; never interactive."""
        return self._acquire(force_refresh=False)

    def refresh(self) -> str:
        """A brand-new access token (after a 401), bypassing the cached access token."""
        return self._acquire(force_refresh=True)

    # -- acquisition --------------------------------------------------------------------------

    def _acquire(self, *, force_refresh: bool) -> str:
        with self._lock:
            app = self._application()
            account = self._account(app)
            silent: dict[str, Any] = {}
            if account is not None:
                silent = self._call(
                    lambda: app.acquire_token_silent_with_error(
                        self._scopes, account, force_refresh=force_refresh
                    )
                )
                if silent and "access_token" in silent:
                    return self._access_token(silent, "silent token refresh")
            if self._mode == "device_code":
                why = f" ({_describe(silent)})" if silent else ""
                raise AuthError(
                    f"no usable Partner Center sign-in in the token cache{why}; {LOGIN_HINT}"
                )
            return self._access_token(self._grant(app), f"{self._mode} grant")

    def _grant(self, app: Any) -> dict[str, Any]:  # noqa: ANN401 - msal is untyped
        if self._mode == "password":
            if self._client_secret is None:
                # msal deprecates ROPC for public clients; config asked for it explicitly.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return self._call(self._password_grant(app))
            return self._call(self._password_grant(app))
        refresh_token = self._read_refresh_token()
        return self._call(lambda: app.acquire_token_by_refresh_token(refresh_token, self._scopes))

    def _password_grant(self, app: Any) -> Callable[[], dict[str, Any]]:  # noqa: ANN401
        return lambda: app.acquire_token_by_username_password(
            self._username, self._password, scopes=self._scopes
        )

    def _account(self, app: Any) -> Any:  # noqa: ANN401 - msal is untyped
        username = self._username if self._mode == "password" else None
        with self._entra_errors():
            accounts = app.get_accounts(username=username)
        return accounts[0] if accounts else None

    def _access_token(self, result: dict[str, Any] | None, what: str) -> str:
        self._save_cache()
        if not result or "access_token" not in result:
            raise AuthError(f"Partner Center {what} failed: {_describe(result)}")
        return str(result["access_token"])

    def _call(self, fn: Callable[[], Any]) -> dict[str, Any]:
        """Run one msal call that answers with a dict (msal's "nothing" is None → ``{}``);
        Entra throttling or failing raises for the retry layer (:class:`EntraHttp`)."""
        return self._entra.call(fn)

    def _entra_errors(self) -> contextlib.AbstractContextManager[None]:
        return entra_errors(self._authority)

    def _application(self) -> Any:  # noqa: ANN401 - msal is untyped
        if self._app is not None:
            return self._app
        host = (urlsplit(self._authority).hostname or "").lower()
        options: dict[str, Any] = {
            "authority": self._authority,
            "token_cache": self._cache,
            "http_client": self._entra,
            "http_cache": NoThrottleReplay(),
            # Instance discovery asks login.microsoftonline.com to vouch for the authority; our
            # authority comes from our own config, and the sandbox's host is not Microsoft's.
            "instance_discovery": None
            if host in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS
            else False,
        }
        try:
            with self._entra_errors():
                if self._client_secret is not None:
                    app = msal.ConfidentialClientApplication(
                        self._client_id, client_credential=self._client_secret, **options
                    )
                else:
                    app = msal.PublicClientApplication(self._client_id, **options)
        except ValueError as exc:  # tenant discovery refused: wrong authority or tenant
            raise AuthError(f"Entra authority {self._authority} unusable: {exc}") from exc
        self._app = app
        return app

    def _read_refresh_token(self) -> str:
        assert self._refresh_token_file is not None  # noqa: S101 - checked in __init__
        try:
            value = self._refresh_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthError(
                f"cannot read the refresh token file {self._refresh_token_file}: {exc.strerror}"
            ) from exc
        if not value:
            raise AuthError(f"the refresh token file {self._refresh_token_file} is empty")
        return value

    # -- the cache file -----------------------------------------------------------------------

    def _load_cache(self) -> None:
        path = self._cache_path
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            self._log.warning(
                "token_cache_permissions_fixed", path=str(path), was=oct(stat.S_IMODE(mode))
            )
            path.chmod(0o600)
        try:
            self._cache.deserialize(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self._log.warning("token_cache_unreadable", path=str(path), error=type(exc).__name__)
            self._cache = msal.SerializableTokenCache()

    def _save_cache(self) -> None:
        if not self._cache.has_state_changed:
            return
        _write_private(self._cache_path, self._cache.serialize())
        self._cache.has_state_changed = False


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (never seen half-written), owner-only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp creates it 0600
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def _describe(result: dict[str, Any] | None) -> str:
    """Entra's error code and description; never tokens (only these two keys are read)."""
    if not result:
        return "no token in the cache"
    error = result.get("error") or "unknown_error"
    description = str(result.get("error_description") or "").strip()
    first_line = description.splitlines()[0] if description else ""
    return f"{error}: {first_line}" if first_line else str(error)


def _check_settings(
    *,
    authority: str,
    mode: str,
    client_secret: str | None,
    username: str | None,
    password: str | None,
    refresh_token_file: Path | None,
    scopes: Sequence[str],
) -> list[ConfigProblem]:
    problems = []
    parts = urlsplit(authority)
    if parts.scheme != "https" or not parts.netloc or parts.path.strip("/") == "":
        problems.append(ConfigProblem(_SOURCE, "authority", "must be https://HOST[:PORT]/<tenant>"))
    if not scopes:
        problems.append(ConfigProblem(_SOURCE, "scopes", "at least one scope is needed"))
    if mode == "device_code" and client_secret is not None:
        problems.append(
            ConfigProblem(
                _SOURCE, "client_secret", "device_code sign-in is a public-client flow: no secret"
            )
        )
    elif mode == "password" and not (username and password):
        problems.append(
            ConfigProblem(_SOURCE, "username/password", "both are required in password mode")
        )
    elif mode == "refresh_token" and refresh_token_file is None:
        problems.append(
            ConfigProblem(_SOURCE, "refresh_token_file", "required in refresh_token mode")
        )
    elif mode not in ("device_code", "password", "refresh_token"):
        problems.append(
            ConfigProblem(
                _SOURCE, "mode", f"unknown mode {mode!r}: device_code|password|refresh_token"
            )
        )
    if mode != "password" and (username or password):
        problems.append(ConfigProblem(_SOURCE, "username/password", "only used in password mode"))
    return problems
