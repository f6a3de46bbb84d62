"""The state store contract: what every ``StateStore`` does, written once.

Each test runs against every implementation (the ``store`` fixture in this folder's conftest):
the in-memory store, SQLite on a file and Postgres on a real server (a schema per test). Where
the SQL store fails for real (a value JSON cannot hold, a constraint), the memory store must
fail the same way and, like the database, keep nothing of what failed. Leases are tested with
two holders, one on ``store`` and one on ``replica``: two daemons on one database.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from connector.errors import StateError
from connector.ports import DeadLetterEntry, Direction, Link, StateStore
from contract.state_harness import T0, ManualClock

IN = Direction.INBOUND
OUT = Direction.OUTBOUND


def entry(
    record_id: str | None,
    *,
    at: datetime = T0,
    reason: str = "cannot map",
    payload: Mapping[str, Any] | None = None,
    direction: Direction = IN,
) -> DeadLetterEntry:
    return DeadLetterEntry(
        direction=direction,
        record_id=record_id,
        reason=reason,
        payload={"id": record_id} if payload is None else payload,
        seen_at=at,
    )


def full_link(referral_id: str = "REF-1", **changes: Any) -> Link:
    fields: dict[str, Any] = {
        "referral_id": referral_id,
        "crm_id": "006A",
        "engagement_id": "eng-1",
        "inbound_fingerprint": "in-fp",
        "outbound_fingerprint": "out-fp",
        "etag": '"7"',
        "crm_id_written": True,
    }
    fields.update(changes)
    return Link(**fields)


# -- cursors -------------------------------------------------------------------------------------


def test_a_cursor_never_set_is_none(store: StateStore):
    assert store.get_cursor("acme", "referrals") is None


def test_a_cursor_round_trips(store: StateStore):
    cursor = {"since": "2026-01-05T09:00:00.123456Z", "seen": ["a", "b"], "page": {"n": 3}}
    store.set_cursor("acme", "referrals", cursor)

    assert store.get_cursor("acme", "referrals") == cursor


def test_setting_a_cursor_again_replaces_it(store: StateStore):
    store.set_cursor("acme", "referrals", {"since": 1, "old": True})
    store.set_cursor("acme", "referrals", {"since": 2})

    assert store.get_cursor("acme", "referrals") == {"since": 2}


def test_cursors_are_kept_per_connection_and_stream(store: StateStore):
    store.set_cursor("acme", "referrals", {"v": 1})
    store.set_cursor("acme", "opportunities", {"v": 2})
    store.set_cursor("globex", "referrals", {"v": 3})

    assert store.get_cursor("acme", "referrals") == {"v": 1}
    assert store.get_cursor("acme", "opportunities") == {"v": 2}
    assert store.get_cursor("globex", "referrals") == {"v": 3}
    assert store.get_cursor("globex", "opportunities") is None


def test_mutating_a_cursor_after_storing_or_reading_it_changes_nothing_stored(
    store: StateStore,
):
    cursor: dict[str, Any] = {"seen": ["a"], "page": {"n": 1}}
    store.set_cursor("acme", "referrals", cursor)
    cursor["seen"].append("b")
    cursor["page"]["n"] = 2

    read = store.get_cursor("acme", "referrals")
    assert read == {"seen": ["a"], "page": {"n": 1}}
    read["seen"].append("c")  # type: ignore[index]
    assert store.get_cursor("acme", "referrals") == {"seen": ["a"], "page": {"n": 1}}


# -- links ---------------------------------------------------------------------------------------


# A value for every field of a given type, so that a field added to Link is round-tripped here
# (and a store that does not keep it fails) without anyone remembering to extend this test.
SAMPLE_BY_TYPE: dict[str, Callable[[str], Any]] = {
    "str": lambda name: f"{name}-value",
    "str | None": lambda name: f"{name}-value",
    "bool": lambda _: True,
    "bool | None": lambda _: True,
    "datetime | None": lambda _: T0 + timedelta(microseconds=7),
}


def test_a_link_round_trips_every_field(store: StateStore):
    values = {}
    for field in dataclasses.fields(Link):
        sample = SAMPLE_BY_TYPE.get(str(field.type))
        assert sample is not None, f"teach this test a value for Link.{field.name}: {field.type}"
        values[field.name] = sample(field.name)
    link = Link(**values)
    store.put_link("acme", link)

    assert store.get_link("acme", link.referral_id) == link


@pytest.mark.parametrize("crm_open", [True, False, None])
def test_a_link_tells_an_open_a_closed_and_an_unknown_opportunity_apart(
    store: StateStore, crm_open: bool | None
):
    store.put_link("acme", full_link(crm_open=crm_open))

    found = store.get_link("acme", "REF-1")
    assert found is not None
    assert found.crm_open is crm_open


def test_a_link_is_found_whatever_the_case_of_its_referral_id(store: StateStore):
    store.put_link("acme", full_link("4a7e-ABC"))

    found = store.get_link("acme", "4A7E-abc")
    assert found is not None
    assert found.referral_id == "4a7e-ABC"  # the id as it was given, not the lower-cased key


def test_links_of_a_batch_are_read_at_once_keyed_by_lower_case_id(store: StateStore):
    store.put_link("acme", full_link("4a7e-ABC", crm_id="006A"))
    store.put_link("acme", full_link("ref-2", crm_id="006B"))
    store.put_link("other", full_link("REF-3", crm_id="006C"))

    found = store.get_links("acme", ["4A7E-abc", "REF-2", "ref-2", "REF-3", "missing"])

    assert sorted(found) == ["4a7e-abc", "ref-2"]
    assert found["4a7e-abc"] == store.get_link("acme", "4a7e-abc")
    assert found["4a7e-abc"].referral_id == "4a7e-ABC"
    assert found["ref-2"].crm_id == "006B"
    assert store.get_links("acme", []) == {}


def test_a_batch_read_of_more_links_than_one_statement_takes_finds_them_all(store: StateStore):
    ids = [f"REF-{n:04d}" for n in range(1201)]
    store.record_page(
        "acme", "pc", links=[Link(referral_id=i) for i in ids], dead_letters=(), cursor={}
    )

    found = store.get_links("acme", [*ids, "REF-9999"])

    assert sorted(found) == sorted(i.lower() for i in ids)


def test_a_link_is_found_by_its_crm_id(store: StateStore):
    store.put_link("acme", full_link("REF-1", crm_id="006A"))
    store.put_link("acme", full_link("REF-2", crm_id="006B"))

    found = store.get_link_by_crm_id("acme", "006B")
    assert found is not None
    assert found.referral_id == "REF-2"
    assert store.get_link_by_crm_id("acme", "006C") is None


def test_a_link_without_crm_id_is_found_by_referral_id_only(store: StateStore):
    store.put_link("acme", Link(referral_id="REF-1"))

    assert store.get_link("acme", "ref-1") == Link(referral_id="REF-1", updated_at=T0)


def test_putting_a_link_again_replaces_it(store: StateStore, state_clock: ManualClock):
    store.put_link("acme", full_link("ref-1", crm_id="006A", etag='"1"'))
    later = state_clock.advance()
    store.put_link("acme", Link(referral_id="REF-1", crm_id="006B"))

    assert store.get_link("acme", "ref-1") == Link(
        referral_id="REF-1", crm_id="006B", updated_at=later
    )
    assert store.get_link_by_crm_id("acme", "006A") is None
    assert [link.referral_id for link in store.links_awaiting_crm_id("acme")] == ["REF-1"]


def test_a_link_put_without_updated_at_is_stamped_with_the_store_clock(
    store: StateStore, state_clock: ManualClock
):
    state_clock.advance(60)
    store.put_link("acme", full_link(updated_at=None))

    found = store.get_link("acme", "REF-1")
    assert found is not None
    assert found.updated_at == state_clock.now()


def test_a_link_put_with_updated_at_keeps_it(store: StateStore):
    store.put_link("acme", full_link(updated_at=T0 - timedelta(days=30)))

    found = store.get_link("acme", "REF-1")
    assert found is not None
    assert found.updated_at == T0 - timedelta(days=30)


def test_links_awaiting_crm_id_are_ordered_by_the_updated_at_they_were_given(
    store: StateStore,
):
    store.put_link("acme", Link(referral_id="new", crm_id="1", updated_at=T0))
    store.put_link("acme", Link(referral_id="old", crm_id="2", updated_at=T0 - timedelta(hours=1)))

    assert [link.referral_id for link in store.links_awaiting_crm_id("acme")] == ["old", "new"]


def test_links_are_kept_per_connection(store: StateStore):
    store.put_link("acme", full_link("REF-1", crm_id="006A", etag='"a"'))
    store.put_link("globex", full_link("REF-1", crm_id="006A", etag='"g"'))

    acme, globex = store.get_link("acme", "REF-1"), store.get_link("globex", "REF-1")
    assert acme is not None
    assert globex is not None
    assert (acme.etag, globex.etag) == ('"a"', '"g"')
    assert store.get_link("initech", "REF-1") is None
    assert store.get_link_by_crm_id("initech", "006A") is None


def test_a_crm_id_belongs_to_one_referral_per_connection(store: StateStore):
    store.put_link("acme", full_link("REF-1", crm_id="006A"))

    with pytest.raises(StateError):
        store.put_link("acme", full_link("REF-2", crm_id="006A"))

    assert store.get_link("acme", "REF-2") is None
    found = store.get_link_by_crm_id("acme", "006A")
    assert found is not None
    assert found.referral_id == "REF-1"


def test_links_awaiting_crm_id_are_those_with_a_crm_id_not_yet_written(store: StateStore):
    store.put_link("acme", Link(referral_id="no-crm-id"))
    store.put_link("acme", Link(referral_id="written", crm_id="006W", crm_id_written=True))
    store.put_link("acme", Link(referral_id="waiting", crm_id="006X"))
    store.put_link("globex", Link(referral_id="elsewhere", crm_id="006Y"))

    assert [link.referral_id for link in store.links_awaiting_crm_id("acme")] == ["waiting"]


def test_links_awaiting_crm_id_come_oldest_first_up_to_the_limit(
    store: StateStore, state_clock: ManualClock
):
    for referral_id in ["c", "a", "d", "b"]:  # not in key order: the order is by time
        store.put_link("acme", Link(referral_id=referral_id, crm_id=f"006{referral_id}"))
        state_clock.advance()
    store.put_link("acme", Link(referral_id="c", crm_id="006c"))  # touched last: now newest

    assert [link.referral_id for link in store.links_awaiting_crm_id("acme")] == [
        "a",
        "d",
        "b",
        "c",
    ]
    assert [link.referral_id for link in store.links_awaiting_crm_id("acme", limit=2)] == [
        "a",
        "d",
    ]
    assert store.links_awaiting_crm_id("acme", limit=0) == []


def test_a_link_whose_crm_id_was_written_no_longer_awaits(store: StateStore):
    store.put_link("acme", Link(referral_id="REF-1", crm_id="006A"))
    store.put_link("acme", Link(referral_id="REF-1", crm_id="006A", crm_id_written=True))

    assert store.links_awaiting_crm_id("acme") == []


def test_a_negative_limit_is_refused(store: StateStore):
    with pytest.raises(ValueError, match="limit"):
        store.links_awaiting_crm_id("acme", limit=-1)
    with pytest.raises(ValueError, match="limit"):
        store.recent_runs("acme", limit=-1)


# -- record_page ---------------------------------------------------------------------------------


def test_record_page_stores_links_dead_letters_resolutions_and_the_cursor(
    store: StateStore, state_clock: ManualClock
):
    fixed = store.add_dead_letter("acme", entry("REF-0"))
    resolved_at = state_clock.advance()

    store.record_page(
        "acme",
        "referrals",
        links=[Link(referral_id="REF-0", crm_id="006Z"), Link(referral_id="REF-1", crm_id="006A")],
        dead_letters=[entry("REF-2", at=resolved_at)],
        resolved=[(IN, "REF-0")],
        cursor={"since": "t1"},
    )

    assert {link.referral_id for link in store.links_awaiting_crm_id("acme")} == {"REF-0", "REF-1"}
    assert [dl.record_id for dl in store.dead_letters("acme")] == ["REF-2"]
    now_fixed = store.get_dead_letter(fixed.id)
    assert now_fixed is not None
    assert now_fixed.resolved_at == resolved_at
    assert store.get_cursor("acme", "referrals") == {"since": "t1"}


def _stored_state(store: StateStore) -> tuple[Any, ...]:
    return (
        store.get_cursor("acme", "referrals"),
        store.get_link("acme", "REF-0"),
        store.get_link("acme", "REF-1"),
        store.get_link("acme", "REF-NEW"),
        store.dead_letters("acme", include_resolved=True),
    )


@pytest.fixture
def page_before(store: StateStore, state_clock: ManualClock) -> tuple[Any, ...]:
    """A store with a cursor, two links and one open dead letter, and what it holds."""
    store.set_cursor("acme", "referrals", {"since": "t0"})
    store.put_link("acme", Link(referral_id="REF-0", crm_id="006Z", etag='"0"'))
    store.put_link("acme", Link(referral_id="REF-1", crm_id="006A"))
    store.add_dead_letter("acme", entry("REF-9"))
    state_clock.advance()
    return _stored_state(store)


BAD_PAGES: dict[str, dict[str, Any]] = {
    "a dead letter payload JSON cannot hold": {
        "dead_letters": [entry("REF-7"), entry("REF-8", payload={"amount": Decimal("1.5")})],
    },
    "a link whose crm id belongs to another referral": {
        "links": [
            Link(referral_id="REF-0", crm_id="006Z", etag='"changed"'),
            Link(referral_id="REF-NEW", crm_id="006A"),
        ],
    },
    "a cursor JSON cannot hold": {"cursor": {"since": math.nan}},
}


@pytest.mark.parametrize("bad", BAD_PAGES.values(), ids=BAD_PAGES.keys())
def test_a_page_that_fails_anywhere_stores_nothing_and_the_cursor_stays(
    store: StateStore, page_before: tuple[Any, ...], bad: dict[str, Any]
):
    page: dict[str, Any] = {
        "links": [
            Link(referral_id="REF-0", crm_id="006Z", etag='"changed"'),
            Link(referral_id="REF-NEW", crm_id="006N"),
        ],
        "dead_letters": [entry("REF-7"), entry("REF-8")],
        "resolved": [(IN, "REF-9")],
        "cursor": {"since": "t1"},
    }
    page.update(bad)

    with pytest.raises(StateError):
        store.record_page("acme", "referrals", **page)

    assert _stored_state(store) == page_before


def test_a_store_still_works_after_a_failed_page(store: StateStore, page_before: tuple[Any, ...]):
    with pytest.raises(StateError):
        store.record_page("acme", "referrals", links=[], dead_letters=[], cursor={"bad": object()})

    store.record_page("acme", "referrals", links=[], dead_letters=[], cursor={"since": "t1"})
    assert store.get_cursor("acme", "referrals") == {"since": "t1"}


def test_record_page_resolves_only_the_open_dead_letter_of_that_direction(store: StateStore):
    inbound = store.add_dead_letter("acme", entry("X", direction=IN))
    outbound = store.add_dead_letter("acme", entry("X", direction=OUT))
    elsewhere = store.add_dead_letter("globex", entry("X", direction=IN))

    store.record_page(
        "acme", "opportunities", links=[], dead_letters=[], resolved=[(OUT, "X")], cursor={}
    )

    assert [dl.id for dl in store.dead_letters()] == [inbound.id, elsewhere.id]
    resolved = store.get_dead_letter(outbound.id)
    assert resolved is not None
    assert resolved.resolved_at is not None


def test_resolving_a_record_that_has_no_dead_letter_is_harmless(store: StateStore):
    store.record_page(
        "acme", "referrals", links=[], dead_letters=[], resolved=[(IN, "none")], cursor={}
    )

    assert store.dead_letters(include_resolved=True) == []
    assert store.get_cursor("acme", "referrals") == {}


# -- dead letters --------------------------------------------------------------------------------


def test_add_dead_letter_returns_what_it_stored(store: StateStore):
    stored = store.add_dead_letter(
        "acme", entry("REF-1", reason="stage: unknown", payload={"stage": "Nope"})
    )

    assert stored.connection == "acme"
    assert stored.direction is IN
    assert (stored.record_id, stored.reason, stored.payload) == (
        "REF-1",
        "stage: unknown",
        {"stage": "Nope"},
    )
    assert (stored.attempts, stored.first_seen, stored.last_seen) == (1, T0, T0)
    assert stored.resolved_at is None
    assert store.get_dead_letter(stored.id) == stored


def test_a_record_that_fails_again_bumps_attempts_and_keeps_first_seen(store: StateStore):
    first = store.add_dead_letter("acme", entry("REF-1", reason="one", payload={"v": 1}))
    later = T0 + timedelta(minutes=5)
    again = store.add_dead_letter("acme", entry("REF-1", at=later, reason="two", payload={"v": 2}))

    assert again.id == first.id
    assert (again.attempts, again.first_seen, again.last_seen) == (2, T0, later)
    assert (again.reason, again.payload) == ("two", {"v": 2})
    assert store.dead_letters("acme") == [again]


def test_the_same_record_id_in_another_direction_or_connection_is_another_row(
    store: StateStore,
):
    a = store.add_dead_letter("acme", entry("X", direction=IN))
    b = store.add_dead_letter("acme", entry("X", direction=OUT))
    c = store.add_dead_letter("globex", entry("X", direction=IN))

    assert len({a.id, b.id, c.id}) == 3
    assert all(dl.attempts == 1 for dl in store.dead_letters())


def test_a_dead_letter_without_record_id_is_always_a_new_row(store: StateStore):
    a = store.add_dead_letter("acme", entry(None, payload={"garbled": True}))
    b = store.add_dead_letter("acme", entry(None, payload={"garbled": True}))

    assert a.id != b.id
    assert [dl.attempts for dl in store.dead_letters("acme")] == [1, 1]


def test_resolved_dead_letters_are_hidden_unless_asked_for(store: StateStore):
    done = store.add_dead_letter("acme", entry("REF-1"))
    open_ = store.add_dead_letter("acme", entry("REF-2"))
    at = T0 + timedelta(hours=1)
    store.resolve_dead_letter(done.id, at)

    assert [dl.id for dl in store.dead_letters("acme")] == [open_.id]
    everything = store.dead_letters("acme", include_resolved=True)
    assert [(dl.id, dl.resolved_at) for dl in everything] == [(done.id, at), (open_.id, None)]


def test_resolving_twice_keeps_the_first_resolution(store: StateStore):
    dl = store.add_dead_letter("acme", entry("REF-1"))
    store.resolve_dead_letter(dl.id, T0 + timedelta(hours=1))
    store.resolve_dead_letter(dl.id, T0 + timedelta(hours=2))

    found = store.get_dead_letter(dl.id)
    assert found is not None
    assert found.resolved_at == T0 + timedelta(hours=1)


def test_resolving_an_unknown_dead_letter_is_a_state_error(store: StateStore):
    with pytest.raises(StateError, match="404"):
        store.resolve_dead_letter(404, T0)


def test_a_record_failing_after_its_resolution_opens_a_new_row(store: StateStore):
    old = store.add_dead_letter("acme", entry("REF-1", reason="first"))
    store.resolve_dead_letter(old.id, T0 + timedelta(hours=1))
    new = store.add_dead_letter("acme", entry("REF-1", at=T0 + timedelta(hours=2), reason="again"))

    assert new.id != old.id
    assert (new.attempts, new.reason, new.first_seen) == (1, "again", T0 + timedelta(hours=2))
    kept = store.get_dead_letter(old.id)
    assert kept is not None
    assert (kept.reason, kept.attempts) == ("first", 1)


def test_dead_letters_are_listed_oldest_first(store: StateStore):
    store.add_dead_letter("acme", entry("late", at=T0 + timedelta(seconds=2)))
    store.add_dead_letter("globex", entry("middle", at=T0 + timedelta(seconds=1)))
    store.add_dead_letter("acme", entry("early", at=T0))

    assert [dl.record_id for dl in store.dead_letters()] == ["early", "middle", "late"]
    assert [dl.record_id for dl in store.dead_letters("acme")] == ["early", "late"]
    assert store.dead_letters("initech") == []


def test_an_unknown_dead_letter_id_is_none(store: StateStore):
    assert store.get_dead_letter(12345) is None


def test_mutating_a_dead_letter_payload_changes_nothing_stored(store: StateStore):
    payload: dict[str, Any] = {"lines": [1]}
    stored = store.add_dead_letter("acme", entry("REF-1", payload=payload))
    payload["lines"].append(2)
    stored.payload["lines"].append(3)

    found = store.get_dead_letter(stored.id)
    assert found is not None
    assert found.payload == {"lines": [1]}


@pytest.fixture
def eager_thread_switching() -> Iterator[None]:
    """Threads take turns every microsecond, so a missing lock shows within a few calls."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("eager_thread_switching")
def test_concurrent_failures_of_one_record_all_count(store: StateStore):
    start = threading.Barrier(4)

    def fail_25_times() -> None:
        start.wait()
        for _ in range(25):
            store.add_dead_letter("acme", entry("REF-1"))

    threads = [threading.Thread(target=fail_25_times) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [dl.attempts for dl in store.dead_letters(include_resolved=True)] == [100]


# -- runs ----------------------------------------------------------------------------------------


def test_a_started_run_is_unfinished(store: StateStore):
    run_id = store.start_run("acme", OUT, T0)

    [run] = store.recent_runs("acme")
    assert (run.id, run.connection, run.direction, run.started_at) == (run_id, "acme", OUT, T0)
    assert (run.finished_at, run.outcome, dict(run.counts), run.errors) == (None, None, {}, ())


def test_a_finished_run_keeps_its_outcome_counts_and_errors(store: StateStore):
    run_id = store.start_run("acme", IN, T0)
    store.finish_run(
        run_id,
        T0 + timedelta(seconds=3),
        outcome="partial",
        counts={"created": 3, "updated": 1, "dead_lettered": 1},
        errors=["REF-9: stage: unknown", "réf: ünïcode"],
    )

    [run] = store.recent_runs("acme")
    assert run.finished_at == T0 + timedelta(seconds=3)
    assert run.outcome == "partial"
    assert run.counts == {"created": 3, "updated": 1, "dead_lettered": 1}
    assert run.errors == ("REF-9: stage: unknown", "réf: ünïcode")


def test_recent_runs_come_newest_first_up_to_the_limit(store: StateStore):
    ids = [store.start_run("acme", IN, T0 + timedelta(minutes=m)) for m in (0, 2, 1)]
    other = store.start_run("globex", IN, T0 + timedelta(minutes=3))

    assert [r.id for r in store.recent_runs("acme")] == [ids[1], ids[2], ids[0]]
    assert [r.id for r in store.recent_runs("acme", limit=1)] == [ids[1]]
    assert [r.id for r in store.recent_runs()] == [other, ids[1], ids[2], ids[0]]
    assert store.recent_runs("initech") == []


def test_run_ids_are_distinct(store: StateStore):
    ids = {store.start_run("acme", IN, T0) for _ in range(3)}

    assert len(ids) == 3


def test_finishing_an_unknown_run_is_a_state_error(store: StateStore):
    with pytest.raises(StateError, match="77"):
        store.finish_run(77, T0, outcome="ok", counts={})


# -- datetimes -----------------------------------------------------------------------------------

PLUS_5_30 = timezone(timedelta(hours=5, minutes=30))


def _dead_letter_times(store: StateStore, at: datetime) -> list[datetime | None]:
    dl = store.add_dead_letter("acme", entry("REF-1", at=at))
    store.resolve_dead_letter(dl.id, at)
    found = store.get_dead_letter(dl.id)
    assert found is not None
    return [found.first_seen, found.last_seen, found.resolved_at]


def _run_times(store: StateStore, at: datetime) -> list[datetime | None]:
    run_id = store.start_run("acme", IN, at)
    store.finish_run(run_id, at, outcome="ok", counts={})
    [run] = store.recent_runs("acme")
    return [run.started_at, run.finished_at]


TIMES: dict[str, Callable[[StateStore, datetime], list[datetime | None]]] = {
    "dead letter": _dead_letter_times,
    "run": _run_times,
}


@pytest.mark.parametrize("read", TIMES.values(), ids=TIMES.keys())
@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 1, 5, 14, 30, 0, 999999, tzinfo=PLUS_5_30),
        datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
    ],
    ids=["utc", "plus-5:30", "last-century"],
)
def test_datetimes_come_back_as_the_same_instant_in_aware_utc_with_microseconds(
    store: StateStore,
    read: Callable[[StateStore, datetime], list[datetime | None]],
    at: datetime,
):
    for back in read(store, at):
        assert back == at
        assert back is not None
        assert back.utcoffset() == timedelta(0)
        assert back.microsecond == at.microsecond


def test_a_link_updated_at_is_aware_utc(store: StateStore, state_clock: ManualClock):
    state_clock.current = datetime(2026, 1, 5, 14, 30, 0, 7, tzinfo=PLUS_5_30)
    store.put_link("acme", Link(referral_id="REF-1"))

    found = store.get_link("acme", "REF-1")
    assert found is not None
    assert found.updated_at == state_clock.current
    assert found.updated_at.tzinfo == UTC


NAIVE = datetime(2026, 1, 5, 9, 0)  # noqa: DTZ001 -- the point of the test
NAIVE_USES: dict[str, Callable[[StateStore], object]] = {
    "dead letter": lambda s: s.add_dead_letter("acme", entry("REF-1", at=NAIVE)),
    "start run": lambda s: s.start_run("acme", IN, NAIVE),
    "finish run": lambda s: s.finish_run(
        s.start_run("acme", IN, T0), NAIVE, outcome="ok", counts={}
    ),
    "resolve": lambda s: s.resolve_dead_letter(s.add_dead_letter("acme", entry("R")).id, NAIVE),
}


@pytest.mark.parametrize("use", NAIVE_USES.values(), ids=NAIVE_USES.keys())
def test_a_naive_datetime_is_refused(store: StateStore, use: Callable[[StateStore], object]):
    with pytest.raises(StateError, match="timezone-aware"):
        use(store)


# -- JSON ----------------------------------------------------------------------------------------

JSON_VALUES: dict[str, dict[str, Any]] = {
    "unicode": {"name": "Zoë Straße 東京 🚀", "quote": "\"'\\", "nul": "a\u0000b"},
    "nested": {"a": [1, [2, [3, {"b": None}]]], "c": {"d": {"e": {}}}, "f": []},
    "scalars": {"int": 2**63 + 1, "neg": -7, "float": 0.1, "exp": 1e-300, "t": True, "f": False},
    "empty": {},
}


@pytest.mark.parametrize("value", JSON_VALUES.values(), ids=JSON_VALUES.keys())
def test_json_values_round_trip_in_cursors_and_payloads(store: StateStore, value: dict[str, Any]):
    store.set_cursor("acme", "referrals", value)
    dl = store.add_dead_letter("acme", entry("REF-1", payload=value))

    assert store.get_cursor("acme", "referrals") == value
    found = store.get_dead_letter(dl.id)
    assert found is not None
    assert found.payload == value


def test_tuples_come_back_as_lists(store: StateStore):
    store.set_cursor("acme", "referrals", {"seen": ("a", "b")})

    assert store.get_cursor("acme", "referrals") == {"seen": ["a", "b"]}


UNSTORABLE: dict[str, Any] = {
    "decimal": Decimal("1.50"),
    "nan": math.nan,
    "infinity": math.inf,
    "set": {"a"},
    "datetime": T0,
    "object": object(),
}


@pytest.mark.parametrize("value", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_a_value_json_cannot_hold_is_refused_and_nothing_is_stored(store: StateStore, value: Any):
    with pytest.raises(StateError, match="JSON"):
        store.set_cursor("acme", "referrals", {"v": value})
    with pytest.raises(StateError, match="JSON"):
        store.add_dead_letter("acme", entry("REF-1", payload={"v": value}))

    assert store.get_cursor("acme", "referrals") is None
    assert store.dead_letters(include_resolved=True) == []


# -- leases --------------------------------------------------------------------------------------
#
# Two holders are two daemons: one on ``store``, the other on ``replica`` (another store on the
# same database). On Postgres leases run on the server's clock, so ``let_time_pass`` really waits:
# SHORT is as short as a test can afford, LONG longer than any test runs.

SHORT = timedelta(milliseconds=200)
PAST_SHORT = 0.3  # seconds: SHORT and a margin
LONG = timedelta(minutes=10)


def test_a_free_lease_is_taken(store: StateStore):
    assert store.lease_holder("acme") is None

    assert store.acquire_lease("acme", "daemon-a", LONG) is True
    assert store.lease_holder("acme") == "daemon-a"


def test_the_unexpired_leases_are_listed_by_name_prefix(
    store: StateStore, replica: StateStore, let_time_pass: Callable[[float], None]
):
    assert store.acquire_lease("replica:a", "daemon-a", LONG)
    assert replica.acquire_lease("replica:b", "daemon-b", SHORT)
    assert replica.acquire_lease("acme", "daemon-b", LONG)

    assert store.leases("replica:") == {"replica:a": "daemon-a", "replica:b": "daemon-b"}
    assert replica.leases() == {
        "acme": "daemon-b",
        "replica:a": "daemon-a",
        "replica:b": "daemon-b",
    }
    let_time_pass(PAST_SHORT)
    assert store.leases("replica:") == {"replica:a": "daemon-a"}


def test_a_lease_another_holds_is_refused_and_stays_theirs(store: StateStore, replica: StateStore):
    assert store.acquire_lease("acme", "daemon-a", LONG)

    assert replica.acquire_lease("acme", "daemon-b", LONG) is False
    assert replica.lease_holder("acme") == "daemon-a"
    assert store.lease_holder("acme") == "daemon-a"


def test_an_expired_lease_is_taken_by_another(
    store: StateStore, replica: StateStore, let_time_pass: Callable[[float], None]
):
    assert store.acquire_lease("acme", "daemon-a", SHORT)
    let_time_pass(PAST_SHORT)

    assert store.lease_holder("acme") is None
    assert replica.acquire_lease("acme", "daemon-b", LONG) is True
    assert store.lease_holder("acme") == "daemon-b"


def test_acquiring_again_extends_the_holders_own_lease(
    store: StateStore, replica: StateStore, let_time_pass: Callable[[float], None]
):
    assert store.acquire_lease("acme", "daemon-a", SHORT)
    assert store.acquire_lease("acme", "daemon-a", LONG) is True
    let_time_pass(PAST_SHORT)

    assert replica.acquire_lease("acme", "daemon-b", LONG) is False
    assert store.lease_holder("acme") == "daemon-a"


def test_renewing_extends_the_holders_lease(
    store: StateStore, replica: StateStore, let_time_pass: Callable[[float], None]
):
    assert store.acquire_lease("acme", "daemon-a", SHORT)
    assert store.renew_lease("acme", "daemon-a", LONG) is True
    let_time_pass(PAST_SHORT)

    assert replica.acquire_lease("acme", "daemon-b", LONG) is False
    assert replica.lease_holder("acme") == "daemon-a"


def test_only_the_holder_renews(store: StateStore, replica: StateStore):
    assert replica.renew_lease("acme", "daemon-b", LONG) is False  # nobody holds it: not taken
    assert store.lease_holder("acme") is None
    assert store.acquire_lease("acme", "daemon-a", LONG)

    assert replica.renew_lease("acme", "daemon-b", LONG) is False
    assert replica.lease_holder("acme") == "daemon-a"


def test_a_holder_that_lost_the_lease_learns_it_on_renew(
    store: StateStore, replica: StateStore, let_time_pass: Callable[[float], None]
):
    assert store.acquire_lease("acme", "daemon-a", SHORT)
    let_time_pass(PAST_SHORT)  # daemon-a stalled past its ttl ...
    assert replica.acquire_lease("acme", "daemon-b", LONG)  # ... and daemon-b took over

    assert store.renew_lease("acme", "daemon-a", LONG) is False
    assert store.acquire_lease("acme", "daemon-a", LONG) is False
    assert store.lease_holder("acme") == "daemon-b"


def test_an_expired_lease_is_not_renewed_even_when_nobody_took_it(
    store: StateStore, let_time_pass: Callable[[float], None]
):
    assert store.acquire_lease("acme", "daemon-a", SHORT)
    let_time_pass(PAST_SHORT)

    assert store.renew_lease("acme", "daemon-a", LONG) is False  # it may have been taken meanwhile
    assert store.lease_holder("acme") is None
    assert store.acquire_lease("acme", "daemon-a", LONG) is True  # taking it again is the way back


def test_a_released_lease_is_free_at_once(store: StateStore, replica: StateStore):
    assert store.acquire_lease("acme", "daemon-a", LONG)
    store.release_lease("acme", "daemon-a")

    assert replica.lease_holder("acme") is None
    assert store.renew_lease("acme", "daemon-a", LONG) is False
    assert replica.acquire_lease("acme", "daemon-b", LONG) is True


def test_releasing_a_lease_one_does_not_hold_changes_nothing(
    store: StateStore, replica: StateStore
):
    replica.release_lease("acme", "daemon-b")  # nobody holds it: no error
    assert store.acquire_lease("acme", "daemon-a", LONG)

    replica.release_lease("acme", "daemon-b")

    assert replica.lease_holder("acme") == "daemon-a"
    assert replica.acquire_lease("acme", "daemon-b", LONG) is False
    assert store.renew_lease("acme", "daemon-a", LONG) is True


def test_leases_are_kept_per_connection(store: StateStore, replica: StateStore):
    assert store.acquire_lease("acme", "daemon-a", LONG)
    assert replica.acquire_lease("globex", "daemon-b", LONG)

    assert (store.lease_holder("acme"), store.lease_holder("globex")) == ("daemon-a", "daemon-b")
    assert store.lease_holder("initech") is None
    assert replica.renew_lease("acme", "daemon-b", LONG) is False
    assert store.renew_lease("globex", "daemon-a", LONG) is False


@pytest.mark.usefixtures("eager_thread_switching")
def test_of_many_holders_racing_for_a_free_lease_exactly_one_wins(
    store: StateStore, replica: StateStore
):
    start = threading.Barrier(8)
    won: list[str] = []

    def race(holder: str, on: StateStore) -> None:
        start.wait()
        if on.acquire_lease("acme", holder, LONG):
            won.append(holder)

    threads = [
        threading.Thread(target=race, args=(f"daemon-{n}", store if n % 2 else replica))
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(won) == 1
    assert store.lease_holder("acme") == won[0]


BAD_LEASES: dict[str, Callable[[StateStore], object]] = {
    "acquire, zero ttl": lambda s: s.acquire_lease("acme", "daemon-a", timedelta(0)),
    "acquire, negative ttl": lambda s: s.acquire_lease("acme", "daemon-a", -LONG),
    "acquire, empty holder": lambda s: s.acquire_lease("acme", "", LONG),
    "renew, zero ttl": lambda s: s.renew_lease("acme", "daemon-a", timedelta(0)),
    "renew, empty holder": lambda s: s.renew_lease("acme", "", LONG),
}


@pytest.mark.parametrize("use", BAD_LEASES.values(), ids=BAD_LEASES.keys())
def test_a_non_positive_ttl_or_an_empty_holder_is_refused(
    store: StateStore, use: Callable[[StateStore], object]
):
    with pytest.raises(ValueError, match="lease"):
        use(store)

    assert store.lease_holder("acme") is None


# -- closing -------------------------------------------------------------------------------------

AFTER_CLOSE: dict[str, Callable[[StateStore], object]] = {
    "get_cursor": lambda s: s.get_cursor("acme", "referrals"),
    "set_cursor": lambda s: s.set_cursor("acme", "referrals", {}),
    "get_link": lambda s: s.get_link("acme", "REF-1"),
    "put_link": lambda s: s.put_link("acme", Link(referral_id="REF-1")),
    "record_page": lambda s: s.record_page("acme", "r", links=[], dead_letters=[], cursor={}),
    "dead_letters": lambda s: s.dead_letters(),
    "start_run": lambda s: s.start_run("acme", IN, T0),
    "acquire_lease": lambda s: s.acquire_lease("acme", "daemon-a", LONG),
    "renew_lease": lambda s: s.renew_lease("acme", "daemon-a", LONG),
    "release_lease": lambda s: s.release_lease("acme", "daemon-a"),
    "lease_holder": lambda s: s.lease_holder("acme"),
}


@pytest.mark.parametrize("use", AFTER_CLOSE.values(), ids=AFTER_CLOSE.keys())
def test_a_closed_store_refuses_work(store: StateStore, use: Callable[[StateStore], object]):
    store.close()
    store.close()  # closing twice is harmless

    with pytest.raises(StateError, match="closed"):
        use(store)
