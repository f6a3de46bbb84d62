"""A clock for the simulators that can run faster than real time, and be pushed forward."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class SandboxClock:
    """Sandbox time: ``start`` plus real elapsed time times ``speed``, plus every ``advance``.

    ``speed=60`` makes one real second a sandbox minute, so a referral's 14-day expiry can be
    watched in a demo. ``now()`` never goes backwards. Thread-safe.
    """

    def __init__(
        self,
        speed: float = 1.0,
        start: datetime | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        if start is not None and start.tzinfo is None:
            raise ValueError("clock start must be timezone-aware")
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._speed = speed
        self._anchor = (start or datetime.now(UTC)).astimezone(UTC)
        self._anchor_mono = monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        """The current sandbox time, timezone-aware UTC."""
        with self._lock:
            return self._now_locked()

    def advance(self, delta: timedelta) -> None:
        """Jump sandbox time forward by ``delta`` (never backwards)."""
        if delta < timedelta(0):
            raise ValueError(f"the sandbox clock cannot go backwards ({delta})")
        with self._lock:
            self._anchor += delta

    def set_speed(self, speed: float) -> None:
        """Change the speed from now on, without a jump in ``now()``."""
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        with self._lock:
            self._anchor = self._now_locked()
            self._anchor_mono = self._monotonic()
            self._speed = speed

    def _now_locked(self) -> datetime:
        elapsed = self._monotonic() - self._anchor_mono
        return self._anchor + timedelta(seconds=elapsed * self._speed)
