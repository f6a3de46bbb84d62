"""The Partner Center source: each change once across pages, overlaps and restarts; 412 recovery."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import ConflictError, PreconditionFailed
from connector.model import Action, PartnerUpdate, Status, Substatus
from connector.model.values import format_datetime, parse_datetime
from connector.partner_center.adapter import MAX_BLOCK_REREADS, PartnerCenterSource
from connector.partner_center.client import ListPage
from connector.partner_center.convert import referral_from_wire
from connector.ports import ChangeCursor

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def wire(n: int, updated: datetime, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "name": f"Referral {n}",
        "status": "New",
        "substatus": "Pending",
        "createdDateTime": format_datetime(T0 - timedelta(days=1)),
        "updatedDateTime": format_datetime(updated),
        "customerProfile": {"name": f"Customer {n}", "address": {"country": "US"}},
        "details": {"dealValue": 1000, "currency": "USD"},
        "eTag": f'"{uuid.uuid4()}"',
    }
    body.update(extra)
    return body


class FakeClient:
    """Serves referrals the way the list endpoint does: ge filter, ordered, pages of 100."""

    def __init__(self, referrals: Sequence[dict[str, Any]], page_size: int = 100) -> None:
        self.referrals = {r["id"]: r for r in referrals}
        self.page_size = page_size
        self.requests: list[str] = []
        self.fail_patches = 0

    def iter_pages(self, params: Mapping[str, str] | None = None) -> Iterator[ListPage]:
        """Positional paging over live data, like ``$skip``: a change between pages shifts."""
        params = params or {}
        assert params.get("$orderby") == "updatedDateTime asc"
        bound = None
        if "$filter" in params:
            field, op, literal = params["$filter"].split(" ")
            assert (field, op) == ("updatedDateTime", "ge")
            bound = parse_datetime(literal, "bound")
        start = 0
        while True:
            items = sorted(self.referrals.values(), key=lambda r: (r["updatedDateTime"], r["id"]))
            if bound is not None:
                items = [r for r in items if parse_datetime(r["updatedDateTime"], "u") >= bound]
            self.requests.append("GET list")
            more = start + self.page_size < len(items)
            yield ListPage(copy.deepcopy(items[start : start + self.page_size]), has_more=more)
            if not more:
                return
            start += self.page_size

    def get(self, referral_id: str) -> dict[str, Any]:
        self.requests.append("GET one")
        return copy.deepcopy(self.referrals[referral_id])

    def patch(
        self, referral_id: str, ops: Sequence[Mapping[str, Any]], *, if_match: str | None
    ) -> dict[str, Any]:
        self.requests.append("PATCH")
        current = self.referrals[referral_id]
        if self.fail_patches or (if_match is not None and if_match != current["eTag"]):
            self.fail_patches = max(0, self.fail_patches - 1)
            raise PreconditionFailed("stale eTag", status=412, code="preconditionFailed")
        for op in ops:
            parts = op["path"].strip("/").split("/")
            target = current
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = op["value"]
        current["eTag"] = f'"{uuid.uuid4()}"'
        return copy.deepcopy(current)

    def edit(self, n: int, updated: datetime, **changes: Any) -> None:
        body = self.referrals[wire(n, T0)["id"]]
        body.update(changes, updatedDateTime=format_datetime(updated), eTag=f'"{uuid.uuid4()}"')


def make_source(client: FakeClient, **options: Any) -> PartnerCenterSource:
    """A source whose clock reads the time of the fake's data (T0): every poll is recent."""
    return PartnerCenterSource(client, now=lambda: T0, **options)  # type: ignore[arg-type]


def drain(source: PartnerCenterSource, cursor: ChangeCursor) -> tuple[list[str], ChangeCursor]:
    ids: list[str] = []
    for page in source.changes_since(cursor):
        ids.extend(r.id for r in page.referrals)
        cursor = page.cursor
    return ids, cursor


def test_backfill_delivers_every_referral_once_with_shared_timestamps():
    referrals = [wire(n, T0 + timedelta(seconds=n)) for n in range(230)]
    referrals += [wire(n, T0 + timedelta(seconds=100)) for n in range(230, 250)]  # 20 ties
    client = FakeClient(referrals)
    ids, cursor = drain(make_source(client), ChangeCursor())
    assert sorted(ids) == sorted(r["id"] for r in referrals)
    assert client.requests == ["GET list"] * 3
    assert cursor.high_water == T0 + timedelta(seconds=229)


def test_a_change_between_pages_shifts_nothing_out_of_the_feed():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(250)])
    source = make_source(client)
    delivered: list[str] = []
    for number, page in enumerate(source.changes_since(ChangeCursor())):
        delivered.extend(r.id for r in page.referrals)
        if number == 0:  # Microsoft edits a referral of page 1 while we read: it moves to the end
            client.edit(5, T0 + timedelta(hours=1))
    assert sorted(set(delivered)) == sorted(client.referrals)
    assert delivered.count(wire(5, T0)["id"]) == 2  # its first state, then its new change


def test_a_full_page_of_one_timestamp_is_followed_by_its_next_link():
    client = FakeClient([wire(n, T0) for n in range(230)])
    ids, cursor = drain(make_source(client), ChangeCursor())
    assert sorted(ids) == sorted(client.referrals)
    assert cursor.high_water == T0


def test_second_call_from_saved_cursor_returns_only_what_changed():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(50)])
    source = make_source(client, overlap=timedelta(minutes=5))
    _, cursor = drain(source, ChangeCursor())
    client.edit(7, T0 + timedelta(minutes=2))
    client.edit(8, T0 + timedelta(minutes=2))
    ids, cursor = drain(source, cursor)
    assert ids == [wire(7, T0)["id"], wire(8, T0)["id"]]
    ids, _ = drain(source, cursor)
    assert ids == []


def test_idle_poll_costs_one_request():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(50)])
    source = make_source(client)
    _, cursor = drain(source, ChangeCursor())
    client.requests.clear()
    ids, _ = drain(source, cursor)
    assert (ids, client.requests) == ([], ["GET list"])


def test_change_committed_late_inside_the_overlap_is_still_delivered():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(10)])
    source = make_source(client, overlap=timedelta(minutes=5))
    _, cursor = drain(source, ChangeCursor())
    # A change stamped *before* the high-water mark shows up only now (eventual consistency).
    client.edit(3, T0 + timedelta(seconds=5, milliseconds=500))
    ids, _ = drain(source, cursor)
    assert ids == [wire(3, T0)["id"]]


def test_a_newer_change_of_a_referral_already_seen_in_the_window_comes_through():
    client = FakeClient([wire(1, T0)])
    source = make_source(client)
    _, cursor = drain(source, ChangeCursor())
    client.edit(1, T0 + timedelta(seconds=1), name="renamed")
    ids, _ = drain(source, cursor)
    assert ids == [wire(1, T0)["id"]]


def test_cursor_survives_a_json_round_trip_and_forgets_what_left_the_window():
    client = FakeClient([wire(n, T0 + timedelta(minutes=n)) for n in range(30)])
    source = make_source(client, overlap=timedelta(minutes=5))
    _, cursor = drain(source, ChangeCursor())
    restored = ChangeCursor.from_json(cursor.to_json())
    assert restored == cursor
    assert len(restored.seen) == 6  # minutes 24..29 are within 5 minutes of the high water
    ids, _ = drain(source, restored)
    assert ids == []


def test_the_cursor_remembers_at_most_the_limit_of_changes_the_newest_ones():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(250)])
    _, cursor = drain(make_source(client, seen_limit=40), ChangeCursor())

    assert len(cursor.seen) == 40
    assert set(cursor.seen) == {wire(n, T0)["id"] for n in range(210, 250)}
    assert len(ChangeCursor.from_json(cursor.to_json()).seen) == 40


def test_every_change_at_the_high_water_instant_is_remembered_beyond_the_limit():
    """An idle poll re-reads the high water's own instant: all of it must be known, or every
    idle poll would deliver it again."""
    client = FakeClient([wire(n, T0) for n in range(150)])  # one instant, more than a page
    now = [T0]
    source = PartnerCenterSource(client, seen_limit=10, now=lambda: now[0])  # type: ignore[arg-type]
    ids, cursor = drain(source, ChangeCursor())
    assert (len(ids), len(cursor.seen)) == (150, 150)

    now[0] += timedelta(minutes=10)
    for _poll in range(2):  # past the overlap: read from the high water's instant only
        ids, cursor = drain(source, cursor)
        assert ids == []


def test_a_change_forgotten_past_the_limit_is_delivered_again_only_while_polls_reread_the_overlap():
    """The bound costs re-deliveries of unchanged referrals forgotten between two polls (which
    the engine's fingerprint recognises), once a poll and only while polls still re-read the
    overlap; never a request: what the feed asks for depends on the times it reads."""
    referrals = [wire(n, T0 + timedelta(seconds=n)) for n in range(250)]
    exact, bounded = FakeClient(copy.deepcopy(referrals)), FakeClient(copy.deepcopy(referrals))
    now = [T0 + timedelta(seconds=250)]
    exact_source, bounded_source = (
        PartnerCenterSource(client, now=lambda: now[0], **limit)  # type: ignore[arg-type]
        for client, limit in ((exact, {}), (bounded, {"seen_limit": 40}))
    )
    exact_ids, exact_cursor = drain(exact_source, ChangeCursor())
    bounded_ids, bounded_cursor = drain(bounded_source, ChangeCursor())
    assert sorted(bounded_ids) == sorted(exact_ids)
    for client in (exact, bounded):
        client.edit(3, T0 + timedelta(seconds=300))
        client.requests.clear()

    polls: list[tuple[list[str], list[str]]] = []
    for minutes in (0, 6, 6, 6):
        now[0] += timedelta(minutes=minutes)
        exact_ids, exact_cursor = drain(exact_source, exact_cursor)
        bounded_ids, bounded_cursor = drain(bounded_source, bounded_cursor)
        polls.append((exact_ids, bounded_ids))

    forgotten = sorted(wire(n, T0)["id"] for n in range(210) if n != 3)
    assert polls[0][0] == [wire(3, T0)["id"]]
    assert sorted(polls[0][1]) == sorted([*forgotten, wire(3, T0)["id"]])  # each once
    assert [exact_ids for exact_ids, _ in polls[1:]] == [[], [], []]
    assert [bounded_ids for _, bounded_ids in polls[2:]] == [[], []]  # past the overlap
    assert bounded.requests == exact.requests


def test_a_cursor_stored_before_the_limit_is_read_and_delivers_nothing_twice():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(250)])
    _, unbounded = drain(make_source(client, seen_limit=10_000), ChangeCursor())
    stored = unbounded.to_json()
    assert len(stored["seen"]) == 250  # all within the 5-minute overlap

    source = make_source(client, seen_limit=40)
    ids, cursor = drain(source, ChangeCursor.from_json(stored))

    assert ids == []
    assert len(cursor.seen) == 40


def test_a_page_cursor_is_not_changed_by_the_pages_after_it():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(250)])
    pages = list(make_source(client, seen_limit=40).changes_since(ChangeCursor()))
    first = pages[0].cursor

    assert len(first.seen) == 40
    assert set(first.seen) == {wire(n, T0)["id"] for n in range(60, 100)}


def test_the_seen_limit_must_be_positive():
    with pytest.raises(ValueError, match="seen_limit"):
        make_source(FakeClient([]), seen_limit=0)


def test_unparseable_referrals_are_rejected_with_the_field_and_the_rest_go_on():
    good = [wire(n, T0 + timedelta(seconds=n)) for n in range(3)]
    bad = wire(9, T0 + timedelta(seconds=1), status="Pondering")
    no_customer = wire(10, T0 + timedelta(seconds=2))
    del no_customer["customerProfile"]
    client = FakeClient([*good, bad, no_customer])
    pages = list(make_source(client).changes_since(ChangeCursor()))
    assert [r.id for r in pages[0].referrals] == [g["id"] for g in good]
    assert sorted(r.error.field for r in pages[0].rejected) == ["customerProfile", "status"]
    assert {r.record_id for r in pages[0].rejected} == {bad["id"], no_customer["id"]}
    # a rejected change is not delivered again by the next poll either
    ids, _ = drain(make_source(client), pages[-1].cursor)
    assert ids == []


def test_a_list_item_that_is_not_an_object_is_rejected_not_dropped():
    client = FakeClient([wire(1, T0)])

    def pages(params: Mapping[str, str] | None = None) -> Iterator[ListPage]:
        yield ListPage([wire(1, T0), "garbage"], has_more=False)

    client.iter_pages = pages  # type: ignore[method-assign]
    (page,) = make_source(client).changes_since(ChangeCursor())
    assert len(page.referrals) == 1
    assert [r.payload for r in page.rejected] == [{}]


def accept_update(n: int) -> PartnerUpdate:
    return PartnerUpdate(
        referral_id=wire(n, T0)["id"],
        action=Action.ACCEPT,
        deal_value=Decimal("25000.50"),
        currency="EUR",
        close_date=datetime(2027, 3, 31, tzinfo=UTC).date(),
        partner_notes="Qualified by phone",
        external_reference_id="006000000000001",
    )


def test_update_patches_with_the_etag_it_was_computed_from():
    client = FakeClient([wire(1, T0)])
    source = make_source(client)
    current = source.get(wire(1, T0)["id"])
    result = source.update(accept_update(1), current)
    assert (result.status, result.substatus) == (Status.ACTIVE, Substatus.ACCEPTED)
    assert result.deal.value == Decimal("25000.50")
    assert result.external_reference_id == "006000000000001"
    assert result.etag != current.etag
    assert client.requests == ["GET one", "PATCH"]


class StampingClient(FakeClient):
    """Stamps every write with a new ``updatedDateTime``, as Partner Center does; ``rewrite``
    changes the reply's fields after the write (a server that says something else)."""

    def __init__(self, *args: Any, rewrite: Mapping[str, Any] | None = None) -> None:
        super().__init__(*args)
        self.rewrite = dict(rewrite or {})

    def patch(
        self, referral_id: str, ops: Sequence[Mapping[str, Any]], *, if_match: str | None
    ) -> dict[str, Any]:
        self.referrals[referral_id]["updatedDateTime"] = format_datetime(T0 + timedelta(hours=1))
        reply = super().patch(referral_id, ops, if_match=if_match)
        reply.update(self.rewrite)
        self.referrals[referral_id].update(self.rewrite)
        return reply


def crm_id_update(n: int, crm_id: str = "006000000000042") -> PartnerUpdate:
    return PartnerUpdate(referral_id=wire(n, T0)["id"], external_reference_id=crm_id)


def rich_wire(n: int) -> dict[str, Any]:
    contact = {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"}
    profile = {"name": f"Customer {n}", "address": {"country": "US", "city": "Redmond"}}
    return wire(n, T0, customerProfile={**profile, "team": [contact]}, engagementId="e-1")


@pytest.mark.parametrize("crm_id_before", [None, "006000000000001"])
def test_a_crm_id_write_back_returns_the_referral_parsing_the_whole_reply_gives(crm_id_before):
    body = (
        rich_wire(1)
        if crm_id_before is None
        else {**rich_wire(1), "externalReferenceId": crm_id_before}
    )
    client = StampingClient([body])
    source = make_source(client)
    current = source.get(body["id"])

    result = source.update(crm_id_update(1), current)

    assert result == referral_from_wire(client.get(body["id"]))
    assert result.external_reference_id == "006000000000042"
    assert result.updated_at == T0 + timedelta(hours=1)
    assert result.etag == client.referrals[body["id"]]["eTag"] != current.etag


@pytest.mark.parametrize(
    "rewrite",
    [
        {"externalReferenceId": "006000000000099"},  # the server kept another value
        {"updatedDateTime": None},  # no change time: it falls back to the creation time
        {"eTag": None},
    ],
)
def test_a_crm_id_write_back_whose_reply_does_not_say_what_it_did_is_parsed_whole(rewrite):
    client = StampingClient([rich_wire(1)], rewrite=rewrite)
    source = make_source(client)
    current = source.get(wire(1, T0)["id"])

    result = source.update(crm_id_update(1), current)

    assert result == referral_from_wire(client.get(current.id))


def test_any_other_update_returns_the_whole_reply_parsed():
    client = StampingClient([rich_wire(1)], rewrite={"name": "Renamed by the server"})
    source = make_source(client)
    current = source.get(wire(1, T0)["id"])

    result = source.update(accept_update(1), current)

    assert result == referral_from_wire(client.get(current.id))
    assert result.name == "Renamed by the server"


def test_stale_etag_rereads_and_reapplies_once():
    client = FakeClient([wire(1, T0)])
    source = make_source(client)
    current = source.get(wire(1, T0)["id"])
    client.edit(1, T0 + timedelta(seconds=1), name="Renamed by Microsoft")
    result = source.update(accept_update(1), current)
    assert result.status == Status.ACTIVE
    assert result.name == "Renamed by Microsoft"
    assert client.requests == ["GET one", "PATCH", "GET one", "PATCH"]


def test_stale_etag_twice_is_a_conflict():
    client = FakeClient([wire(1, T0)])
    source = make_source(client)
    current = source.get(wire(1, T0)["id"])
    client.fail_patches = 2
    with pytest.raises(ConflictError) as caught:
        source.update(accept_update(1), current)
    assert caught.value.code == "precondition_failed_twice"
    assert client.requests.count("PATCH") == 2


def test_update_that_no_longer_applies_after_reread_is_a_conflict_without_a_second_patch():
    client = FakeClient([wire(1, T0)])
    source = make_source(client)
    current = source.get(wire(1, T0)["id"])
    client.edit(1, T0 + timedelta(seconds=1), status="Closed", substatus="Expired")
    with pytest.raises(ConflictError):
        source.update(accept_update(1), current)
    assert client.requests.count("PATCH") == 1


def test_update_with_nothing_to_change_sends_nothing():
    client = FakeClient([wire(1, T0)])
    source = make_source(client)
    current = source.get(wire(1, T0)["id"])
    same = PartnerUpdate(referral_id=current.id, deal_value=Decimal(1000), currency="USD")
    assert source.update(same, current) is current
    assert client.requests == ["GET one"]


def test_a_referral_of_a_one_timestamp_page_changed_before_the_next_page_skips_none():
    """Positional paging through a block of one timestamp: the change moves referral 1 to the
    end and shifts referral 7 onto the page already read. The feed notices referral 1 again
    and re-reads the block; without that, referral 7 was lost once the high water moved on."""
    client = FakeClient([wire(n, T0) for n in range(9)], page_size=7)
    source = make_source(client, overlap=timedelta(seconds=60))
    delivered: list[str] = []
    cursor = ChangeCursor()
    for index, page in enumerate(source.changes_since(cursor)):
        delivered.extend(r.id for r in page.referrals)
        cursor = page.cursor
        if index == 0:
            client.edit(1, T0 + timedelta(seconds=60))
    client.edit(0, T0 + timedelta(seconds=61))
    ids, cursor = drain(source, cursor)

    assert sorted(set(delivered)) == sorted(wire(n, T0)["id"] for n in range(9))
    assert ids == [wire(0, T0)["id"]]
    assert len(delivered) == 10  # the nine, and referral 1's change once


def test_a_block_that_never_settles_is_re_read_a_bounded_number_of_times():
    class Restless(FakeClient):  # every second page shows the first referral changed again
        def iter_pages(self, params=None):
            pages = super().iter_pages(params)
            first = next(pages)
            yield first
            moved = {**first.items[0], "eTag": f'"{uuid.uuid4()}"'}
            moved["updatedDateTime"] = format_datetime(T0 + timedelta(seconds=1))
            self.requests.append("GET list")
            yield ListPage([*list(self.referrals.values())[7:], moved], has_more=False)

    client = Restless([wire(n, T0) for n in range(9)], page_size=7)
    ids, _cursor = drain(make_source(client), ChangeCursor())

    # the first page asks again from its time; then the block, read again at most so often
    assert client.requests == ["GET list"] * (1 + 2 * (MAX_BLOCK_REREADS + 1))
    assert set(ids) == {wire(n, T0)["id"] for n in range(9)}


OFFSETS = st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=260)
"""Change times in seconds after T0: many ties."""
EDITS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=259), st.integers(min_value=-30, max_value=60)),
    max_size=25,
)
"""(referral, shift): an edit between pages, stamped ``shift`` seconds after the newest time
(at or below it for a shift <= 0: a write committed late)."""
PAGE_SIZES = st.sampled_from([7, 50, 100])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    offsets=OFFSETS,
    edits=EDITS,
    page_size=PAGE_SIZES,
)
def test_every_change_arrives_once_whatever_happens_between_pages(offsets, edits, page_size):
    """Random timestamps (many ties), edits between pages (some stamped with a time already
    seen, or committed late inside the overlap), several polls: every final state is
    delivered, and no write is delivered twice."""
    referrals = [wire(n, T0 + timedelta(seconds=s)) for n, s in enumerate(offsets)]
    client = FakeClient(referrals, page_size)
    source = make_source(client, overlap=timedelta(seconds=60))
    delivered: list[tuple[str, str | None]] = []
    pending = list(edits)
    cursor = ChangeCursor()
    newest = T0 + timedelta(seconds=max(offsets))
    for _poll in range(3):
        for page in source.changes_since(cursor):
            delivered.extend((r.id, r.etag) for r in page.referrals)
            cursor = page.cursor
            if pending:
                index, shift = pending.pop()
                newest = max(newest, newest + timedelta(seconds=shift))
                # shift <= 0: a write committed late, up to 30 s below the newest time seen
                client.edit(index % len(offsets), newest + timedelta(seconds=min(shift, 0)))
    for page in source.changes_since(cursor):  # a last, quiet poll after the last edit
        delivered.extend((r.id, r.etag) for r in page.referrals)
    assert len(delivered) == len(set(delivered))
    assert {(r["id"], r["eTag"]) for r in client.referrals.values()} <= set(delivered)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    offsets=OFFSETS,
    edits=EDITS,
    page_size=PAGE_SIZES,
    seen_limit=st.sampled_from([1, 5, 60]),
)
def test_with_a_small_memory_the_feed_delivers_what_it_did_with_a_full_one_none_twice_a_poll(
    offsets, edits, page_size, seen_limit
):
    """The same polls and edits against a feed with a full memory and one with a small one: the
    small one delivers every change the full one does (it may deliver an unchanged referral
    again in a later poll), never one twice within a poll, with the same requests."""

    def run(limit: int) -> tuple[list[list[tuple[str, str]]], list[str]]:
        referrals = [wire(n, T0 + timedelta(seconds=s)) for n, s in enumerate(offsets)]
        client = FakeClient(referrals, page_size)
        source = make_source(client, overlap=timedelta(seconds=60), seen_limit=limit)
        pending, cursor, newest = list(edits), ChangeCursor(), T0 + timedelta(seconds=max(offsets))
        polls: list[list[tuple[str, str]]] = []
        for poll_number in range(4):  # the last one quiet: after the last edit
            poll: list[tuple[str, str]] = []
            for page in source.changes_since(cursor):
                poll.extend((r.id, format_datetime(r.updated_at)) for r in page.referrals)
                cursor = page.cursor
                if pending and poll_number < 3:
                    index, shift = pending.pop()
                    newest = max(newest, newest + timedelta(seconds=shift))
                    client.edit(index % len(offsets), newest + timedelta(seconds=min(shift, 0)))
            polls.append(poll)
        return polls, client.requests

    full, full_requests = run(10_000)
    small, small_requests = run(seen_limit)

    assert {change for poll in small for change in poll} >= {c for poll in full for c in poll}
    # Twice in one poll only where the full memory has it too: two edits stamped alike.
    assert [len(p) - len(set(p)) for p in small] <= [len(p) - len(set(p)) for p in full]
    assert small_requests == full_requests


def test_an_idle_feed_costs_one_request_once_a_poll_ran_past_the_overlap_window():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(250)])
    now = [T0 + timedelta(seconds=250)]
    source = PartnerCenterSource(client, overlap=timedelta(minutes=5), now=lambda: now[0])
    _, cursor = drain(source, ChangeCursor())

    client.requests.clear()
    ids, cursor = drain(source, cursor)  # right after the burst: the window is re-read
    assert (ids, len(client.requests)) == ([], 3)

    now[0] += timedelta(minutes=6)
    drain(source, cursor)  # this poll began before the window passed: it re-reads once more
    ids, cursor = drain(source, cursor)
    client.requests.clear()
    ids, cursor = drain(source, cursor)
    assert (ids, client.requests) == ([], ["GET list"])


def test_a_late_commit_inside_the_window_is_still_caught_after_the_poll_time_moves_on():
    client = FakeClient([wire(n, T0 + timedelta(seconds=n)) for n in range(10)])
    now = [T0 + timedelta(seconds=10)]
    source = PartnerCenterSource(client, overlap=timedelta(minutes=5), now=lambda: now[0])
    _, cursor = drain(source, ChangeCursor())

    now[0] += timedelta(minutes=1)
    client.edit(3, T0 + timedelta(seconds=5))  # committed late, stamped below the high water
    ids, cursor = drain(source, cursor)

    assert ids == [wire(3, T0)["id"]]


def test_the_read_start_never_passes_the_high_water():
    cursor = ChangeCursor(high_water=T0, polled_at=T0 + timedelta(hours=1))

    assert cursor.read_from(timedelta(minutes=5)) == T0
    assert ChangeCursor(high_water=T0).read_from(timedelta(minutes=5)) == T0 - timedelta(minutes=5)
    assert ChangeCursor.from_json(cursor.to_json()) == cursor
