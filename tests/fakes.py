"""Real-behaviour fakes shared by the tests (no Mock): they do what the real thing does."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that moves only when something sleeps on it; records every sleep.

    Pass ``clock`` (the object itself, callable) and ``sleep`` to the code under test: retries
    then wait on this, never for real, and a test can read how long they would have waited.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
