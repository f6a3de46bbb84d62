"""Progress of a long cycle (a first backfill of thousands of referrals), as it goes.

:class:`ProgressLog` is a :attr:`RunReport.on_progress <connector.engine.report.RunReport>`
hook for the daemon: a ``cycle_progress`` log event every ``every_s`` seconds while a cycle runs
(none at all for a cycle shorter than that), with the counts so far and the rate.
:class:`TerminalProgress` is one for a person at a terminal (``referral-sync once``): a rich
live display, a line per connection and direction, refreshed a few times a second. Both are
cheap when told: they look at a monotonic clock and return, and do the work only when due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import structlog
from rich.console import Console
from rich.live import Live
from rich.table import Table
from structlog.typing import FilteringBoundLogger

if TYPE_CHECKING:
    from connector.engine.report import RunReport

__all__ = ["ProgressLog", "TerminalProgress"]

MAX_TRACKED = 64
SHOWN = ("received", "created", "updated", "unchanged", "dead_lettered", "crm_id_written_back")


class ProgressLog:
    """Logs ``cycle_progress`` at most every ``every_s`` seconds per running cycle."""

    def __init__(
        self,
        *,
        every_s: float = 10.0,
        logger: FilteringBoundLogger | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every = every_s
        self._log = logger or structlog.get_logger("connector.engine")
        self._monotonic = monotonic
        # (connection, direction, started_at) → (monotonic start, next due): not id(report),
        # which a later report can reuse once this one is gone
        self._due: dict[tuple[str, str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, report: RunReport) -> None:
        now = self._monotonic()
        key = (report.connection, str(report.direction), report.started_at.isoformat())
        with self._lock:
            if key not in self._due:  # a new cycle: nothing to say before every_s
                if len(self._due) > MAX_TRACKED:  # reports are short-lived: forget old ones
                    self._due.clear()
                self._due[key] = (now, now + self._every)
                return
            started, due = self._due[key]
            if now < due:
                return
            self._due[key] = (started, now + self._every)
        elapsed = now - started
        received = report.counts["received"]
        self._log.info(
            "cycle_progress",
            connection=report.connection,
            direction=str(report.direction),
            elapsed_s=round(elapsed, 1),
            per_second=round(received / elapsed, 1) if elapsed > 0 else None,
            **{k: report.counts[k] for k in SHOWN if report.counts[k]},
        )


class TerminalProgress:
    """``with TerminalProgress() as progress: sync.on_progress = progress``: a live table."""

    def __init__(self, console: Console | None = None, *, refresh_s: float = 0.25) -> None:
        self._console = console or Console(stderr=True)
        self._refresh = refresh_s
        self._rows: dict[tuple[str, str], tuple[RunReport, float]] = {}
        self._last = 0.0
        self._lock = threading.Lock()
        self._live = Live(console=self._console, auto_refresh=False, transient=False)

    def __enter__(self) -> TerminalProgress:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._render(force=True)
        self._live.stop()

    def __call__(self, report: RunReport) -> None:
        key = (report.connection, str(report.direction))
        now = time.monotonic()
        with self._lock:
            started = self._rows[key][1] if key in self._rows else now
            self._rows[key] = (report, started)
        self._render(force=False)

    def _render(self, *, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < self._refresh:
                return
            self._last = now
            rows = list(self._rows.items())
        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("connection")
        table.add_column("direction")
        for name in SHOWN:
            table.add_column(name.replace("_", " "), justify="right")
        table.add_column("per second", justify="right")
        for (connection, direction), (report, started) in rows:
            elapsed = max(now - started, 1e-9)
            rate = report.counts["received"] / elapsed
            cells = [f"{report.counts[k]:,}" for k in SHOWN]
            table.add_row(connection, direction, *cells, f"{rate:,.0f}")
        self._live.update(table, refresh=True)
