"""The status as data (``/status.json``, ``/readyz``) and the words the page shows for times.

The JSON holds what the page shows: per connection its readiness and reason, lag, last success
per direction, recent runs and unresolved dead letters. Dead letters carry their reason and
never their payload (it can hold customer contact data): ``referral-sync dlq show`` is the
place to read a payload, on the machine that holds the state store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connector.daemon.health import ConnectionHealth, describe_duration
from connector.ports import DeadLetter, Direction, RunRecord

__all__ = ["as_json", "describe_time", "readiness", "summary"]


def readiness(connections: list[ConnectionHealth], now: datetime) -> tuple[bool, dict[str, str]]:
    """Whether every connection is ready (and there is at least one), and each one's reason."""
    reasons: dict[str, str] = {}
    ready = bool(connections)
    for health in connections:
        ok, reason = health.ready(now)
        ready = ready and ok
        reasons[health.name] = reason
    return ready, reasons


def summary(connections: list[ConnectionHealth], now: datetime) -> str:
    """One line for the page's header: how many connections are ready."""
    if not connections:
        return "No connections"
    waiting = sum(1 for c in connections if not c.ready(now)[0])
    total = len(connections)
    noun = "connection" if total == 1 else "connections"
    if waiting == 0:
        return f"All {total} {noun} ready" if total > 1 else "The connection is ready"
    return f"{waiting} of {total} {noun} not ready"


def as_json(connections: list[ConnectionHealth], now: datetime) -> dict[str, Any]:
    ready, _ = readiness(connections, now)
    return {
        "generated_at": _iso(now),
        "ready": ready,
        "connections": [_connection(c, now) for c in connections],
    }


def _connection(health: ConnectionHealth, now: datetime) -> dict[str, Any]:
    ready, reason = health.ready(now)
    return {
        "name": health.name,
        "crm": health.crm,
        "interval_seconds": health.interval_seconds,
        "ready": ready,
        "reason": reason,
        "lag_seconds": health.lag_seconds,
        "token_expires_at": _iso(health.token_expires_at),
        "lease_holder": health.lease_holder,
        "last_success": {str(d): _iso(health.last_success(d)) for d in Direction},
        "runs": [_run(r) for r in health.runs],
        "dead_letters": [_dead_letter(d) for d in health.dead_letters],
    }


def _run(run: RunRecord) -> dict[str, Any]:
    took = None if run.finished_at is None else (run.finished_at - run.started_at).total_seconds()
    return {
        "id": run.id,
        "direction": str(run.direction),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_seconds": took,
        "outcome": run.outcome,
        "counts": dict(run.counts),
        "errors": list(run.errors),
    }


def _dead_letter(letter: DeadLetter) -> dict[str, Any]:
    return {  # no payload, on purpose (see the module docstring)
        "id": letter.id,
        "direction": str(letter.direction),
        "record_id": letter.record_id,
        "attempts": letter.attempts,
        "first_seen": _iso(letter.first_seen),
        "last_seen": _iso(letter.last_seen),
        "reason": letter.reason,
    }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def describe_time(at: datetime, now: datetime) -> tuple[str, str]:
    """``("2024-05-01 11:57:03 UTC", "3 min ago")`` (or ``"in 5 min"`` for a time ahead)."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = (now - at).total_seconds()
    if abs(delta) < 1:
        return stamp, "just now"
    words = describe_duration(delta)
    return stamp, f"{words} ago" if delta > 0 else f"in {words}"
