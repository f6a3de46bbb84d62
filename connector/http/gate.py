"""A service's "come back later", kept for every thread and every cycle that uses its client.

A 429 or a 503 with ``Retry-After`` asks the *client* to send nothing until then, not only
the request that met it. A :class:`RetryAfterGate` belongs to one client (one service, one
connection): the retry layer holds it for ``Retry-After`` seconds whenever a reply says so,
whether that request is retried or given up, and waits it out before every attempt of every
request; the client checks it again right before a request leaves (after waiting for a
token, say), so a thread already past the first wait does not slip through. So the other
write-back threads, a token request after a 401, and the next cycle after a failed one all
wait with it; only requests already on the wire when the reply came are not stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from connector.errors import RateLimited

__all__ = ["RetryAfterGate"]


class RetryAfterGate:
    """Thread-safe: ``hold(seconds)`` from any thread, ``wait()`` before each request."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._open_at = 0.0  # on ``clock``: nothing is sent before

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (a later hold already in place stays)."""
        if seconds <= 0:
            return
        with self._lock:
            self._open_at = max(self._open_at, self._clock() + seconds)

    def remaining(self) -> float:
        """Seconds until requests may go again (0 when open)."""
        with self._lock:
            return max(0.0, self._open_at - self._clock())

    def check(self, budget_s: float) -> None:
        """Right before a request leaves: wait the gate out, or raise :class:`RateLimited`
        (sending nothing) when that would take more than ``budget_s``."""
        left = self.remaining()
        if left > budget_s:
            raise RateLimited(
                f"the service asked us to wait; {left:.0f} s of its Retry-After left",
                retry_after=left,
            )
        if left > 0:
            self.wait()

    def wait(self) -> float:
        """Sleep until the gate is open (again, if another hold came meanwhile); seconds slept."""
        slept = 0.0
        while (left := self.remaining()) > 0:
            self._sleep(left)
            slept += left
            if self.remaining() >= left:  # a clock that does not move with sleep (a test's)
                break
        return slept
