"""The one retry layer: at the request, on :class:`~connector.errors.TransientError` only.

A client wraps *one* logical request (send, classify, raise) in :func:`call_with_retry`. The
wait before the next attempt is ``max(retry_after, jittered exponential)`` when the server said
when to come back (Retry-After first: never sooner than the server asked), else the jittered
exponential alone. It stops after ``max_attempts`` attempts or when the next wait would run past
``max_total_s``, and then re-raises the last :class:`TransientError` itself (never tenacity's
``RetryError``). Anything that is not a ``TransientError`` propagates at once, and so does an
:class:`~connector.errors.OutcomeUnknown` (a create that may have been made: not re-sent).

With a :class:`~connector.http.gate.RetryAfterGate` (the client's), every attempt first waits
the gate out, and every ``Retry-After`` met holds it, retried or not: the client's other
threads and its next requests keep the server's "come back later" too.

Sleep, clock and random source are injected so tests never really sleep.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeVar

import tenacity

from connector.errors import AuthError, OutcomeUnknown, TokenRefused, TransientError
from connector.http.gate import RetryAfterGate

if TYPE_CHECKING:
    from connector.settings import RetrySettings

T = TypeVar("T")

OnRetry = Callable[[int, float, TransientError], None]
"""Called before each back-off sleep with (failed attempt number, wait seconds, the error)."""

RetryObserver = Callable[[float, bool], None]
"""Told of each back-off sleep: (wait seconds, whether the server asked for it with
Retry-After); the retry and rate-limit-wait metrics hang here."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How hard one request is retried.

    ``max_attempts`` counts every attempt, the first included. The exponential step for failed
    attempt *n* is ``min(cap_s, base_s * 2 ** (n - 1))``; ``jitter`` (0..1) takes up to that
    fraction off it at random (0 = deterministic, 1 = "full jitter").
    """

    max_attempts: int = 6
    max_total_s: float = 120.0
    base_s: float = 1.0
    cap_s: float = 30.0
    jitter: float = 0.5
    observer: RetryObserver | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append("max_attempts must be at least 1")
        if self.max_total_s <= 0:
            problems.append("max_total_s must be positive")
        if self.base_s < 0 or self.cap_s < self.base_s:
            problems.append("need 0 <= base_s <= cap_s")
        if not 0.0 <= self.jitter <= 1.0:
            problems.append("jitter must be between 0 and 1")
        if problems:
            raise ValueError("invalid retry policy: " + "; ".join(problems))

    @classmethod
    def from_settings(
        cls, settings: RetrySettings, *, observer: RetryObserver | None = None
    ) -> RetryPolicy:
        """The policy a connection's ``[...retry]`` table asks for, telling ``observer``."""
        return cls(
            max_attempts=settings.max_attempts,
            max_total_s=settings.max_seconds,
            base_s=settings.base_seconds,
            cap_s=settings.cap_seconds,
            observer=observer,
        )

    def backoff(self, failed_attempt: int, rng: random.Random) -> float:
        """The jittered exponential wait after attempt number ``failed_attempt`` (1-based)."""
        step = min(self.cap_s, self.base_s * 2.0 ** (failed_attempt - 1))
        return step * (1.0 - self.jitter * rng.random())

    def wait_for(
        self, failed_attempt: int, error: BaseException | None, rng: random.Random
    ) -> float:
        """Retry-After first: never less than the server asked for, else the back-off."""
        backoff = self.backoff(failed_attempt, rng)
        retry_after = error.retry_after if isinstance(error, TransientError) else None
        return backoff if retry_after is None else max(retry_after, backoff)


def build_retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: OnRetry | None = None,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for ONE logical request: its time budget starts now.

    Build a fresh one per request (the start time is captured here, from the injected clock,
    because tenacity's own timing always reads ``time.monotonic``).
    """
    source = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not security
    started = clock()

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        return policy.wait_for(state.attempt_number, error, source)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        return clock() - started + state.upcoming_sleep > policy.max_total_s

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if not isinstance(error, TransientError):
            return
        if policy.observer is not None:
            policy.observer(state.upcoming_sleep, error.retry_after is not None)
        if on_retry is not None:
            on_retry(state.attempt_number, state.upcoming_sleep, error)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retryable),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def _retryable(error: BaseException) -> bool:
    """A transient fault, unless a create may have been done (that one is not re-sent)."""
    return isinstance(error, TransientError) and not isinstance(error, OutcomeUnknown)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: OnRetry | None = None,
    gate: RetryAfterGate | None = None,
) -> T:
    """Run ``fn`` under ``policy``; on giving up, the last ``TransientError`` is raised.

    ``gate``: waited out before each attempt, held for each ``Retry-After`` met. A
    :class:`TokenRefused` in the last attempt is an :class:`AuthError`: renewed tokens were
    refused every time, so the credentials are."""
    retrying = build_retrying(policy, sleep=sleep, clock=clock, rng=rng, on_retry=on_retry)
    try:
        return retrying(fn if gate is None else _gated(fn, gate, policy))
    except TokenRefused as exc:
        raise AuthError(f"{exc}, in every attempt") from exc


def _gated(fn: Callable[[], T], gate: RetryAfterGate, policy: RetryPolicy) -> Callable[[], T]:
    """``fn`` that waits ``gate`` out first and holds it for a ``Retry-After`` it meets."""

    def gated() -> T:
        gate.check(policy.max_total_s)  # past this request's budget: fail now, send nothing
        try:
            return fn()
        except TransientError as exc:
            if exc.retry_after:
                gate.hold(exc.retry_after)
            raise

    return gated


def parse_retry_after(
    value: str | None, *, now: datetime | None = None, server_date: str | None = None
) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    An HTTP-date is measured against the response's own ``Date`` header when there is one
    (no clock skew between us and the server), else against ``now`` (default: the wall clock).
    Returns ``None`` when the header is absent or unreadable; never a negative number.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    when = _http_date(text)
    if when is None:
        return None
    reference = _http_date(server_date) if server_date else None
    if reference is None:
        reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _http_date(text: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
