"""The sandbox clock: faster than real time, pushed forward on demand, never backwards."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.clock import SandboxClock

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def test_now_is_the_start_time_at_first():
    clock = SandboxClock(start=START, monotonic=FakeMonotonic())
    assert clock.now() == START


def test_now_is_aware_utc_by_default():
    now = SandboxClock().now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_speed_multiplies_real_elapsed_time():
    mono = FakeMonotonic()
    clock = SandboxClock(speed=60, start=START, monotonic=mono)
    mono.value += 2.5
    assert clock.now() == START + timedelta(minutes=2.5)


def test_advance_jumps_forward_and_keeps_running():
    mono = FakeMonotonic()
    clock = SandboxClock(speed=2, start=START, monotonic=mono)
    clock.advance(timedelta(days=14))
    mono.value += 1
    assert clock.now() == START + timedelta(days=14, seconds=2)


def test_advance_refuses_to_go_backwards():
    clock = SandboxClock(start=START)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))


def test_set_speed_changes_the_rate_without_a_jump():
    mono = FakeMonotonic()
    clock = SandboxClock(speed=1, start=START, monotonic=mono)
    mono.value += 10
    clock.set_speed(100)
    assert clock.now() == START + timedelta(seconds=10)
    mono.value += 1
    assert clock.now() == START + timedelta(seconds=110)


@pytest.mark.parametrize("speed", [0, -1])
def test_speed_must_be_positive(speed):
    with pytest.raises(ValueError, match="positive"):
        SandboxClock(speed=speed)


def test_naive_start_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        SandboxClock(start=datetime(2026, 1, 1))  # noqa: DTZ001 (the point of the test)


def test_real_clock_moves_forward_under_concurrent_advances():
    clock = SandboxClock(speed=1000)
    before = clock.now()
    threads = [
        threading.Thread(target=clock.advance, args=(timedelta(seconds=1),)) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.now() >= before + timedelta(seconds=20)
