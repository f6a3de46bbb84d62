"""The Salesforce simulator's SystemModstamp order: ranges read through it answer as a scan would.

The reference is the same query run against a source that reads every record (``records()``)
and tests each against the whole ``WHERE``: the path a query took before the order existed.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.clock import SandboxClock
from sandbox.salesforce import OrgSchema, RecordStore
from sandbox.salesforce.soql import execute
from sandbox.salesforce.values import parse_datetime

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
OPP = "Opportunity"
ZONES = (UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30)))


class Scan:
    """The store, read the slow way: every record, whatever ids the query narrowed to."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def records_with_ids(
        self, sobject: str, ids: Any, *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        return self.store.records(sobject, include_deleted=include_deleted)


class Counting:
    """The store, counting what a query reads."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.scans = 0
        self.ids_read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        self.scans += 1
        return self.store.records(sobject, include_deleted=include_deleted)

    def records_with_ids(
        self, sobject: str, ids: Any, *, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        ids = list(ids)
        self.ids_read += len(ids)
        return self.store.records_with_ids(sobject, ids, include_deleted=include_deleted)


def new_store() -> tuple[RecordStore, SandboxClock]:
    clock = SandboxClock(start=NOW, monotonic=lambda: 0.0)
    return RecordStore(OrgSchema(), clock), clock


def opp(name: str, amount: int = 0) -> dict[str, Any]:
    return {"Name": name, "StageName": "Prospecting", "CloseDate": "2026-12-31", "Amount": amount}


def run(source: Any, text: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
    store = source.store if isinstance(source, Scan | Counting) else source
    result = execute(
        text, store.org, source, now=NOW, version="62.0", include_deleted=include_deleted
    )
    return result.records


def literal(moment: datetime, zone: timezone = UTC) -> str:
    """``moment`` as a SOQL datetime literal, in ``zone``'s offset."""
    return moment.astimezone(zone).isoformat(timespec="milliseconds")


def stamps(store: RecordStore) -> list[datetime]:
    raws = store.records(OPP, include_deleted=True)
    return sorted({parse_datetime(r["SystemModstamp"]) for r in raws} - {None})


def live(store: RecordStore) -> list[str]:
    return [r["Id"] for r in store.records(OPP)]


# -- a script of writes ------------------------------------------------------------------------

step = st.one_of(
    st.tuples(st.just("create"), st.integers(0, 2)),
    st.tuples(st.just("update"), st.integers(0, 40), st.integers(0, 2)),
    st.tuples(st.just("delete"), st.integers(0, 40), st.integers(0, 2)),
    st.tuples(st.just("rollback"), st.integers(0, 40), st.integers(0, 2)),
)


class Undone(Exception):
    """Raised inside an atomic block to roll it back."""


def play(store: RecordStore, clock: SandboxClock, steps: list[tuple[Any, ...]]) -> None:
    """Writes whose stamps tie (no time passes) or move (a later update or delete); rolled
    back blocks create, update and delete before they are undone."""
    for n, (kind, *args) in enumerate(steps):
        ids = live(store)
        if kind == "create":
            store.create(OPP, opp(f"O{n}", n % 7))
        elif kind == "update" and ids:
            store.update(OPP, ids[args[0] % len(ids)], {"Amount": n})
        elif kind == "delete" and ids:
            store.delete(OPP, ids[args[0] % len(ids)])
        elif kind == "rollback":
            with contextlib.suppress(Undone), store.atomic():
                clock.advance(timedelta(milliseconds=5))
                store.create(OPP, opp(f"gone{n}"))
                if ids:
                    store.update(OPP, ids[args[0] % len(ids)], {"Amount": -1})
                    store.delete(OPP, ids[-1 - args[0] % len(ids)])
                raise Undone
        clock.advance(timedelta(milliseconds=args[-1]))


query = st.tuples(
    st.sampled_from([">=", ">", "<=", "<", "="]),
    st.integers(0, 60),  # which stored stamp the literal is near
    st.integers(-1, 1),  # milliseconds off it (0: a tie)
    st.sampled_from(ZONES),
    st.sampled_from(["", " AND Amount > 2", " OR Name = 'O1'", " AND Name IN ('O0', 'O3')"]),
    st.sampled_from(["", " ORDER BY SystemModstamp, Id", " ORDER BY SystemModstamp DESC"]),
    st.booleans(),  # queryAll
)


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=40), st.lists(query, min_size=1, max_size=8))
def test_a_stamp_range_answers_as_a_full_scan_does(steps, queries):
    store, clock = new_store()
    play(store, clock, steps)
    known = stamps(store) or [NOW]
    for op, near, off, zone, more, order, include_deleted in queries:
        moment = known[near % len(known)] + timedelta(milliseconds=off)
        where = f"SystemModstamp {op} {literal(moment, zone)}{more}"
        text = f"SELECT Id, Name, SystemModstamp, IsDeleted FROM Opportunity WHERE {where}{order}"  # noqa: S608 - SOQL under test
        got = run(store, text, include_deleted=include_deleted)
        assert got == run(Scan(store), text, include_deleted=include_deleted), text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(step, max_size=40),
    st.integers(0, 60),
    st.integers(0, 60),
    st.booleans(),
    st.booleans(),
)
def test_the_stamp_order_holds_every_record_by_its_current_stamp(
    steps, first, last, start_inclusive, end_inclusive
):
    store, clock = new_store()
    play(store, clock, steps)
    known = stamps(store) or [NOW]
    start, end = sorted([known[first % len(known)], known[last % len(known)]])
    raws = store.records(OPP, include_deleted=True)
    stamp_of = {r["Id"]: parse_datetime(r["SystemModstamp"]) for r in raws}

    def inside(stamp: datetime) -> bool:
        above = stamp >= start if start_inclusive else stamp > start
        below = stamp <= end if end_inclusive else stamp < end
        return above and below

    expected = {i for i, stamp in stamp_of.items() if inside(stamp)}
    found = store.modified_between(
        OPP, start, end, start_inclusive=start_inclusive, end_inclusive=end_inclusive
    )
    assert found == expected
    assert store.modified_between(OPP, None) == set(stamp_of)
    in_window = [r["Id"] for r in raws if start <= stamp_of[r["Id"]] < end]
    assert store.updated_ids(OPP, start, end) == in_window


# -- cases by name -----------------------------------------------------------------------------


def test_ties_at_the_bound_are_in_for_at_or_after_and_out_for_after():
    store, clock = new_store()
    before = store.create(OPP, opp("before"))
    clock.advance(timedelta(seconds=1))
    twins = [store.create(OPP, opp("twin a")), store.create(OPP, opp("twin b"))]
    bound = literal(clock.now())
    head = "SELECT Id FROM Opportunity WHERE SystemModstamp"
    assert [r["Id"] for r in run(store, f"{head} >= {bound}")] == twins
    assert run(store, f"{head} > {bound}") == []
    assert [r["Id"] for r in run(store, f"{head} < {bound}")] == [before]


def test_an_updated_record_moves_to_its_new_stamp():
    store, clock = new_store()
    first = store.create(OPP, opp("first"))
    clock.advance(timedelta(seconds=1))
    second = store.create(OPP, opp("second"))
    clock.advance(timedelta(seconds=1))
    bound = literal(clock.now())
    store.update(OPP, first, {"Amount": 5})
    text = f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {bound}"  # noqa: S608 - SOQL under test
    assert [r["Id"] for r in run(store, text)] == [first]
    assert second not in store.modified_between(OPP, clock.now())
    clock.advance(timedelta(seconds=1))
    store.update(OPP, second, {"Amount": 6})
    clock.advance(timedelta(seconds=1))
    store.update(OPP, first, {"Amount": 7})  # stamps now: second, then first
    assert store.updated_ids(OPP, NOW, clock.now() + timedelta(hours=1)) == [first, second]


def test_a_deleted_record_in_range_is_seen_by_query_all_only():
    store, clock = new_store()
    bound = literal(clock.now())
    gone = store.create(OPP, opp("gone"))
    clock.advance(timedelta(seconds=1))
    store.delete(OPP, gone)
    text = f"SELECT Id, IsDeleted FROM Opportunity WHERE SystemModstamp >= {bound}"  # noqa: S608 - SOQL under test
    assert run(store, text) == []
    assert [r["IsDeleted"] for r in run(store, text, include_deleted=True)] == [True]


def test_a_rolled_back_block_leaves_the_stamp_order_as_it_was():
    store, clock = new_store()
    kept = store.create(OPP, opp("kept"))
    other = store.create(OPP, opp("other"))
    clock.advance(timedelta(seconds=1))
    since = clock.now()
    before = store.modified_between(OPP, None)

    def undone() -> None:
        with store.atomic():
            store.create(OPP, opp("gone"))
            store.update(OPP, kept, {"Amount": 9})
            store.delete(OPP, other)
            raise Undone

    with pytest.raises(Undone):
        undone()
    assert store.modified_between(OPP, None) == before
    assert store.modified_between(OPP, since) == set()
    assert store.updated_ids(OPP, since, since + timedelta(hours=1)) == []


def test_clear_empties_the_stamp_order():
    store, _ = new_store()
    store.create(OPP, opp("one"))
    store.clear()
    assert store.modified_between(OPP, None) == set()


def test_a_change_query_reads_only_the_records_in_its_range():
    store, clock = new_store()
    for n in range(200):
        store.create(OPP, opp(f"O{n}"))
        clock.advance(timedelta(milliseconds=10))
    bound = literal(clock.now() - timedelta(milliseconds=25))
    source = Counting(store)
    text = (
        "SELECT Id, SystemModstamp FROM Opportunity "  # noqa: S608 - SOQL under test
        f"WHERE SystemModstamp >= {bound} ORDER BY SystemModstamp, Id"
    )
    assert [r["Id"] for r in run(source, text, include_deleted=True)] == live(store)[-2:]
    assert source.scans == 0
    assert source.ids_read == 2


def test_a_range_on_another_datetime_field_still_scans():
    store, _ = new_store()
    store.create(OPP, opp("one"))
    source = Counting(store)
    text = f"SELECT Id FROM Opportunity WHERE CreatedDate >= {literal(NOW)}"  # noqa: S608 - SOQL under test
    assert len(run(source, text)) == 1
    assert source.scans == 1
