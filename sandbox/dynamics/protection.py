"""Service protection API limits (crm-apis §C6), per user, over a sliding window of sandbox time.

Three limits, each answering 429 with ``Retry-After`` (whole seconds, at least 1, converted
from sandbox seconds to real seconds by the clock's speed) and the standard envelope:

* requests: more than ``requests`` in ``window_s`` → ``0x80072322`` "Number of requests
  exceeded the limit of 6000 over time window of 300 seconds." (a ``$batch`` counts once);
* execution time: more than ``execution_ms`` of combined (real) processing time in the window →
  ``0x80072321``;
* concurrency: more than ``concurrent`` requests of one user in flight → ``0x80072326``
  "Number of concurrent requests exceeded the limit of 52."

Refused requests do not count. Every answer carries ``x-ms-ratelimit-burst-remaining-xrm-
requests`` and ``x-ms-ratelimit-time-remaining-xrm-requests`` (ms of execution time left).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sandbox.dynamics.errors import DataverseError
from sandbox.dynamics.store import Clock

__all__ = ["Limits", "ServiceProtection"]

REQUESTS_CODE = "0x80072322"
EXECUTION_CODE = "0x80072321"
CONCURRENCY_CODE = "0x80072326"


@dataclass(frozen=True, slots=True)
class Limits:
    requests: int = 6000
    window_s: float = 300.0
    execution_ms: float = 1_200_000.0
    concurrent: int = 52


@dataclass(slots=True)
class _Usage:
    requests: deque[float] = field(default_factory=deque)  # arrival, sandbox epoch seconds
    executions: deque[tuple[float, float]] = field(default_factory=deque)  # (end, ms)
    in_flight: int = 0


class ServiceProtection:
    def __init__(
        self,
        clock: Clock,
        limits: Limits | None = None,
        *,
        speed: Callable[[], float] = lambda: 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.default_limits = limits or Limits()
        self.limits = self.default_limits
        self._speed = speed
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._users: dict[str, _Usage] = {}

    def reset(self) -> None:
        with self._lock:
            self.limits = self.default_limits
            self._users.clear()

    @contextlib.contextmanager
    def admit(self, user: str) -> Iterator[dict[str, str]]:
        """Count one request of ``user`` (429 :class:`DataverseError` if over a limit); yields
        the diagnostic headers; the time spent inside counts as execution time."""
        now = self.clock.now().timestamp()
        with self._lock:
            usage = self._users.setdefault(user, _Usage())
            self._expire(usage, now)
            self._check(usage, now)
            usage.requests.append(now)
            usage.in_flight += 1
            headers = self._headers(usage)
        started = self._monotonic()
        try:
            yield headers
        finally:
            elapsed_ms = (self._monotonic() - started) * 1000
            with self._lock:
                usage.in_flight -= 1
                usage.executions.append((self.clock.now().timestamp(), elapsed_ms))

    def _expire(self, usage: _Usage, now: float) -> None:
        start = now - self.limits.window_s
        while usage.requests and usage.requests[0] <= start:
            usage.requests.popleft()
        while usage.executions and usage.executions[0][0] <= start:
            usage.executions.popleft()

    def _check(self, usage: _Usage, now: float) -> None:
        limits = self.limits
        if usage.in_flight >= limits.concurrent:
            raise self._refuse(
                CONCURRENCY_CODE,
                f"Number of concurrent requests exceeded the limit of {limits.concurrent}.",
                1.0,
            )
        if len(usage.requests) >= limits.requests:
            oldest = usage.requests[0] if usage.requests else now
            wait = oldest + limits.window_s - now
            raise self._refuse(
                REQUESTS_CODE,
                f"Number of requests exceeded the limit of {limits.requests} over time window "
                f"of {limits.window_s:g} seconds.",
                wait,
            )
        spent = sum(ms for _, ms in usage.executions)
        if spent > limits.execution_ms:
            wait = usage.executions[0][0] + limits.window_s - now
            raise self._refuse(
                EXECUTION_CODE,
                f"Combined execution time of incoming requests exceeded limit of "
                f"{limits.execution_ms:,.0f} milliseconds over time window of "
                f"{limits.window_s:g} seconds. Decrease number of concurrent requests or reduce "
                "the duration of requests and try again later.",
                wait,
            )

    def _refuse(self, code: str, message: str, wait_sandbox_s: float) -> DataverseError:
        seconds = max(1, math.ceil(wait_sandbox_s / self._speed()))
        return DataverseError(429, code, message, headers={"Retry-After": str(seconds)})

    def _headers(self, usage: _Usage) -> dict[str, str]:
        spent = sum(ms for _, ms in usage.executions)
        requests_left = max(self.limits.requests - len(usage.requests), 0)
        time_left = max(self.limits.execution_ms - spent, 0)
        return {
            "x-ms-ratelimit-burst-remaining-xrm-requests": str(requests_left),
            "x-ms-ratelimit-time-remaining-xrm-requests": f"{time_left:.2f}",
        }
