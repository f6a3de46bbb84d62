"""``referral-sync run``: every connection's cycle on a schedule, until SIGTERM or SIGINT.

One apscheduler job per connection runs its cycle (outbound, then inbound: the order the
terminal-state rule relies on) every ``interval_seconds``, with a little jitter, never two at
once (``max_instances=1``) and without a backlog of missed runs (``coalesce``). Connections are
isolated: one that fails is recorded and retried at its next interval while the others go on.
A state store failure stops the daemon (exit 1) rather than let it lose track.

Webhook events (:meth:`Daemon.on_webhook`) are queued and synced at once by a worker thread:
each named referral is read afresh and put through the inbound direction, under the same lock
per connection as the scheduled cycle, so the two never write at the same time. The poll goes
on regardless and catches any event that was lost.

On SIGTERM or SIGINT the scheduler stops taking new runs; the cycle in flight finishes the page
in hand, records it and returns (a long backfill resumes there next start), then the daemon
exits 0.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from structlog.typing import FilteringBoundLogger

from connector.engine import CycleResult, RunReport
from connector.errors import PermanentError, ReferralSyncError, StateError
from connector.ports import Clock, Direction
from connector.webhooks import WebhookEvent
from connector.wiring import Connection

__all__ = ["Daemon"]

JITTER_S = 2


class Daemon:
    def __init__(
        self,
        connections: Sequence[Connection],
        *,
        clock: Clock,
        on_cycle: Callable[[Connection, CycleResult], None] | None = None,
        on_webhook_sync: Callable[[Connection, str, RunReport], None] | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self.connections = list(connections)
        self._clock = clock
        self._on_cycle = on_cycle
        self._on_webhook_sync = on_webhook_sync
        self._log = logger or structlog.get_logger("connector.daemon")
        self._stop = threading.Event()
        self._halted: BaseException | None = None
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._locks = {c.settings.name: threading.Lock() for c in self.connections}
        self._events: queue.Queue[WebhookEvent | None] = queue.Queue(maxsize=10_000)
        self._worker = threading.Thread(target=self._drain_events, name="webhooks", daemon=True)

    def start(self) -> None:
        first = self._clock.now()
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
        self._log.info("daemon_started", connections=[c.settings.name for c in self.connections])

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
        self._log.info("daemon_stopped", halted=self._halted is not None)
        return 1 if self._halted is not None else 0

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self._log.info("daemon_stopping", signal=signal.Signals(number).name)
        self._stop.set()

    def _cycle(self, connection: Connection) -> None:
        if self._stop.is_set():
            return
        name = connection.settings.name
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

    def on_webhook(self, event: WebhookEvent) -> None:
        """Queue the referral of a verified event (never blocks the HTTP handler)."""
        try:
            self._events.put_nowait(event)
        except queue.Full:  # the poll will catch it; say so
            self._log.warning("webhook_dropped_queue_full", referral_id=event.referral_id)

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

    def _sync_events(self, events: list[WebhookEvent]) -> None:
        newest: dict[str, WebhookEvent] = {}
        for event in events:
            known = newest.get(event.referral_id)
            if known is None or event.changed_at > known.changed_at:
                newest[event.referral_id] = event
        for connection in self.connections:
            for event in sorted(newest.values(), key=lambda e: e.referral_id):
                self._sync_event(connection, event)

    def _sync_event(self, connection: Connection, event: WebhookEvent) -> None:
        name, referral_id = connection.settings.name, event.referral_id
        report = RunReport(
            connection=name, direction=Direction.INBOUND, started_at=self._clock.now()
        )
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
