"""What both directions' cycles are built from: the connection's parts and a stop flag."""

from __future__ import annotations

import threading
from typing import ClassVar

import structlog
from structlog.typing import FilteringBoundLogger

from connector.mapping import MappingSpec
from connector.ports import Clock, CrmAdapter, Direction, PartnerCenterSource, StateStore

__all__ = ["Cycle"]


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
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self.connection = connection
        self.stopping = threading.Event()
        self._source = source
        self._crm = crm
        self._store = store
        self._spec = spec
        self._clock = clock
        base = logger or structlog.get_logger("connector.engine")
        self._log = base.bind(connection=connection, direction=str(self.direction))
