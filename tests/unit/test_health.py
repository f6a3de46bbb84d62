"""Readiness and last success of a connection, from its recent runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from connector.daemon.health import ConnectionHealth, describe_duration
from connector.ports import Direction, RunRecord

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
INTERVAL = 60.0
IN, OUT = Direction.INBOUND, Direction.OUTBOUND
_ids = count(1)


def run(
    direction: Direction,
    *,
    ago: float,
    outcome: str | None = "ok",
    errors: tuple[str, ...] = (),
    took: float | None = 2.0,
) -> RunRecord:
    """A run that finished ``ago`` seconds before NOW (``took=None``: still running)."""
    finished = NOW - timedelta(seconds=ago)
    return RunRecord(
        id=next(_ids),
        connection="contoso",
        direction=direction,
        started_at=finished - timedelta(seconds=took or 0),
        finished_at=None if took is None else finished,
        outcome=None if took is None else outcome,
        errors=errors,
    )


def health(*runs: RunRecord) -> ConnectionHealth:
    return ConnectionHealth(
        name="contoso",
        crm="salesforce",
        interval_seconds=INTERVAL,
        runs=runs,
        dead_letters=(),
        lag_seconds=None,
    )


READINESS = [
    pytest.param((), False, "no inbound cycle yet; no outbound cycle yet", id="never-ran"),
    pytest.param((run(OUT, ago=5),), False, "no inbound cycle yet", id="one-direction-only"),
    pytest.param(
        (run(IN, ago=5, outcome="failed", errors=("Partner Center said 500",)), run(OUT, ago=6)),
        False,
        "last inbound cycle failed: Partner Center said 500",
        id="failed-last-names-the-error",
    ),
    pytest.param(
        (run(IN, ago=5, outcome="failed"), run(OUT, ago=6)),
        False,
        "last inbound cycle failed: no error recorded",
        id="failed-without-error",
    ),
    pytest.param(
        (run(IN, ago=5, outcome="failed", errors=("boom",)), run(IN, ago=65), run(OUT, ago=6)),
        False,
        "last inbound cycle failed: boom",
        id="failed-after-an-ok-one",
    ),
    pytest.param(
        (run(IN, ago=181), run(OUT, ago=10)),
        False,
        "last inbound cycle finished 3 min 1 s ago, more than 3 intervals of 1 min",
        id="stale-beyond-three-intervals",
    ),
    pytest.param((run(IN, ago=180), run(OUT, ago=10)), True, "ready", id="exactly-three-intervals"),
    pytest.param((run(IN, ago=5), run(OUT, ago=6)), True, "ready", id="ok-recent"),
    pytest.param(
        (run(IN, ago=5, outcome="partial"), run(OUT, ago=6)), True, "ready", id="partial-recent"
    ),
    pytest.param(
        (run(IN, ago=0, took=None), run(IN, ago=30), run(OUT, ago=6)),
        True,
        "ready",
        id="running-cycle-keeps-the-last-finished-one",
    ),
    pytest.param(
        (run(IN, ago=0, took=None), run(OUT, ago=6)),
        False,
        "no inbound cycle yet",
        id="first-cycle-still-running",
    ),
    pytest.param(
        (run(IN, ago=400), run(OUT, ago=5, outcome="failed", errors=("CRM down",))),
        False,
        "last inbound cycle finished 6 min 40 s ago, more than 3 intervals of 1 min; "
        "last outbound cycle failed: CRM down",
        id="both-directions-reported",
    ),
]


@pytest.mark.parametrize(("runs", "ready", "reason"), READINESS)
def test_readiness_follows_the_last_finished_cycle_of_each_direction(runs, ready, reason):
    assert health(*runs).ready(NOW) == (ready, reason)


def test_last_success_is_the_newest_ok_or_partial_run_of_that_direction():
    newest_ok = run(IN, ago=70, outcome="partial")
    runs = (
        run(IN, ago=0, took=None),
        run(IN, ago=10, outcome="failed", errors=("x",)),
        run(OUT, ago=20),
        newest_ok,
        run(IN, ago=130),
    )
    assert health(*runs).last_success(IN) == newest_ok.finished_at
    assert health(*runs).last_success(OUT) == NOW - timedelta(seconds=20)


def test_last_success_is_none_when_every_run_failed():
    assert health(run(IN, ago=5, outcome="failed")).last_success(IN) is None
    assert health().last_success(OUT) is None


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.42, "0.42 s"),
        (2.74, "2.7 s"),
        (12.4, "12 s"),
        (60, "1 min"),
        (181, "3 min 1 s"),
        (2520, "42 min"),
        (7500, "2 h 5 min"),
        (7200, "2 h"),
        (273_600, "3 d 4 h"),
        (-12, "12 s"),
    ],
)
def test_durations_read_as_precisely_as_a_person_needs(seconds, words):
    assert describe_duration(seconds) == words
