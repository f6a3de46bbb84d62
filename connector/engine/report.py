"""What one cycle did: counts, dead letters, conflicts, and (plan mode) what it would write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, cast

from connector.mapping.values import wire_value
from connector.model import Referral
from connector.ports import Direction

__all__ = ["PlannedChange", "RunReport", "referral_payload"]


def referral_payload(referral: Referral) -> dict[str, Any]:
    """The canonical referral as JSON-able data, for a dead letter."""
    return cast("dict[str, Any]", wire_value(asdict(referral)))


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedChange:
    """One write a cycle would make: the record, the action and the values it would send."""

    record_id: str
    action: str  # create | update | accept | decline | win | lose | edit
    values: dict[str, Any]


@dataclass(slots=True, kw_only=True)
class RunReport:
    """Filled in by one cycle; ``counts`` keys are facts (``received``, ``created``, …)."""

    connection: str
    direction: Direction
    started_at: datetime
    plan: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    planned: list[PlannedChange] = field(default_factory=list)
    finished_at: datetime | None = None
    failed: bool = False
    on_progress: Callable[[RunReport], None] | None = field(default=None, repr=False, compare=False)
    """Told after every count (a progress bar, periodic log lines); it must be cheap."""

    def count(self, fact: str, n: int = 1) -> None:
        self.counts[fact] += n
        if self.on_progress is not None:
            self.on_progress(self)

    @property
    def outcome(self) -> str:
        if self.failed:
            return "failed"
        return "partial" if self.counts["dead_lettered"] else "ok"

    def summary(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "direction": str(self.direction),
            "outcome": self.outcome,
            "plan": self.plan,
            **dict(sorted(self.counts.items())),
        }
