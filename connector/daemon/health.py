"""What ops need to know about each connection, and when the daemon counts as ready.

One :class:`ConnectionHealth` per connection is a snapshot: the recent runs and the unresolved
dead letters as the state store holds them, the lag behind Partner Center and when the token
expires. The HTTP server (``connector.daemon.http``) turns it into ``/readyz``, ``/status`` and
``/status.json``; whoever owns the connections supplies it through a :class:`HealthSource`.

No I/O here: a snapshot is plain data, and readiness is a pure function of it and the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from connector.ports import DeadLetter, Direction, RunRecord

__all__ = [
    "STALE_AFTER_INTERVALS",
    "SUCCESS_OUTCOMES",
    "ConnectionHealth",
    "HealthSource",
    "describe_duration",
]

SUCCESS_OUTCOMES = frozenset({"ok", "partial"})  # partial: some records dead-lettered, rest synced
STALE_AFTER_INTERVALS = 3
READY = "ready"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionHealth:
    """One connection as ops see it.

    ``runs``: recent runs of both directions, newest first (a run still going has no
    ``finished_at``). ``dead_letters``: the unresolved ones, oldest first. ``lag_seconds``:
    now minus the newest change time seen on Partner Center (None: unknown).
    """

    name: str
    crm: str  # "salesforce" | "dynamics"
    interval_seconds: float
    runs: tuple[RunRecord, ...]
    dead_letters: tuple[DeadLetter, ...]
    lag_seconds: float | None
    token_expires_at: datetime | None = None  # when the Partner Center sign-in lapses if unused
    lease_holder: str | None = None  # the daemon process syncing it, when leases are in use

    def last_finished(self, direction: Direction) -> RunRecord | None:
        """The newest run of ``direction`` that has finished, whatever its outcome."""
        return next(
            (r for r in self.runs if r.direction == direction and r.finished_at is not None),
            None,
        )

    def running(self, direction: Direction) -> RunRecord | None:
        """The run of ``direction`` in flight, if the newest one has not finished."""
        newest = next((r for r in self.runs if r.direction == direction), None)
        return newest if newest is not None and newest.finished_at is None else None

    def last_success(self, direction: Direction) -> datetime | None:
        """``finished_at`` of the newest run of ``direction`` with outcome ok or partial."""
        for run in self.runs:
            if run.direction == direction and run.outcome in SUCCESS_OUTCOMES:
                return run.finished_at
        return None

    def ready(self, now: datetime) -> tuple[bool, str]:
        """Ready while the last cycle of each direction succeeded (ok or partial) and finished
        within three intervals of now; else (False, reason in words).

        A cycle still running does not count either way: what matters is the last one that
        finished. So a backfill that runs longer than three intervals makes the connection
        not ready until it finishes, which is true: its other direction is waiting.
        """
        problems = [p for d in Direction if (p := self._direction_problem(d, now)) is not None]
        return (False, "; ".join(problems)) if problems else (True, READY)

    def _direction_problem(self, direction: Direction, now: datetime) -> str | None:
        run = self.last_finished(direction)
        if run is None or run.finished_at is None:
            return f"no {direction} cycle yet"
        if run.outcome not in SUCCESS_OUTCOMES:
            error = run.errors[0] if run.errors else "no error recorded"
            return f"last {direction} cycle {run.outcome or 'ended'}: {error}"
        limit = timedelta(seconds=STALE_AFTER_INTERVALS * self.interval_seconds)
        age = now - run.finished_at
        if age > limit:
            return (
                f"last {direction} cycle finished {describe_duration(age.total_seconds())} ago, "
                f"more than {STALE_AFTER_INTERVALS} intervals of "
                f"{describe_duration(self.interval_seconds)}"
            )
        return None


class HealthSource(Protocol):
    """Whoever runs the connections: one snapshot per connection, read fresh on each call."""

    def health(self) -> list[ConnectionHealth]: ...


def describe_duration(seconds: float) -> str:
    """``0.42 s``, ``12 s``, ``3 min 5 s``, ``42 min``, ``2 h 5 min``, ``3 d 4 h``: as precise as
    a person needs."""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{seconds:.2g} s" if seconds < 1 else f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if whole < 600:
        rest = whole % 60
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if whole < 3600:
        return f"{minutes} min"
    if whole < 86400:
        rest = minutes % 60
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    rest = hours % 24
    return f"{days} d {rest} h" if rest else f"{days} d"
