"""One connection's sync: the inbound then the outbound cycle, each recorded as a run.

A cycle that meets a transient fault (the request layer has already retried it) or a refused
login ends early and is recorded as ``failed`` with the reason and what it had done; the next
scheduled cycle is the outer retry, and since nothing unfinished was recorded it starts where
this one really stopped. A state store failure (``StateError``) is not caught: the daemon
halts rather than lose track.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from structlog.typing import FilteringBoundLogger

from connector.engine.cycle import OwnWrites
from connector.engine.inbound import InboundCycle
from connector.engine.outbound import OutboundCycle
from connector.engine.report import RunReport
from connector.errors import AuthError, TransientError
from connector.mapping import MappingSpec
from connector.ports import Clock, CrmAdapter, PartnerCenterSource, StateStore

__all__ = ["ConnectionSync", "CycleResult"]


@dataclass(frozen=True, slots=True)
class CycleResult:
    inbound: RunReport
    outbound: RunReport


class ConnectionSync:
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
        self._store = store
        self._clock = clock
        base = logger or structlog.get_logger("connector.engine")
        self._log = base.bind(connection=connection)
        self.own_writes = OwnWrites()
        self.on_progress: Callable[[RunReport], None] | None = None
        """Handed to each cycle's report: told as records are counted (see RunReport)."""
        self.inbound = InboundCycle(
            connection, source=source, crm=crm, store=store, spec=spec, clock=clock,
            own_writes=self.own_writes, logger=base,
        )  # fmt: skip
        self.outbound = OutboundCycle(
            connection, source=source, crm=crm, store=store, spec=spec, clock=clock,
            own_writes=self.own_writes, logger=base,
        )  # fmt: skip

    def stop_soon(self) -> None:
        """The cycle in flight stops after the page it is on (recorded); no new one starts
        before :meth:`resume`."""
        self.inbound.stopping.set()
        self.outbound.stopping.set()

    def resume(self) -> None:
        self.inbound.stopping.clear()
        self.outbound.stopping.clear()

    def run_cycle(self, *, plan: bool = False) -> CycleResult:
        """Outbound first, then inbound.

        Reading the CRM first means the engine knows whether an opportunity is still open
        before it applies a referral that Partner Center closed on its side: an opportunity the
        partner already won or lost is then not re-closed (the conflict is logged instead).
        """
        outbound = self._run(self.outbound, plan=plan)
        inbound = self._run(self.inbound, plan=plan)
        return CycleResult(inbound=inbound, outbound=outbound)

    def _run(self, cycle: InboundCycle | OutboundCycle, *, plan: bool) -> RunReport:
        started = self._clock.now()
        report = RunReport(
            connection=self.connection,
            direction=cycle.direction,
            started_at=started,
            plan=plan,
            on_progress=self.on_progress,
        )
        run_id = None if plan else self._store.start_run(self.connection, cycle.direction, started)
        try:
            cycle.run(report)
        except (TransientError, AuthError) as exc:
            report.failed = True
            report.errors.append(f"{type(exc).__name__}: {exc}")
            self._log.warning(
                "cycle_failed",
                direction=str(cycle.direction),
                error=str(exc),
                error_type=type(exc).__name__,
            )
        report.finished_at = self._clock.now()
        if run_id is not None:
            self._store.finish_run(
                run_id,
                report.finished_at,
                outcome=report.outcome,
                counts=dict(report.counts),
                errors=report.errors,
            )
        self._log.info("cycle_finished", **report.summary())
        return report
