"""HTTP client for the Partner Center Referrals API: requests, paging, classification, retries.

Every call carries ``Authorization: Bearer``, ``Accept: application/json``, a fresh
``client-request-id`` (uuid4) and a (connect, read) timeout; redirects are not followed. Each
response is classified by one table (:data:`STATUS_ACTIONS`, :data:`EXCEPTION_ACTIONS`) into the
error tree of :mod:`connector.errors`; only ``TransientError`` is retried (see
:mod:`connector.http.retry`). A 401 renews the token (once for all the threads that met it) and
repeats the request once, in each attempt.

Vendor JSON stays ``dict[str, Any]`` here; ``wire.py``/``convert.py`` give it a shape.

One client may be used by several threads at once (the engine's concurrent write-backs). A
429 or 503 with ``Retry-After`` then pauses all of them, and the next cycle too: the client's
:class:`~connector.http.gate.RetryAfterGate` is held for that time by the retry layer.
"""

from __future__ import annotations

import enum
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests
import structlog
from structlog.typing import FilteringBoundLogger

from connector.errors import (
    AuthError,
    ConfigError,
    ConfigProblem,
    PermanentError,
    PreconditionFailed,
    RateLimited,
    RecordRejected,
    ReferralSyncError,
    TokenRefused,
    TransientError,
)
from connector.http.gate import RetryAfterGate
from connector.http.retry import RetryPolicy, call_with_retry, parse_retry_after
from connector.http.session import DEFAULT_TIMEOUT, is_certificate_failure
from connector.http.tokens import TokenRenewal

SERVICE = "partner_center"
_MAX_MESSAGE = 1024  # the documented bound of error.message


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of the list endpoint: its items as sent, and whether a next link follows."""

    items: list[Any]
    has_more: bool


class TokenSource(Protocol):
    """What the client needs from auth (``PartnerCenterAuth`` satisfies it)."""

    def token(self) -> str: ...

    def refresh(self) -> str: ...


class Action(enum.Enum):
    """What to do with a response or a transport exception."""

    OK = "ok"
    REJECT = "reject"  # this record was refused: RecordRejected, never retried
    FAIL = "fail"  # retrying cannot help: PermanentError
    REAUTH = "reauth"  # 401: refresh once, repeat once, then AuthError
    DENY = "deny"  # 403: signed in but not allowed (role, claims): AuthError
    PRECONDITION = "precondition"  # 412: PreconditionFailed
    RATE_LIMITED = "rate_limited"  # 429: RateLimited(retry_after)
    RETRY = "retry"  # TransientError(retry_after if the server gave one)


STATUS_ACTIONS: Mapping[int, Action] = {
    200: Action.OK,
    201: Action.OK,
    204: Action.OK,
    400: Action.REJECT,
    401: Action.REAUTH,
    403: Action.DENY,
    404: Action.REJECT,
    405: Action.FAIL,
    409: Action.REJECT,
    410: Action.REJECT,
    412: Action.PRECONDITION,
    413: Action.REJECT,
    415: Action.FAIL,
    422: Action.REJECT,
    429: Action.RATE_LIMITED,
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
}
"""Status → action. Any status not listed is :attr:`Action.FAIL`."""

EXCEPTION_ACTIONS: tuple[tuple[type[BaseException], Action], ...] = (
    # First match wins. An SSLError is a ConnectionError: a connection cut during TLS (EOF,
    # reset) is retried; a certificate failure is not (see classify_exception).
    (requests.exceptions.ConnectionError, Action.RETRY),
    (requests.exceptions.Timeout, Action.RETRY),
    (requests.exceptions.ChunkedEncodingError, Action.RETRY),
)
"""Transport exception → action. Any other exception is :attr:`Action.FAIL`."""

_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


def classify_status(status: int) -> Action:
    """The table lookup for a status code (2xx not listed still counts as OK)."""
    if status in STATUS_ACTIONS:
        return STATUS_ACTIONS[status]
    return Action.OK if 200 <= status < 300 else Action.FAIL


def classify_exception(exc: BaseException) -> Action:
    """The table lookup for a transport exception."""
    if isinstance(exc, requests.exceptions.SSLError) and is_certificate_failure(exc):
        return Action.FAIL
    for kind, action in EXCEPTION_ACTIONS:
        if isinstance(exc, kind):
            return action
    return Action.FAIL


_PERMANENT_ERRORS: Mapping[Action, type[PermanentError]] = {
    Action.REJECT: RecordRejected,
    Action.PRECONDITION: PreconditionFailed,
    Action.FAIL: PermanentError,
}


def error_for_response(response: requests.Response) -> ReferralSyncError | None:
    """The error a response stands for, ``None`` if it is a success (401 → ``AuthError``)."""
    status = response.status_code
    action = classify_status(status)
    if action is Action.OK:
        return None
    code, message = _server_error(response)
    text = f"Partner Center answered {status}" + (f" {code}" if code else "") + f": {message}"
    if action is Action.RATE_LIMITED:
        return RateLimited(text, retry_after=_retry_after(response, message))
    if action is Action.RETRY:
        return TransientError(text, retry_after=_retry_after(response, None))
    if action in (Action.REAUTH, Action.DENY):
        return AuthError(text)
    return _PERMANENT_ERRORS[action](text, status=status, code=code)


def error_for_exception(exc: BaseException) -> ReferralSyncError:
    """The error a transport exception stands for (never its URL's query or any header)."""
    text = f"Partner Center request failed: {type(exc).__name__}"
    if classify_exception(exc) is Action.RETRY:
        return TransientError(text)
    return PermanentError(f"{text}: {exc}")


def _server_error(response: requests.Response) -> tuple[str | None, str]:
    """(error.code, error.message) from the documented envelope, or the throttling shape."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            return (
                str(code) if code is not None else None,
                str(message)[:_MAX_MESSAGE] if message else response.reason or "",
            )
        message = body.get("message")
        if isinstance(message, str) and message:
            return None, message[:_MAX_MESSAGE]
    return None, response.reason or "(no error body)"


def _retry_after(response: requests.Response, message: str | None) -> float | None:
    seconds = parse_retry_after(
        response.headers.get("Retry-After"), server_date=response.headers.get("Date")
    )
    if seconds is None and message:
        match = _TRY_AGAIN.search(message)
        if match:
            seconds = float(match.group(1))
    return seconds


_MAX_INT_DIGITS = 4300  # Python's default limit for int(str)


def _loads(content: bytes) -> Any:  # noqa: ANN401 - vendor JSON
    """JSON where one odd value costs only its referral, not the page: ``NaN``/``Infinity``
    and numbers no float or int can hold stay text (the converter refuses them, naming the
    field), so every item can still be dead-lettered as JSON."""
    return json.loads(
        content,
        parse_constant=str,
        parse_int=lambda text: text if len(text.lstrip("-")) > _MAX_INT_DIGITS else int(text),
        parse_float=lambda text: value if math.isfinite(value := float(text)) else text,
    )


class PartnerCenterClient:
    """The Referrals API over one session, one token source and one retry policy."""

    def __init__(
        self,
        base_url: str,
        auth: TokenSource,
        *,
        session: requests.Session,
        retry: RetryPolicy,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.netloc:
            raise ConfigError(
                [ConfigProblem("partner_center", "base_url", f"must be an https URL: {base_url!r}")]
            )
        self._base = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc.lower())
        self._auth = auth
        self._session = session
        self._retry = retry
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)
        self.gate = RetryAfterGate(clock=clock, sleep=sleep)
        self._renewal = TokenRenewal(auth)

    # -- operations ---------------------------------------------------------------------------

    def iter_pages(self, params: Mapping[str, str] | None = None) -> Generator[ListPage]:
        """GET /referrals with ``params``, then every ``@odata.nextLink`` verbatim, page by page.

        A next link to another scheme or host is refused (the bearer token would go with it).
        Each page says whether a next link follows, so a caller can stop (closing the
        generator) and re-query instead, without spending a request to find out.
        """
        url = f"{self._base}/referrals"
        query: Mapping[str, str] | None = params
        seen: set[str] = set()
        while True:
            page = self._json(self._send("GET", url, params=query))
            if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                raise PermanentError("Partner Center list response has no 'value' array")
            # Items are passed on as they are: one that is not an object is the adapter's to
            # reject (and dead-letter), never silently dropped here.
            link = page.get("@odata.nextLink")
            yield ListPage(items=list(page["value"]), has_more=bool(link))
            if not link:
                return
            url = self._checked_next_link(str(link), seen)
            query = None

    def get(self, referral_id: str) -> dict[str, Any]:
        """GET one referral (its ``eTag`` is in the body)."""
        body = self._json(self._send("GET", self._item_url(referral_id)))
        if not isinstance(body, dict):
            raise PermanentError("Partner Center referral response is not an object")
        return body

    def patch(
        self,
        referral_id: str,
        ops: Sequence[Mapping[str, object]],
        *,
        if_match: str | None,
        representation: bool = True,
    ) -> dict[str, Any] | None:
        """JSON Patch one referral; ``if_match`` guards it (412 → :class:`PreconditionFailed`).

        Returns the updated referral with ``representation`` (``Prefer: return=representation``),
        else ``None`` (204).
        """
        headers = {"Content-Type": "application/json"}
        if if_match is not None:
            headers["If-Match"] = if_match
        if representation:
            headers["Prefer"] = "return=representation"
        response = self._send(
            "PATCH", self._item_url(referral_id), json_body=list(ops), headers=headers
        )
        if response.status_code == 204 or not response.content:
            return None
        body = self._json(response)
        if not isinstance(body, dict):
            raise PermanentError("Partner Center patch response is not an object")
        return body

    def create(self, body: Mapping[str, object]) -> dict[str, Any]:
        """POST a new referral; returns it as created."""
        response = self._send(
            "POST",
            f"{self._base}/referrals",
            json_body=dict(body),
            headers={"Content-Type": "application/json"},
        )
        created = self._json(response)
        if not isinstance(created, dict):
            raise PermanentError("Partner Center create response is not an object")
        return created

    # -- plumbing -----------------------------------------------------------------------------

    def _item_url(self, referral_id: str) -> str:
        if not referral_id:
            raise ValueError("referral id must not be empty")
        return f"{self._base}/referrals/{quote(referral_id, safe='')}"

    def _checked_next_link(self, link: str, seen: set[str]) -> str:
        parts = urlsplit(link)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise PermanentError(
                f"refusing @odata.nextLink to {parts.scheme}://{parts.netloc}: "
                f"not the configured API origin {self._origin[0]}://{self._origin[1]}"
            )
        if link in seen:
            raise PermanentError("@odata.nextLink repeats an earlier page: paging would not end")
        seen.add(link)
        return link

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """One logical request: retried on TransientError; in each attempt, one token renewal
        on 401 (shared with the other threads that met it: :class:`TokenRenewal`)."""

        def attempt() -> requests.Response:
            token = self._auth.token()
            response = self._send_once(method, url, token, params, json_body, headers)
            if response.status_code == 401:
                self._log.info("token_refresh_after_401", service=SERVICE)
                token = self._renewal.after_401(token)  # a transient failure: the next attempt
                response = self._send_once(method, url, token, params, json_body, headers)
                if response.status_code == 401:
                    raise TokenRefused("Partner Center refused a freshly issued token (401)")
            error = error_for_response(response)
            if error is not None:
                raise error
            return response

        return call_with_retry(
            attempt,
            self._retry,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
            on_retry=self._log_retry,
            gate=self.gate,
        )

    def _send_once(  # noqa: PLR0917 - private; mirrors _send's arguments in order
        self,
        method: str,
        url: str,
        token: str,
        params: Mapping[str, str] | None,
        json_body: object,
        extra_headers: Mapping[str, str] | None,
    ) -> requests.Response:
        request_id = str(uuid.uuid4())
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "client-request-id": request_id,
            **(extra_headers or {}),
        }
        path = urlsplit(url).path
        self.gate.check(self._retry.max_total_s)  # another thread may have met a 429 meanwhile
        started = self._clock()
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                data=None if json_body is None else json.dumps(json_body),
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            self._log.warning(
                "request_failed",
                service=SERVICE,
                method=method,
                path=path,
                client_request_id=request_id,
                error=type(exc).__name__,
            )
            raise error_for_exception(exc) from exc
        self._log.debug(
            "request_done",
            service=SERVICE,
            method=method,
            path=path,
            status=response.status_code,
            client_request_id=request_id,
            request_id=response.headers.get("request-id"),
            elapsed_ms=round((self._clock() - started) * 1000),
        )
        return response

    def _json(self, response: requests.Response) -> Any:  # noqa: ANN401 - vendor JSON, shaped by wire.py
        try:
            return _loads(response.content)
        except (ValueError, RecursionError) as exc:
            raise PermanentError(
                f"Partner Center answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from exc

    def _log_retry(self, attempt: int, wait_s: float, error: TransientError) -> None:
        self._log.warning(
            "request_retry",
            service=SERVICE,
            attempt=attempt,
            wait_s=round(wait_s, 3),
            reason=str(error),
        )
