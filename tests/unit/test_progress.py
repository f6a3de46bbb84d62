"""Progress of a long cycle: a log line every so often for ops, a live table for a person."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import structlog
from rich.console import Console

from connector.engine.report import RunReport
from connector.observe.progress import ProgressLog, TerminalProgress
from connector.ports import Direction


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


STARTS = iter(range(1, 10_000))


def report(progress) -> RunReport:
    """A new cycle's report: each starts a second after the one before."""
    return RunReport(
        connection="contoso",
        direction=Direction.INBOUND,
        started_at=datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=next(STARTS)),
        on_progress=progress,
    )


def test_a_long_cycle_logs_its_progress_every_interval_and_a_short_one_not_at_all():
    ticks = Ticks()
    with structlog.testing.capture_logs() as logs:
        progress = ProgressLog(every_s=10, monotonic=ticks)
        short = report(progress)
        short.count("received", 100)
        short.count("created", 100)  # done within a second: nothing said

        long = report(progress)
        long.count("received", 100)
        ticks.now += 5
        long.count("received", 100)  # 5 s in: not yet
        ticks.now += 5
        long.count("created", 150)  # 10 s in: one line
        long.count("created", 50)  # the same instant: no second line
        ticks.now += 10
        long.count("received", 200)  # 20 s in: the next line

    lines = [e for e in logs if e["event"] == "cycle_progress"]
    assert [(e["elapsed_s"], e["received"], e.get("created")) for e in lines] == [
        (10.0, 200, 150),
        (20.0, 400, 200),
    ]
    assert lines[0]["connection"] == "contoso"
    assert lines[0]["direction"] == "inbound"
    assert lines[1]["per_second"] == 20.0


def test_a_short_cycle_after_a_long_wait_is_not_taken_for_a_long_one():
    ticks = Ticks()
    with structlog.testing.capture_logs() as logs:
        progress = ProgressLog(every_s=10, monotonic=ticks)
        report(progress).count("received", 1)
        ticks.now += 60  # an idle minute between cycles
        later = report(progress)  # a new report (it may even reuse the old one's memory)
        later.count("received", 1)
        later.count("unchanged", 1)
    assert [e for e in logs if e["event"] == "cycle_progress"] == []


def test_the_terminal_display_shows_each_cycle_with_its_counts():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    with TerminalProgress(console, refresh_s=0) as progress:
        inbound = report(progress)
        inbound.count("received", 1200)
        inbound.count("created", 1150)
        inbound.count("dead_lettered", 3)

    text = out.getvalue()
    assert "contoso" in text
    assert "inbound" in text
    assert "1,200" in text
    assert "1,150" in text
    assert "dead lettered" in text
