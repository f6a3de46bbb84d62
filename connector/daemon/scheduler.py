"""``referral-sync run``: every connection's cycle on a schedule, until SIGTERM or SIGINT.

One apscheduler job per connection runs its cycle (outbound, then inbound: the order the
terminal-state rule relies on) every ``interval_seconds``, with a little jitter, never two at
once (``max_instances=1``) and without a backlog of missed runs (``coalesce``). Connections are
isolated: one that fails is recorded and retried at its next interval while the others go on.
A run skipped because the cycle before it is still going (a long backfill) is expected, so
apscheduler's warning for it, one an interval, is not logged (``cycle_progress`` reports the
long cycle instead).
A state store failure stops the daemon (exit 1) rather than let it lose track.

Webhook events (:meth:`Daemon.on_webhook`) are queued and synced at once by a worker thread:
each named referral is read afresh and put through the inbound direction of the connection the
event came in for (every connection when none is named), under the same lock per connection as
the scheduled cycle, so the two never write at the same time. The poll goes on regardless and
catches any event that was lost.

On SIGTERM or SIGINT the scheduler stops taking new runs; the cycle in flight finishes the page
in hand, records it and returns (a long backfill resumes there next start), then the daemon
exits 0.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from structlog.typing import FilteringBoundLogger

from connector.daemon.leases import LeaseKeeper
from connector.engine import CycleResult, RunReport
from connector.errors import PermanentError, ReferralSyncError, StateError
from connector.ports import Clock, Direction
from connector.webhooks import WebhookEvent
from connector.wiring import Connection

__all__ = ["Daemon"]

JITTER_S = 2

_SKIPPED_RUN = "maximum number of running instances reached"


class _SkippedRunFilter(logging.Filter):
    """Drops apscheduler's "skipped: maximum number of running instances reached"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _SKIPPED_RUN not in str(record.msg)


def _quiet_skipped_runs() -> None:
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkippedRunFilter) for f in scheduler_log.filters):
        scheduler_log.addFilter(_SkippedRunFilter())


_Queued = tuple[str | None, WebhookEvent]  # (the connection it came in for or None: all, event)


class Daemon:
    def __init__(
        self,
        connections: Sequence[Connection],
        *,
        clock: Clock,
        on_cycle: Callable[[Connection, CycleResult], None] | None = None,
        on_webhook_sync: Callable[[Connection, str, RunReport], None] | None = None,
        leases: LeaseKeeper | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self.connections = list(connections)
        self.leases = leases
        if leases is not None:
            leases.on_gained = self._lease_gained
            leases.on_lost = self._lease_lost
        self._clock = clock
        self._on_cycle = on_cycle
        self._on_webhook_sync = on_webhook_sync
        self._log = logger or structlog.get_logger("connector.daemon")
        self._stop = threading.Event()
        self._halted: BaseException | None = None
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._locks = {c.settings.name: threading.Lock() for c in self.connections}
        self._events: queue.Queue[_Queued | None] = queue.Queue(maxsize=10_000)
        self._worker = threading.Thread(target=self._drain_events, name="webhooks", daemon=True)

    def start(self) -> None:
        _quiet_skipped_runs()
        first = _wall_now()  # apscheduler keeps the wall clock, whatever clock the engine has
        for number, connection in enumerate(self.connections):
            interval = connection.settings.interval_seconds
            self._scheduler.add_job(
                self._cycle,
                "interval",
                seconds=interval,
                jitter=min(JITTER_S, interval / 10),
                args=[connection],
                id=connection.settings.name,
                max_instances=1,
                coalesce=True,
                next_run_time=first + timedelta(seconds=number * 0.5),  # staggered start
            )
        self._scheduler.start()
        self._worker.start()
        if self.leases is not None:
            self.leases.start()
        self._log.info(
            "daemon_started",
            connections=[c.settings.name for c in self.connections],
            holder=None if self.leases is None else self.leases.holder,
        )

    def run_until_stopped(
        self, *, install_signals: bool = True, duration: float | None = None
    ) -> int:
        """Block until a signal (or ``duration`` seconds); the exit status."""
        if install_signals:
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, self._on_signal)
        self.start()
        self._stop.wait(timeout=duration)
        return self.stop()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> int:
        self._stop.set()
        for connection in self.connections:
            connection.sync.stop_soon()  # a long backfill stops after the page in hand
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)  # the cycle in flight finishes and records
        if self._worker.is_alive():
            self._events.put(None)
            self._worker.join(timeout=30)
        if self.leases is not None:
            self.leases.stop(release=True)  # another replica takes over at once
        self._log.info("daemon_stopped", halted=self._halted is not None)
        return 1 if self._halted is not None else 0

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self._log.info("daemon_stopping", signal=signal.Signals(number).name)
        self._stop.set()

    # -- leases -----------------------------------------------------------------------------------

    def _leads(self, name: str) -> bool:
        return self.leases is None or self.leases.holds(name)

    def _lease_gained(self, name: str) -> None:
        if self._stop.is_set():
            return
        connection = next(c for c in self.connections if c.settings.name == name)
        connection.sync.resume()
        if self._scheduler.running:  # run its cycle now, not an interval later
            self._scheduler.modify_job(name, next_run_time=_wall_now())

    def _lease_lost(self, name: str) -> None:
        connection = next(c for c in self.connections if c.settings.name == name)
        connection.sync.stop_soon()  # the cycle in flight stops after the page in hand

    # -- cycles -------------------------------------------------------------------------------

    def _cycle(self, connection: Connection) -> None:
        if self._stop.is_set():
            return
        name = connection.settings.name
        if not self._leads(name):
            return  # another replica holds this connection's lease
        try:
            with self._locks[name]:
                result = connection.sync.run_cycle()
        except StateError as exc:
            self._halted = exc
            self._log.error("daemon_halted", connection=name, error=str(exc))
            self._stop.set()
            return
        except ReferralSyncError as exc:  # e.g. a mapping that no longer fits: next interval
            self._log.error(
                "cycle_error", connection=name, error=str(exc), error_type=type(exc).__name__
            )
            return
        if self._on_cycle is not None:
            self._on_cycle(connection, result)

    # -- webhooks -------------------------------------------------------------------------------

    def on_webhook(self, event: WebhookEvent, connection: str | None = None) -> None:
        """Queue the referral of a verified event for ``connection`` (every connection when
        ``None``); never blocks the HTTP handler."""
        if connection is not None and connection not in self._locks:
            raise KeyError(f"no connection named {connection!r}")
        try:
            self._events.put_nowait((connection, event))
        except queue.Full:  # the poll will catch it; say so
            self._log.warning(
                "webhook_dropped_queue_full", connection=connection, referral_id=event.referral_id
            )

    def webhook_receiver(self, connection: str) -> Callable[[WebhookEvent], None]:
        """What the webhook handler of ``connection`` hands its verified events to."""
        if connection not in self._locks:
            raise KeyError(f"no connection named {connection!r}")
        return lambda event: self.on_webhook(event, connection)

    def _drain_events(self) -> None:
        while True:
            first = self._events.get()
            if first is None or self._stop.is_set():
                return
            events = [first]
            while not self._events.empty():  # a burst becomes one pass
                more = self._events.get_nowait()
                if more is None:
                    self._sync_events(events)
                    return
                events.append(more)
            self._sync_events(events)

    def _sync_events(self, events: list[_Queued]) -> None:
        newest: dict[tuple[str | None, str], WebhookEvent] = {}
        for target, event in events:
            known = newest.get((target, event.referral_id))
            if known is None or event.changed_at > known.changed_at:
                newest[(target, event.referral_id)] = event
        for connection in self.connections:
            name = connection.settings.name
            mine = [e for (target, _), e in newest.items() if target in (None, name)]
            for event in sorted(mine, key=lambda e: e.referral_id):
                self._sync_event(connection, event)

    def _sync_event(self, connection: Connection, event: WebhookEvent) -> None:
        name, referral_id = connection.settings.name, event.referral_id
        report = RunReport(
            connection=name, direction=Direction.INBOUND, started_at=self._clock.now()
        )
        if not self._leads(name):
            return  # the replica holding the lease syncs it (its own webhook, or its poll)
        try:
            with self._locks[name]:  # after a cycle in flight has recorded its own writes
                if connection.sync.own_writes.covers(referral_id, event.changed_at):
                    return  # our own write coming back: nothing to sync
                connection.sync.inbound.replay([referral_id], report)
        except PermanentError:
            return  # not this connection's referral (or gone): nothing to do
        except ReferralSyncError as exc:  # transient: the next poll catches it
            self._log.warning(
                "webhook_sync_failed", connection=name, referral_id=referral_id, error=str(exc)
            )
            return
        done = {k: v for k, v in report.counts.items() if v}
        self._log.info("webhook_synced", connection=name, referral_id=referral_id, **done)
        if self._on_webhook_sync is not None:
            self._on_webhook_sync(connection, referral_id, report)

    def next_runs(self) -> dict[str, datetime | None]:
        jobs: list[Any] = self._scheduler.get_jobs()
        return {job.id: job.next_run_time for job in jobs}


def _wall_now() -> datetime:
    """Now by the wall clock, which apscheduler's triggers run on (the injected clock is the
    engine's: a sandbox's can run fast or be moved ahead)."""
    return datetime.now(UTC)
