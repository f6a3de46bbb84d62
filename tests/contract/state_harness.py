"""What the state store contract suite needs to build each implementation.

An implementation joins the suite by adding its name to ``STATE_STORES`` and a branch to
:meth:`StateDatabase.open` (``conftest.state_database`` says where each one's database is).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from connector.ports import StateStore
from connector.state import MemoryStateStore, SqlStateStore

STATE_STORES = ["memory", "sqlite", "postgres"]

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


@dataclass(frozen=True)
class StateDatabase:
    """One test's database for one implementation: a file, a fresh Postgres schema, or none."""

    kind: str
    url: str | sa.URL | None
    clock: ManualClock

    @property
    def leases_on_real_time(self) -> bool:
        """Postgres stamps leases with the server's clock, which no test can move."""
        return self.kind == "postgres"

    def open(self) -> StateStore:
        """A store on this database, stamping with the test's clock. Each call on a SQL
        database opens another store: what a second daemon on the same database would have."""
        if self.kind == "memory":
            return MemoryStateStore(clock=self.clock)
        if self.url is None:
            raise AssertionError(f"no database for the {self.kind} store")
        return SqlStateStore.open(self.url, clock=self.clock)

    def let_time_pass(self, seconds: float) -> None:
        """Move every clock the store reads: the test's, and for leases on the server's clock,
        real time."""
        self.clock.advance(seconds)
        if self.leases_on_real_time:
            time.sleep(seconds)
