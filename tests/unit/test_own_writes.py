"""OwnWrites: recognising a webhook that announces our own write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.engine.cycle import OwnWrites

T = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def test_an_event_no_later_than_our_write_is_ours_and_a_later_one_is_not():
    own = OwnWrites()
    own.record("ABC-1", T)

    assert own.covers("abc-1", T)
    assert own.covers("abc-1", T - timedelta(seconds=1))
    assert not own.covers("abc-1", T + timedelta(microseconds=1))
    assert not own.covers("other", T)


def test_it_keeps_only_the_newest_entries():
    own = OwnWrites(limit=2)
    for n in range(3):
        own.record(f"r{n}", T)

    assert not own.covers("r0", T)
    assert own.covers("r1", T)
    assert own.covers("r2", T)
