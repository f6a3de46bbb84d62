"""Fault and latency injection in front of any simulator, random (seeded) or scripted.

A plan is written as ``service[/route]:kind=probability,...;...``, for example::

    partner_center:429=0.1,500=0.05,503=0.05,reset=0.02,slow=0.05,retry_after=2
    partner_center/referrals_patch:500=0.2;entra:503=0.1

Kinds:

``429`` and ``503``
    with ``Retry-After``, in the service's own error body (its responder);
``500``
    no ``Retry-After``;
``reset``
    the connection is closed without a reply before the request reaches the simulator: a
    client sees a connection error and nothing was done;
``slow``
    the reply is delayed by ``slow_s`` seconds, then given normally;
``timeout``
    the simulator *does* the request (a write is made), then the reply is held back for
    ``timeout_s`` seconds and the connection closed without it: a client whose read timeout is
    shorter sees a timeout and cannot know whether its write happened;
``expire``
    the bearer token the request carries expires now, before its ``exp`` (as when Entra or the
    org revokes sessions early), and the request goes on to the simulator, which answers its
    own 401; every later use of that token is refused too, so only a client that really fetches
    a new token gets through (a request without a token is let through untouched);
``quota``
    the service's "quota spent" reply: Salesforce ``403 REQUEST_LIMIT_EXCEEDED`` "TotalRequests
    Limit exceeded." (no ``Retry-After``, as Salesforce sends none), Dataverse's request-count
    limit ``429 0x80072322`` with ``Retry-After``, elsewhere a 429 with ``Retry-After``;
``concurrency``
    the service's concurrent-request limit: Dataverse ``429 0x80072326`` "Number of concurrent
    requests exceeded the limit of 52." with ``Retry-After``, Salesforce ``403
    REQUEST_LIMIT_EXCEEDED`` "ConcurrentPerOrgLongTxn Limit exceeded.", elsewhere a 429.

Options: ``retry_after=N`` seconds (default 1), ``slow_s=S`` (default 1.5) and ``timeout_s=S``
(default 65: longer than a client's usual 60 s read timeout). A ``service/route`` rule replaces
the ``service`` rule for that route; service ``*`` applies to every service without a rule of
its own.

Scripted faults come first: ``script("partner_center", "*", 429, 500)`` makes the next two
requests to any Partner Center route fail so, then random faults apply again. ``"429:5"``
scripts a 429 with ``Retry-After: 5``; ``"ok"`` lets one request through.

Every request passing an injector is recorded in its :class:`~sandbox.requestlog.RequestLog`,
injected or not, so a test can check that a client waited for ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.requestlog import LoggedRequest, RequestLog
from sandbox.wsgi import Environ, Headers, StartResponse, WSGIApp, status_line

logger = logging.getLogger("sandbox.faults")

KINDS = ("429", "500", "503", "reset", "slow", "timeout", "expire", "quota", "concurrency")
OK = "ok"
DEFAULT_RETRY_AFTER_S = 1.0
DEFAULT_SLOW_S = 1.5
DEFAULT_TIMEOUT_S = 65.0
REPLIED = ("429", "500", "503", "quota", "concurrency")
"""Kinds the injector answers itself, with the service's responder."""
WITH_RETRY_AFTER = ("429", "503", "quota", "concurrency")
"""Kinds whose responder is offered a ``Retry-After`` (it may leave it out, as Salesforce's
quota reply does)."""
OPTIONS = ("retry_after", "slow_s", "timeout_s")

Responder = Callable[[str, float | None], tuple[int, Headers, bytes]]
"""``(kind, retry_after) -> (status, headers, body)`` for an injected kind of :data:`REPLIED`."""

TokenExpirer = Callable[[str | None], bool]
"""``(Authorization header) -> whether a live token was expired``, for ``expire`` faults."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    """The fault probabilities for one service or one route."""

    probabilities: Mapping[str, float] = field(default_factory=dict)
    retry_after_s: float = DEFAULT_RETRY_AFTER_S
    slow_s: float = DEFAULT_SLOW_S
    timeout_s: float = DEFAULT_TIMEOUT_S

    def pick(self, draw: float) -> str | None:
        """The kind chosen by a uniform ``draw`` in [0, 1), or ``None`` for no fault."""
        edge = 0.0
        for kind in KINDS:
            edge += self.probabilities.get(kind, 0.0)
            if draw < edge:
                return kind
        return None


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Rules keyed by ``(service, route)``; ``route`` is ``None`` for a whole service."""

    rules: Mapping[tuple[str, str | None], FaultRule] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse ``--faults`` (see the module docstring); ``ValueError`` names the bad part."""
        rules: dict[tuple[str, str | None], FaultRule] = {}
        for raw_part in spec.split(";"):
            part = raw_part.strip()
            if not part:
                continue
            target, sep, body = part.partition(":")
            if not sep or not target.strip():
                raise ValueError(f"fault spec {part!r}: expected 'service[/route]:kind=p,...'")
            service, _, route = target.strip().partition("/")
            rules[(service, route or None)] = _parse_rule(part, body)
        return cls(rules)

    def rule_for(self, service: str, route: str) -> FaultRule | None:
        for key in ((service, route), (service, None), ("*", route), ("*", None)):
            if key in self.rules:
                return self.rules[key]
        return None

    def __bool__(self) -> bool:
        return bool(self.rules)


def _parse_rule(part: str, body: str) -> FaultRule:
    probabilities: dict[str, float] = {}
    options: dict[str, float] = {}
    for raw_item in body.split(","):
        item = raw_item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not sep or number < 0:
            raise ValueError(f"fault spec {part!r}: {item!r} is not 'name=number'")
        if key in KINDS:
            if number > 1:
                raise ValueError(f"fault spec {part!r}: probability of {key} above 1")
            probabilities[key] = number
        elif key in OPTIONS:
            options[key] = number
        else:
            raise ValueError(
                f"fault spec {part!r}: unknown {key!r} (kinds: {', '.join(KINDS)}; "
                f"options: {', '.join(OPTIONS)})"
            )
    if sum(probabilities.values()) > 1 + 1e-9:
        raise ValueError(f"fault spec {part!r}: probabilities add up to more than 1")
    return FaultRule(
        probabilities=probabilities,
        retry_after_s=options.get("retry_after", DEFAULT_RETRY_AFTER_S),
        slow_s=options.get("slow_s", DEFAULT_SLOW_S),
        timeout_s=options.get("timeout_s", DEFAULT_TIMEOUT_S),
    )


def partner_center_responder(kind: str, retry_after: float | None) -> tuple[int, Headers, bytes]:
    """Partner Center's (API Management's) throttling and error bodies (``quota`` and
    ``concurrency`` are its 429: it has no other way to say so)."""
    status = 429 if kind in ("quota", "concurrency") else int(kind)
    headers: Headers = [("Content-Type", "application/json; charset=utf-8")]
    if retry_after is not None:
        headers.append(("Retry-After", _seconds(retry_after)))
    if status == 429:
        body: dict[str, Any] = {
            "statusCode": 429,
            "message": "Rate limit is exceeded. "
            f"Try again in {_seconds(retry_after or 1)} seconds.",
        }
    else:
        body = {"statusCode": status, "message": status_line(status).split(" ", 1)[1]}
    return status, headers, json.dumps(body).encode()


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True, slots=True)
class _Scripted:
    kind: str
    retry_after_s: float | None = None


def _scripted(item: int | str) -> _Scripted:
    text = str(item).strip().lower()
    kind, _, retry_after = text.partition(":")
    if kind not in (*KINDS, OK):
        raise ValueError(f"cannot script {item!r}: use one of {', '.join((*KINDS, OK))}")
    return _Scripted(kind, float(retry_after) if retry_after else None)


class FaultInjector:
    """Wraps simulators' WSGI apps; decides per request whether to misbehave, and logs it."""

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        latency_ms: float = 0,
        log: RequestLog | None = None,
        responders: Mapping[str, Responder] | None = None,
    ) -> None:
        self.plan = plan or FaultPlan()
        self.latency_ms = latency_ms
        self.log = log if log is not None else RequestLog()
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._responders: dict[str, Responder] = dict(responders or {})
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], deque[_Scripted]] = {}
        self._expirers: dict[str, TokenExpirer] = {}

    def set_plan(self, plan: FaultPlan | str) -> None:
        self.plan = FaultPlan.parse(plan) if isinstance(plan, str) else plan

    def set_responder(self, service: str, responder: Responder) -> None:
        """Make injected 429/500/503 of ``service`` look like that service's own errors."""
        self._responders[service] = responder

    def set_token_expirer(self, service: str, expirer: TokenExpirer) -> None:
        """How ``expire`` faults of ``service`` expire the token a request carries."""
        self._expirers[service] = expirer

    def script(self, service: str, route: str, *faults: int | str) -> None:
        """Force the next replies of ``service``/``route`` (``"*"`` = any route), in order."""
        items = [_scripted(f) for f in faults]
        with self._lock:
            self._scripts.setdefault((service, route), deque()).extend(items)

    def pending(self, service: str, route: str = "*") -> int:
        """How many scripted faults are still waiting for ``service``/``route``."""
        with self._lock:
            return len(self._scripts.get((service, route), ()))

    def clear(self) -> None:
        """No faults from now on: drop the plan, the scripts and the latency."""
        with self._lock:
            self._scripts.clear()
        self.plan = FaultPlan()
        self.latency_ms = 0

    def wrap(self, app: WSGIApp, service: str, route_of: Callable[[Environ], str]) -> WSGIApp:
        def wrapped(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
            return self._handle(app, service, route_of, environ, start_response)

        return wrapped

    # -- per request ---------------------------------------------------------------------

    def _decide(self, service: str, route: str) -> tuple[str | None, float, FaultRule]:
        """(kind or None, retry_after_s, the rule) for this request."""
        rule = self.plan.rule_for(service, route) or FaultRule()
        with self._lock:
            for key in ((service, route), (service, "*")):
                queue = self._scripts.get(key)
                if queue:
                    item = queue.popleft()
                    kind = None if item.kind == OK else item.kind
                    return kind, item.retry_after_s or rule.retry_after_s, rule
            if not rule.probabilities:
                return None, rule.retry_after_s, rule
            draw = self._rng.random()
        return rule.pick(draw), rule.retry_after_s, rule

    def _handle(
        self,
        app: WSGIApp,
        service: str,
        route_of: Callable[[Environ], str],
        environ: Environ,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        arrived = time.monotonic()
        route = route_of(environ)
        kind, retry_after_s, rule = self._decide(service, route)
        if kind == "expire" and not self._expire_token(service, environ):
            kind = None  # no live token to expire (a token request): an ordinary request

        def record(status: int | None, retry_after: float | None) -> None:
            self.log.record(
                LoggedRequest(
                    service=service,
                    method=environ.get("REQUEST_METHOD", "GET"),
                    path=environ.get("PATH_INFO", ""),
                    route=route,
                    status=status,
                    time=arrived,
                    duration_s=time.monotonic() - arrived,
                    retry_after=retry_after,
                    injected=kind,
                    client_request_id=environ.get("HTTP_CLIENT_REQUEST_ID"),
                )
            )

        if self.latency_ms:
            self._sleep(self.latency_ms / 1000)
        if kind is not None:
            logger.debug("fault_injected service=%s route=%s kind=%s", service, route, kind)
        if kind == "reset":
            record(None, None)
            _reset(environ)
            raise ConnectionResetError("sandbox fault injection: connection reset")
        if kind in REPLIED:
            responder = self._responders.get(service, partner_center_responder)
            offered = retry_after_s if kind in WITH_RETRY_AFTER else None
            status, headers, body = responder(kind, offered)
            headers = [*headers, ("Content-Length", str(len(body)))]
            start_response(status_line(status), headers)
            record(status, _retry_after_of(headers))
            return [body]
        if kind == "slow":
            self._sleep(rule.slow_s)
        if kind == "timeout":
            return self._time_out(app, environ, rule.timeout_s, record)

        seen: dict[str, Any] = {}

        def capturing_start_response(
            status: str, headers: Headers, exc_info: object = None
        ) -> Callable[[bytes], object]:
            seen["status"] = int(status.split(" ", 1)[0])
            seen["retry_after"] = _retry_after_of(headers)
            result: Callable[[bytes], object] = start_response(status, headers, exc_info)
            return result

        try:
            result = app(environ, capturing_start_response)
        except Exception:
            record(500, None)
            raise
        record(seen.get("status"), seen.get("retry_after"))
        return result

    def _expire_token(self, service: str, environ: Environ) -> bool:
        expirer = self._expirers.get(service)
        return expirer is not None and expirer(environ.get("HTTP_AUTHORIZATION"))

    def _time_out(
        self,
        app: WSGIApp,
        environ: Environ,
        hold_s: float,
        record: Callable[[int | None, float | None], None],
    ) -> Iterable[bytes]:
        """Do the request, hold the reply back ``hold_s`` seconds, close without it."""

        def discard(status: str, headers: Headers, exc_info: object = None) -> Callable[..., None]:
            return lambda _data: None

        try:
            body = app(environ, discard)
            for _chunk in body:  # run it to the end: the write happens
                pass
            close = getattr(body, "close", None)
            if callable(close):
                close()
        finally:
            record(None, None)
        self._sleep(hold_s)
        _reset(environ)
        raise ConnectionResetError("sandbox fault injection: reply withheld (timeout)")


def _retry_after_of(headers: Headers) -> float | None:
    return _float_or_none({k.lower(): v for k, v in headers}.get("retry-after"))


def _float_or_none(value: object) -> float | None:
    try:
        return float(str(value)) if value is not None else None
    except ValueError:
        return None


def _reset(environ: Environ) -> None:
    """Close the client's connection at once, without a reply."""
    sock = environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
