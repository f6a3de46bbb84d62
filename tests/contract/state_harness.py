"""What the state store contract suite needs to build each implementation.

An implementation joins the suite by adding its name to ``STATE_STORES`` and a branch to
:func:`open_store` (Postgres: a URL to a throw-away database, and dropping it afterwards).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.ports import StateStore
from connector.state import MemoryStateStore, SqlStateStore

STATE_STORES = ["memory", "sqlite"]

T0 = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)


class ManualClock:
    """A ``Clock`` that moves only when a test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float = 1.0) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


def open_store(kind: str, tmp_path: Path, clock: ManualClock) -> StateStore:
    if kind == "memory":
        return MemoryStateStore(clock=clock)
    if kind == "sqlite":
        return SqlStateStore.open(f"sqlite:///{tmp_path / 'state' / 'contract.db'}", clock=clock)
    raise AssertionError(f"no state store called {kind!r}")
