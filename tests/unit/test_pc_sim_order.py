"""The Partner Center simulator's updatedDateTime index pages as the full scan does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.partner_center import ReferralStore
from sandbox.partner_center.listing import ListQuery, page_of, run_query
from sandbox.partner_center.wiretime import format_wire

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# Spellings that tie (one instant three ways), differ only in the 7th digit, or are not times.
TIMES = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.0000000Z",
    "2026-01-01T01:00:00+01:00",
    "2026-01-01T00:00:00.0000001Z",
    "2026-01-01T00:00:01.5Z",
    "2026-01-02",
    "not a time",
    None,
]
BOUNDS = ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.0000001Z", "2026-01-01T00:00:01Z"]
INDEXED_FILTERS = [
    None,
    *(f"updatedDateTime {op} {bound}" for op in ("ge", "gt", "le", "lt", "eq") for bound in BOUNDS),
    f"updatedDateTime ge {BOUNDS[0]} and updatedDateTime lt {BOUNDS[2]}",
    f"(updatedDateTime gt {BOUNDS[0]}) and (updatedDateTime le {BOUNDS[2]})",
    f"updatedDateTime ge {BOUNDS[2]} and updatedDateTime le {BOUNDS[0]}",  # empty
]
SCANNED_FILTERS = [
    "status eq 'New'",
    f"updatedDateTime ge {BOUNDS[0]} and status eq 'New'",
    f"updatedDateTime ne {BOUNDS[0]}",
    "updatedDateTime eq null",
]


class SteppingClock:
    def __init__(self):
        self.moment = START

    def now(self):
        self.moment += timedelta(microseconds=1)
        return self.moment


class ScanForbidden(ReferralStore):
    """A store whose full snapshot must not be read: proves a query was served by the index."""

    def snapshot(self):
        raise AssertionError("the query scanned every referral")


def seeded(times, store_type=ReferralStore):
    store = store_type(SteppingClock())
    for number, stamp in enumerate(times):
        raw = {"id": f"r{(number * 7) % 10}{number}", "status": "Active", "substatus": "Accepted"}
        if stamp is not None:
            raw["updatedDateTime"] = stamp
        store.put_raw(raw)
    return store


def all_pages(store, query, *, read):
    """Every page of ``query``, following the next positions, as ``read`` serves each."""
    pages, position = [], query.skip
    while True:
        page = read(store, query, position)
        pages.append(page)
        if page.next_position is None:
            return pages
        position = page.next_position


def indexed(store, query, position):
    return page_of(store, query, position, page_size=3)


def scanned(store, query, position):
    return run_query(store.snapshot(), query, position, page_size=3)


def ids(store, query, read=indexed):
    return [raw["id"] for page in all_pages(store, query, read=read) for raw in page.value]


queries = st.builds(
    ListQuery,
    filter=st.sampled_from(INDEXED_FILTERS + SCANNED_FILTERS),
    orderby=st.sampled_from(
        ["updatedDateTime asc", "updatedDateTime", None, "updatedDateTime desc"]
    ),
    select=st.sampled_from([None, "id,updatedDateTime"]),
    top=st.none() | st.integers(0, 12),
    skip=st.integers(0, 12),
    count=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(times=st.lists(st.sampled_from(TIMES), max_size=14), query=queries)
def test_every_query_pages_as_the_full_scan_does(times, query):
    store = seeded(times)
    assert all_pages(store, query, read=indexed) == all_pages(store, query, read=scanned)


@settings(max_examples=100, deadline=None)
@given(
    times=st.lists(st.sampled_from(TIMES), min_size=1, max_size=10),
    moves=st.lists(st.tuples(st.integers(0, 9), st.sampled_from(TIMES)), max_size=8),
    filter_text=st.sampled_from(INDEXED_FILTERS),
)
def test_rewritten_referrals_move_in_the_index(times, moves, filter_text):
    store = seeded(times)
    referral_ids = [raw["id"] for raw in store.snapshot()]
    for which, stamp in moves:
        referral_id = referral_ids[which % len(referral_ids)]
        if stamp is None:
            store.put_raw({"id": referral_id})  # overwritten without a time
        else:
            store.stamp_updated([referral_id], stamp)
    query = ListQuery(filter=filter_text, orderby="updatedDateTime asc", count=True)
    assert all_pages(store, query, read=indexed) == all_pages(store, query, read=scanned)


def test_the_change_feeds_query_is_served_without_a_full_scan():
    store = seeded(TIMES * 3, store_type=ScanForbidden)
    query = ListQuery(filter=f"updatedDateTime ge {BOUNDS[1]}", orderby="updatedDateTime asc")
    assert len(ids(store, query)) == 9  # three each of .0000001, 00:00:01.5 and 01-02


def test_an_edited_referral_moves_to_the_end_of_the_feed():
    store = seeded(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"])
    first = store.snapshot()[0]["id"]
    store.edit(first, details={"notes": "changed"})
    query = ListQuery(filter=f"updatedDateTime ge {BOUNDS[0]}", orderby="updatedDateTime asc")
    assert ids(store, query)[-1] == first
    assert ids(store, query) == ids(store, query, read=scanned)


def test_an_api_patch_moves_the_referral_and_a_pinned_edit_moves_it_back():
    store = seeded(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"])
    first, second = (raw["id"] for raw in store.snapshot())
    query = ListQuery(orderby="updatedDateTime asc")
    store.patch(first, [{"op": "replace", "path": "/details/notes", "value": "x"}], None)
    assert ids(store, query) == [second, first]
    store.edit(first, updatedDateTime="2025-12-31T00:00:00Z")
    assert ids(store, query) == [first, second]


def test_an_expired_referral_moves_to_the_moment_it_expired():
    clock = SteppingClock()
    store = ReferralStore(clock)
    expiring = {
        "id": "expiring",
        "status": "New",
        "substatus": "Pending",
        "updatedDateTime": format_wire(START - timedelta(days=2)),
        "expirationDateTime": format_wire(START + timedelta(hours=1)),
    }
    store.put_raw(expiring)
    store.put_raw({"id": "later", "status": "Closed", "updatedDateTime": format_wire(START)})
    query = ListQuery(orderby="updatedDateTime asc")
    assert ids(store, query) == ["expiring", "later"]
    clock.moment += timedelta(hours=2)
    assert ids(store, query) == ["later", "expiring"]


def test_a_cleared_store_lists_nothing_and_takes_new_referrals():
    store = seeded(TIMES)
    store.clear()
    query = ListQuery(orderby="updatedDateTime asc", count=True)
    assert indexed(store, query, 0).count == 0
    store.put_raw({"id": "again", "updatedDateTime": BOUNDS[0]})
    assert ids(store, query) == ["again"]
