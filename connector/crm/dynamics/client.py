"""The one place that speaks HTTP to the Dataverse Web API: GETs with paging links, ``$batch``.

Every call goes through :meth:`DynamicsClient._call`: one logical request, classified by one
table into :mod:`connector.errors`, retried on ``TransientError`` only (by
:mod:`connector.http.retry`, the one retry layer, Retry-After first), with one token refresh
on 401. The session is :func:`connector.http.session.build_session`'s (https only, the
configured CA, ``trust_env=False``).

The classification (:data:`STATUS_ACTIONS`, :data:`CODE_ACTIONS`, :data:`EXCEPTION_ACTIONS`):
Dataverse's ``error.code`` is unrelated to the status (crm-apis §C7), so a known code wins,
else the status decides. Service protection (§C6) is a 429 with ``Retry-After`` and one of
three codes: :class:`RateLimited` either way. The parts of a ``$batch`` answer are classified
by the same table (:func:`error_for`); the adapter decides what a refused part means for its
row.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, TypeVar, cast

import requests
import structlog
from structlog.typing import FilteringBoundLogger

from connector.crm.dynamics import batch
from connector.crm.dynamics.wire import SERVICE_PROTECTION, ErrorEnvelope
from connector.errors import (
    AuthError,
    PermanentError,
    RateLimited,
    RecordRejected,
    ReferralSyncError,
    TokenRefused,
    TransientError,
    outcome_unknown,
)
from connector.http.gate import RetryAfterGate
from connector.http.retry import RetryPolicy, call_with_retry, parse_retry_after
from connector.http.session import DEFAULT_TIMEOUT, is_certificate_failure
from connector.http.tokens import TokenRenewal

SERVICE = "dynamics"
_MAX_MESSAGE = 500
_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}
T = TypeVar("T")


class TokenSource(Protocol):
    """What the client needs from auth (``DynamicsAuth`` satisfies it)."""

    def token(self) -> str: ...

    def refresh(self) -> str: ...


class Action(enum.Enum):
    """What a failed call (or batch part) stands for."""

    REJECT = "reject"  # this record was refused: RecordRejected
    FAIL = "fail"  # retrying cannot help: PermanentError
    REAUTH = "reauth"  # 401: refresh once, repeat once, then AuthError
    DENY = "deny"  # signed in but not allowed: AuthError
    RATE_LIMITED = "rate_limited"  # service protection: RateLimited(Retry-After)
    RETRY = "retry"  # TransientError


STATUS_ACTIONS: Mapping[int, Action] = {
    400: Action.REJECT,
    401: Action.REAUTH,
    403: Action.DENY,
    404: Action.REJECT,
    405: Action.FAIL,
    409: Action.REJECT,
    412: Action.REJECT,
    413: Action.FAIL,
    415: Action.FAIL,
    429: Action.RATE_LIMITED,
    500: Action.RETRY,
    501: Action.FAIL,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
}
"""Status → action when the error code is not in :data:`CODE_ACTIONS`. Others: FAIL."""

CODE_ACTIONS: Mapping[str, Action] = {
    **dict.fromkeys(SERVICE_PROTECTION, Action.RATE_LIMITED),
    "0x80040220": Action.DENY,  # PrivilegeDenied (the application user lacks a role)
    "0x80044352": Action.FAIL,  # ExpiredVersionStamp: the adapter re-baselines change tracking
    "0x80060888": Action.FAIL,  # the OData reader refused our request: it is wrong for this org
}
"""``error.code`` → action; wins over the status."""

EXCEPTION_ACTIONS: tuple[tuple[type[BaseException], Action], ...] = (
    # First match wins. An SSLError is a ConnectionError: a connection cut during TLS (EOF,
    # reset) is retried; a certificate failure is not (is_certificate_failure).
    (requests.exceptions.ConnectionError, Action.RETRY),
    (requests.exceptions.Timeout, Action.RETRY),
    (requests.exceptions.ChunkedEncodingError, Action.RETRY),
)
"""Transport exception → action; any other ``RequestException``: FAIL."""


def classify(status: int, code: str | None) -> Action:
    """The action for a refused request (or batch part)."""
    if code and code.lower() in _CODES:
        return _CODES[code.lower()]
    return STATUS_ACTIONS.get(status, Action.FAIL)


_CODES = {k.lower(): v for k, v in CODE_ACTIONS.items()}


def classify_exception(exc: BaseException) -> Action:
    if isinstance(exc, requests.exceptions.SSLError) and is_certificate_failure(exc):
        return Action.FAIL
    for kind, action in EXCEPTION_ACTIONS:
        if isinstance(exc, kind):
            return action
    return Action.FAIL


def error_parts(body: object) -> tuple[str | None, str]:
    """(``error.code``, ``error.message``) of Dataverse's envelope, or of plain text."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = cast(ErrorEnvelope, body)["error"]
        code = error.get("code")
        message = str(error.get("message") or "")
        return (code if isinstance(code, str) and code else None), message[:_MAX_MESSAGE]
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return None, str(body or "")[:_MAX_MESSAGE]


def error_for(
    status: int, body: object, headers: Mapping[str, str] | None = None
) -> ReferralSyncError:
    """The error of our tree that a refused request stands for (never its URL: keys and
    filters hold customer data)."""
    code, message = error_parts(body)
    action = classify(status, code)
    text = f"Dataverse answered {status}" + (f" {code}" if code else "")
    text += f": {message}" if message else ""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    retry_after = parse_retry_after(lowered.get("retry-after"), server_date=lowered.get("date"))
    if action is Action.RATE_LIMITED:
        return RateLimited(text, retry_after=retry_after)
    if action is Action.RETRY:
        return TransientError(text, retry_after=retry_after)
    if action in (Action.REAUTH, Action.DENY):
        return AuthError(text)
    if action is Action.REJECT:
        return RecordRejected(text, status=status, code=code)
    return PermanentError(text, status=status, code=code)


class DynamicsClient:
    """The Web API under ``base_url`` (``https://<org>.crm.dynamics.com/api/data/v9.2``)."""

    def __init__(
        self,
        auth: TokenSource,
        *,
        base_url: str,
        session: requests.Session,
        retry: RetryPolicy,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self._auth = auth
        self._base = base_url.rstrip("/")
        self._session = session
        self._retry = retry
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self.gate = RetryAfterGate(clock=clock, sleep=sleep)
        self._renewal = TokenRenewal(auth)
        """Held by every ``Retry-After`` this service sends: all requests wait it out."""
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)
        self.calls = 0
        """How many HTTP calls went to the Web API (attempts included)."""

    @property
    def base_url(self) -> str:
        return self._base

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` (already absolute: unchanged)."""
        return path if path.startswith("https://") else f"{self._base}/{path.lstrip('/')}"

    # -- operations ---------------------------------------------------------------------------

    def get(
        self,
        name: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        prefer: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``GET`` a JSON object (a page of rows, a row, metadata); a paging or delta link is
        passed as ``path`` unchanged, with no ``params``."""
        headers = {"Prefer": ", ".join(prefer)} if prefer else {}
        response = self._call(name, "GET", self.url(path), params=params, headers=headers)
        body = _json(response)
        if not isinstance(body, dict):
            raise PermanentError(f"Dataverse answered {name} with no JSON object")
        return body

    def batch(self, name: str, parts: Sequence[batch.Part]) -> list[batch.PartResponse]:
        """One ``POST $batch`` with ``Prefer: odata.continue-on-error``: one answer per part,
        in order. Only a failure of the whole batch raises; a refused part is an answer. A batch
        holding a ``POST`` is not re-sent once it may have been done (upserts by key, create-only
        ``PATCH`` parts and reads are safe to repeat)."""
        content_type, body = batch.encode(parts)
        response = self._call(
            name,
            "POST",
            self.url("$batch"),
            # Creates (POST) are not safe to repeat; upserts by key (PATCH) and reads are.
            idempotent=all(part.method != "POST" for part in parts),
            data=body,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
        )
        try:
            answers = batch.decode(response.headers.get("Content-Type", ""), response.content)
        except ValueError as exc:
            raise PermanentError(f"Dataverse's $batch answer is unreadable: {exc}") from exc
        if len(answers) != len(parts):
            raise PermanentError(
                f"Dataverse answered {len(answers)} parts to a $batch of {len(parts)}"
            )
        return answers

    # -- plumbing -----------------------------------------------------------------------------

    def _call(
        self,
        name: str,
        method: str,
        url: str,
        *,
        idempotent: bool = True,
        **kwargs: Any,  # noqa: ANN401 - requests' keyword arguments
    ) -> requests.Response:
        """One logical request: retried on TransientError, one re-authentication on 401; one
        holding creates (not ``idempotent``) is not re-sent once they may have been made."""

        def attempt() -> requests.Response:
            token = self._auth.token()  # a failure here: nothing was sent
            try:
                return self._once(name, method, url, token, kwargs)
            except _Expired:
                pass
            except TransientError as exc:
                raise outcome_unknown(exc, idempotent=idempotent)  # noqa: B904 - it chains itself
            self._log.info("token_refresh_after_401", service=SERVICE, operation=name)
            token = self._renewal.after_401(token)  # a transient failure: the next attempt
            try:
                return self._once(name, method, url, token, kwargs)
            except _Expired:
                raise TokenRefused("Dataverse refused a freshly issued token (401)") from None
            except TransientError as exc:
                raise outcome_unknown(exc, idempotent=idempotent)  # noqa: B904 - it chains itself

        return call_with_retry(
            attempt,
            self._retry,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
            on_retry=self._log_retry,
            gate=self.gate,
        )

    def _once(
        self, name: str, method: str, url: str, token: str, kwargs: Mapping[str, Any]
    ) -> requests.Response:
        headers = {**_HEADERS, **kwargs.get("headers", {}), "Authorization": f"Bearer {token}"}
        options = {k: v for k, v in kwargs.items() if k != "headers"}
        self.gate.check(self._retry.max_total_s)  # a Retry-After met meanwhile (the token wait)
        started = self._clock()
        self.calls += 1
        try:
            response = self._session.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                **options,
            )
        except requests.exceptions.RequestException as exc:
            action = classify_exception(exc)
            self._log.info(
                "request_failed", service=SERVICE, operation=name, error=type(exc).__name__
            )
            text = f"Dataverse request failed: {type(exc).__name__}"
            if action is Action.RETRY:
                raise TransientError(text) from exc
            raise PermanentError(text) from exc
        if response.status_code >= 400:
            body = _json(response)
            code, _ = error_parts(body)
            self._log.info(
                "request_failed",
                service=SERVICE,
                operation=name,
                status=response.status_code,
                code=code,
            )
            if classify(response.status_code, code) is Action.REAUTH:
                raise _Expired
            raise error_for(response.status_code, body, response.headers)
        self._log.debug(
            "request_done",
            service=SERVICE,
            operation=name,
            status=response.status_code,
            elapsed_ms=round((self._clock() - started) * 1000),
        )
        return response

    def _log_retry(self, attempt: int, wait_s: float, error: TransientError) -> None:
        self._log.warning(
            "request_retry",
            service=SERVICE,
            attempt=attempt,
            wait_s=round(wait_s, 3),
            reason=str(error),
        )


def _json(response: requests.Response) -> object:
    if not response.content:
        return None
    try:
        return response.json(parse_float=Decimal)
    except ValueError:
        return response.text


class _Expired(Exception):
    """A 401 inside one attempt (never leaves this module)."""
