"""The one place that calls simple-salesforce: collections upsert, create, query, describe.

Every call goes through :meth:`SalesforceClient._call`: one logical request, classified by one
table into :mod:`connector.errors`, retried on ``TransientError`` only (by
:mod:`connector.http.retry`, the one retry layer), with one token refresh on
``401 INVALID_SESSION_ID`` (see :mod:`connector.crm.salesforce.auth` for why we, not the
library, do that). simple-salesforce is untyped at heart (it answers ``Any``); its answers are
cast to the shapes of :mod:`~connector.crm.salesforce.wire` here and nowhere else.

The classification (:data:`STATUS_ACTIONS`, :data:`CODE_ACTIONS`, :data:`EXCEPTION_ACTIONS`):
Salesforce signals most things by ``errorCode`` in the JSON error array, so a known code wins
over the status. ``403 REQUEST_LIMIT_EXCEEDED`` means the org's rolling 24-hour API quota is
spent (or too many long requests run): retrying in seconds only burns more quota, so it becomes
:class:`RateLimited` with a long ``retry_after`` (``quota_wait_s``, 15 minutes by default). That
is longer than any sane per-request retry budget, so the retry layer gives up at once and the
daemon's next cycle (the outer retry) comes back later. ``Sforce-Limit-Info`` is read from every
response, failed ones included, into :attr:`SalesforceClient.api_usage`.
"""

from __future__ import annotations

import enum
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar, cast

import requests
import structlog
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError
from structlog.typing import FilteringBoundLogger

from connector.crm.salesforce.wire import (
    DescribeSObject,
    QueryEnvelope,
    RestError,
    SaveResult,
    UpsertResult,
)
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

SERVICE = "salesforce"
COLLECTION_LIMIT = 200
"""sObject Collections take at most 200 records per request."""
DEFAULT_QUOTA_WAIT_S = 900.0
_MAX_MESSAGE = 500
T = TypeVar("T")


class TokenSource(Protocol):
    """What the client needs from auth (``SalesforceAuth`` satisfies it)."""

    def token(self) -> str: ...

    def refresh(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ApiUsage:
    """The org's API requests in the rolling 24 hours, from ``Sforce-Limit-Info``."""

    used: int
    total: int

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.used)


class Action(enum.Enum):
    """What a failed call stands for."""

    REJECT = "reject"  # this record was refused: RecordRejected
    FAIL = "fail"  # retrying cannot help: PermanentError
    REAUTH = "reauth"  # 401: refresh once, repeat once, then AuthError
    DENY = "deny"  # signed in but not allowed: AuthError
    QUOTA = "quota"  # org API quota spent: RateLimited(quota_wait_s)
    RATE_LIMITED = "rate_limited"  # 429: RateLimited(Retry-After)
    RETRY = "retry"  # TransientError


STATUS_ACTIONS: Mapping[int, Action] = {
    300: Action.REJECT,  # more than one record has this external id
    400: Action.REJECT,
    401: Action.REAUTH,
    403: Action.DENY,
    404: Action.REJECT,
    405: Action.FAIL,
    409: Action.REJECT,
    412: Action.FAIL,
    415: Action.FAIL,
    429: Action.RATE_LIMITED,
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
}
"""Status → action when the error code is not in :data:`CODE_ACTIONS`. Others: FAIL."""

CODE_ACTIONS: Mapping[tuple[int | None, str], Action] = {
    # The org's rolling 24-hour quota (403): come back much later, not in seconds.
    (403, "REQUEST_LIMIT_EXCEEDED"): Action.QUOTA,
    # The same code with another status (429), or the concurrent long-request limit (see
    # CONCURRENCY_LIMIT): a short back-off helps.
    (None, "REQUEST_LIMIT_EXCEEDED"): Action.RATE_LIMITED,
    (None, "INVALID_SESSION_ID"): Action.REAUTH,
    (None, "INSUFFICIENT_ACCESS"): Action.DENY,
    (None, "API_DISABLED_FOR_ORG"): Action.DENY,
    (None, "API_CURRENTLY_DISABLED"): Action.DENY,
    # Our request is wrong for this org (a field, object or query it does not know): no single
    # record is to blame, so these are not dead-lettered as records.
    (None, "MALFORMED_QUERY"): Action.FAIL,
    (None, "INVALID_FIELD"): Action.FAIL,
    (None, "INVALID_TYPE"): Action.FAIL,
    (None, "JSON_PARSER_ERROR"): Action.FAIL,
    (None, "INVALID_QUERY_LOCATOR"): Action.FAIL,
    (None, "NOT_FOUND"): Action.REJECT,
    (None, "SERVER_UNAVAILABLE"): Action.RETRY,
    (None, "UNABLE_TO_LOCK_ROW"): Action.RETRY,
}
"""(status, ``errorCode``) → action, then (None, ``errorCode``); wins over the status alone."""

CONCURRENCY_LIMIT = "ConcurrentPerOrgLongTxn"
"""A ``REQUEST_LIMIT_EXCEEDED`` whose message starts so is the concurrent long-running request
limit, not the daily quota: it passes in seconds, so it is rate limiting, not quota."""

EXCEPTION_ACTIONS: tuple[tuple[type[BaseException], Action], ...] = (
    # First match wins. An SSLError is a ConnectionError: a connection cut during TLS (EOF,
    # reset) is retried; a certificate failure is not (is_certificate_failure).
    (requests.exceptions.ConnectionError, Action.RETRY),
    (requests.exceptions.Timeout, Action.RETRY),
    (requests.exceptions.ChunkedEncodingError, Action.RETRY),
)
"""Transport exception → action; anything else that is not a ``SalesforceError``: FAIL."""


def first_error(content: object) -> tuple[str | None, str]:
    """(errorCode, message) of the first item of a Salesforce error array, or of plain text."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        item = cast(RestError, content[0])
        code = item.get("errorCode")
        message = str(item.get("message") or "")
        fields = item.get("fields") or []
        if fields:
            message += f" (fields: {', '.join(map(str, fields))})"
        return (code if isinstance(code, str) else None), message[:_MAX_MESSAGE]
    if isinstance(content, dict):  # some endpoints answer one object, not an array
        return first_error([content])
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    return None, str(content or "")[:_MAX_MESSAGE]


def classify(exc: BaseException) -> tuple[Action, int | None, str | None, str]:
    """(action, status, errorCode, message) for an exception raised by a call."""
    if isinstance(exc, SalesforceError):
        status = int(exc.status)
        code, message = first_error(exc.content)
        if code is None:
            return STATUS_ACTIONS.get(status, Action.FAIL), status, code, message
        if code == "REQUEST_LIMIT_EXCEEDED" and message.startswith(CONCURRENCY_LIMIT):
            return Action.RATE_LIMITED, status, code, message
        action = CODE_ACTIONS.get((status, code)) or CODE_ACTIONS.get((None, code))
        return action or STATUS_ACTIONS.get(status, Action.FAIL), status, code, message
    if isinstance(exc, requests.exceptions.SSLError) and is_certificate_failure(exc):
        return Action.FAIL, None, None, type(exc).__name__
    for kind, action in EXCEPTION_ACTIONS:
        if isinstance(exc, kind):
            return action, None, None, type(exc).__name__
    return Action.FAIL, None, None, type(exc).__name__


def error_for(
    exc: BaseException,
    *,
    quota_wait_s: float = DEFAULT_QUOTA_WAIT_S,
    headers: Mapping[str, str] | None = None,
) -> ReferralSyncError:
    """The error of our tree that ``exc`` stands for (never its URL: queries hold customer data).

    ``headers`` are the failed response's, when known (simple-salesforce's exceptions drop
    them), for ``Retry-After``.
    """
    action, status, code, message = classify(exc)
    where = f"Salesforce answered {status}" if status is not None else "Salesforce request failed"
    text = where + (f" {code}" if code else "") + (f": {message}" if message else "")
    retry_after = None
    if headers is not None:
        retry_after = parse_retry_after(headers.get("Retry-After"), server_date=headers.get("Date"))
    if action is Action.QUOTA:
        return RateLimited(
            f"{text}; the org's API quota is spent, not retrying for {quota_wait_s:.0f} s",
            retry_after=max(quota_wait_s, retry_after or 0.0),
        )
    if action is Action.RATE_LIMITED:
        return RateLimited(text, retry_after=retry_after)
    if action is Action.RETRY:
        return TransientError(text, retry_after=retry_after)
    if action in (Action.REAUTH, Action.DENY):
        return AuthError(text)
    if action is Action.REJECT:
        return RecordRejected(text, status=status, code=code)
    return PermanentError(text, status=status, code=code)


_JSON_AS_IS = frozenset({str, int, float, bool, type(None)})


def to_json_value(value: object) -> object:
    """A Python value as Salesforce JSON: Decimal as a number, dates as ISO 8601 text."""
    if type(value) in _JSON_AS_IS:
        return value
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 10**15:
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"refusing to send a naive datetime: {value!r}")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


class SalesforceClient:
    """Salesforce REST through simple-salesforce, over our session, token source and retries."""

    def __init__(
        self,
        auth: TokenSource,
        *,
        instance_url: str,
        api_version: str,
        session: requests.Session,
        retry: RetryPolicy,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        quota_wait_s: float = DEFAULT_QUOTA_WAIT_S,
        query_batch_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self._auth = auth
        self._instance_url = instance_url.rstrip("/")
        self._version = api_version
        self._session = session
        self._retry = retry
        self._timeout = timeout
        self._quota_wait_s = quota_wait_s
        if query_batch_size is not None and not 200 <= query_batch_size <= 2000:
            raise ValueError(f"query_batch_size must be 200..2000, got {query_batch_size}")
        self._query_headers = (
            {}
            if query_batch_size is None
            else {"Sforce-Query-Options": f"batchSize={query_batch_size}"}
        )
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self.gate = RetryAfterGate(clock=clock, sleep=sleep)
        self._renewal = TokenRenewal(auth)
        """Held by every ``Retry-After`` this service sends: all requests wait it out."""
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)
        self._sf: Salesforce | None = None
        self._sf_token: str | None = None
        self._last_headers: Mapping[str, str] = {}
        self.api_usage: ApiUsage | None = None
        """The org's API usage from the last response that said (None until one did)."""
        self.calls = 0
        """How many HTTP calls went to the REST API (attempts included)."""

    # -- operations ---------------------------------------------------------------------------

    def upsert_collection(
        self,
        sobject: str,
        external_id_field: str,
        records: Sequence[Mapping[str, object]],
    ) -> list[UpsertResult]:
        """``PATCH composite/sobjects/<sobject>/<field>`` with ``allOrNone: false``.

        One result per record, in order. A record Salesforce refuses is a result with
        ``success: false`` and its errors; only a failure of the whole request raises. Safe to
        repeat after a lost reply (the adapter sends creates, whose first values must not be
        written twice, with :meth:`create_collection` instead).
        """
        if not 0 < len(records) <= COLLECTION_LIMIT:
            raise ValueError(
                f"a collection holds 1..{COLLECTION_LIMIT} records, got {len(records)}"
            )
        body = {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": sobject}, **{k: to_json_value(v) for k, v in r.items()}}
                for r in records
            ],
        }
        path = f"composite/sobjects/{sobject}/{external_id_field}"
        data = json.dumps(body)
        answer = self._call(
            "collections_upsert",
            lambda sf, kw: sf.restful(path, method="PATCH", data=data, **kw),
        )
        if not isinstance(answer, list) or len(answer) != len(records):
            got = len(answer) if isinstance(answer, list) else type(answer).__name__
            raise PermanentError(
                f"Salesforce collections upsert answered {got} results for {len(records)} records"
            )
        return [cast(UpsertResult, item) if isinstance(item, dict) else {} for item in answer]

    def create_collection(
        self, records: Sequence[tuple[str, Mapping[str, object]]], *, idempotent: bool = False
    ) -> list[SaveResult]:
        """``POST composite/sobjects`` with ``allOrNone: false``: create up to 200 records (of
        any sObjects) in one call; one result per record, in order, a refusal failing alone.
        ``idempotent``: each record holds a unique field's value (the external id), so a repeat
        cannot create it twice: it may be re-sent after a reply that may have been lost."""
        if not 0 < len(records) <= COLLECTION_LIMIT:
            raise ValueError(
                f"a collection holds 1..{COLLECTION_LIMIT} records, got {len(records)}"
            )
        body = {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": sobject}, **{k: to_json_value(v) for k, v in r.items()}}
                for sobject, r in records
            ],
        }
        data = json.dumps(body)
        answer = self._call(
            "collections_create",
            lambda sf, kw: sf.restful("composite/sobjects", method="POST", data=data, **kw),
            idempotent=idempotent,
        )
        if not isinstance(answer, list) or len(answer) != len(records):
            got = len(answer) if isinstance(answer, list) else type(answer).__name__
            raise PermanentError(
                f"Salesforce collections create answered {got} results for {len(records)} records"
            )
        return [cast(SaveResult, item) if isinstance(item, dict) else {} for item in answer]

    def create(self, sobject: str, record: Mapping[str, object]) -> str:
        """``POST sobjects/<sobject>``: the new record's id (a refusal is ``RecordRejected``)."""
        data = json.dumps({k: to_json_value(v) for k, v in record.items()})
        answer = self._call(
            "sobject_create",
            lambda sf, kw: sf.restful(f"sobjects/{sobject}/", method="POST", data=data, **kw),
            idempotent=False,
        )
        result = cast(SaveResult, answer) if isinstance(answer, dict) else SaveResult()
        new_id = result.get("id")
        if not isinstance(new_id, str) or not new_id:
            raise PermanentError(f"Salesforce created a {sobject} but sent no id")
        return new_id

    def query_pages(self, soql: str, *, include_deleted: bool = False) -> Iterator[QueryEnvelope]:
        """Run ``soql`` (``queryAll`` with ``include_deleted``), page by page.

        Each page is its own request (retried alone); ``nextRecordsUrl`` must be a path on the
        instance (``/services/data/…``), as Salesforce sends it.
        """
        name = "query_all" if include_deleted else "query"
        headers = self._query_headers

        def first(sf: Salesforce, kwargs: dict[str, Any]) -> Any:  # noqa: ANN401 - vendor JSON
            return sf.query(soql, include_deleted=include_deleted, headers=dict(headers), **kwargs)

        page = self._envelope(self._call(name, first))
        seen: set[str] = set()
        while True:
            yield page
            if page.get("done", True):
                return
            link = page.get("nextRecordsUrl")
            if not isinstance(link, str) or not link.startswith("/services/data/"):
                raise PermanentError(
                    f"Salesforce query page has an unusable nextRecordsUrl {link!r}"
                )
            if link in seen:
                raise PermanentError("Salesforce nextRecordsUrl repeats: paging would not end")
            seen.add(link)
            page = self._envelope(self._call("query_more", _query_more(link, headers)))

    def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record ``soql`` finds (all pages)."""
        return [r for page in self.query_pages(soql) for r in page.get("records", [])]

    def describe(self, sobject: str) -> DescribeSObject:
        """``GET sobjects/<sobject>/describe``."""
        answer = self._call(
            "describe", lambda sf, kw: sf.restful(f"sobjects/{sobject}/describe", **kw)
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("fields"), list):
            raise PermanentError(f"Salesforce describe of {sobject} has no fields list")
        return cast(DescribeSObject, answer)

    # -- plumbing -----------------------------------------------------------------------------

    def _call(
        self, name: str, fn: Callable[[Salesforce, dict[str, Any]], T], *, idempotent: bool = True
    ) -> T:
        """One logical request: retried on TransientError, one re-authentication on 401; a
        create (not ``idempotent``) is not re-sent once it may have been made."""

        def attempt() -> T:
            token = self._auth.token()  # a failure here: nothing was sent
            try:
                return self._once(name, fn, token)
            except TransientError as exc:
                raise outcome_unknown(exc, idempotent=idempotent)  # noqa: B904 - it chains itself
            except _Expired:
                pass
            self._log.info("token_refresh_after_401", service=SERVICE, operation=name)
            token = self._renewal.after_401(token)  # a transient failure: the next attempt
            try:
                return self._once(name, fn, token)
            except _Expired:
                raise TokenRefused(
                    "Salesforce refused a freshly issued token (401 INVALID_SESSION_ID)"
                ) from None
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

    def _once(self, name: str, fn: Callable[[Salesforce, dict[str, Any]], T], token: str) -> T:
        sf = self._salesforce(token)
        kwargs: dict[str, Any] = {
            "timeout": self._timeout,
            "allow_redirects": False,
            "hooks": {"response": [*self._session.hooks["response"], self._remember]},
        }
        self._last_headers = {}
        self.gate.check(self._retry.max_total_s)  # a Retry-After met meanwhile (the token wait)
        started = self._clock()
        try:
            result = fn(sf, kwargs)
        except (SalesforceError, requests.exceptions.RequestException) as exc:
            action, status, code, _ = classify(exc)
            self._log.info(
                "request_failed", service=SERVICE, operation=name, status=status, code=code
            )
            if action is Action.REAUTH and code in (None, "INVALID_SESSION_ID"):
                raise _Expired from exc
            raise error_for(
                exc, quota_wait_s=self._quota_wait_s, headers=self._last_headers
            ) from exc
        self._log.debug(
            "request_done",
            service=SERVICE,
            operation=name,
            elapsed_ms=round((self._clock() - started) * 1000),
            api_used=None if self.api_usage is None else self.api_usage.used,
        )
        return result

    def _salesforce(self, token: str) -> Salesforce:
        if self._sf is None or self._sf_token != token:
            self._sf = Salesforce(
                session_id=token,
                instance_url=self._instance_url,
                version=self._version,
                session=self._session,
                parse_float=Decimal,
                object_pairs_hook=dict,
            )
            self._sf_token = token
        return self._sf

    def _remember(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        """requests' response hook: keep the headers (simple-salesforce's errors drop them)."""
        self.calls += 1
        self._last_headers = dict(response.headers)
        info = response.headers.get("Sforce-Limit-Info")
        if info:
            usage = Salesforce.parse_api_usage(info).get("api-usage")
            if usage is not None:
                self.api_usage = ApiUsage(used=int(usage.used), total=int(usage.total))

    def _envelope(self, answer: object) -> QueryEnvelope:
        if not isinstance(answer, dict) or not isinstance(answer.get("records"), list):
            raise PermanentError("Salesforce query answer has no records list")
        return cast(QueryEnvelope, answer)

    def _log_retry(self, attempt: int, wait_s: float, error: TransientError) -> None:
        self._log.warning(
            "request_retry",
            service=SERVICE,
            attempt=attempt,
            wait_s=round(wait_s, 3),
            reason=str(error),
        )


def _query_more(
    link: str, headers: Mapping[str, str]
) -> Callable[[Salesforce, dict[str, Any]], Any]:
    def call(sf: Salesforce, kwargs: dict[str, Any]) -> Any:  # noqa: ANN401 - vendor JSON
        return sf.query_more(link, identifier_is_url=True, headers=dict(headers), **kwargs)

    return call


class _Expired(Exception):
    """A 401 INVALID_SESSION_ID inside one attempt (never leaves this module)."""
