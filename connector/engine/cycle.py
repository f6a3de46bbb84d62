"""What both directions' cycles are built from: the connection's parts and a stop flag."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import ClassVar

import structlog
from structlog.typing import FilteringBoundLogger

from connector.mapping import MappingSpec
from connector.ports import Clock, CrmAdapter, Direction, PartnerCenterSource, StateStore

__all__ = ["Cycle", "OwnWrites", "crm_max_batch"]


def crm_max_batch(crm: object) -> int:
    """How many writes the CRM adapter takes in one upsert at best (its ``max_batch``: the
    inbound cycle gathers pages up to it); 0 if it names none: one page, one upsert."""
    value = getattr(crm, "max_batch", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class OwnWrites:
    """When we last wrote each referral (its new ``updatedDateTime``), so a webhook announcing
    our own write is recognised and not synced back. Bounded: the oldest entries go first."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._at: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def record(self, referral_id: str, updated_at: datetime) -> None:
        with self._lock:
            key = referral_id.casefold()
            self._at.pop(key, None)
            self._at[key] = updated_at
            while len(self._at) > self._limit:
                self._at.pop(next(iter(self._at)))

    def covers(self, referral_id: str, changed_at: datetime) -> bool:
        """True if ``changed_at`` is no later than our own last write of the referral."""
        with self._lock:
            mine = self._at.get(referral_id.casefold())
        return mine is not None and changed_at <= mine


class Cycle:
    """One direction of one connection. ``stopping`` set: finish the page in hand, return."""

    direction: ClassVar[Direction]

    def __init__(
        self,
        connection: str,
        *,
        source: PartnerCenterSource,
        crm: CrmAdapter,
        store: StateStore,
        spec: MappingSpec,
        clock: Clock,
        own_writes: OwnWrites | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self.connection = connection
        self.own_writes = own_writes or OwnWrites()
        self.stopping = threading.Event()
        self._source = source
        self._crm = crm
        self._store = store
        self._spec = spec
        self._clock = clock
        base = logger or structlog.get_logger("connector.engine")
        self._log = base.bind(connection=connection, direction=str(self.direction))
