"""The sync engine with fakes: each invariant of DESIGN.md, and the lifecycle end to end."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import Decimal

import pytest
from builders import ACTIVE, DECLINED, NEW
from engine_world import CONNECTION, SF_MAPPING, World, referrals
from structlog.testing import capture_logs

from connector.engine import CRM_STREAM, PC_STREAM, RunReport
from connector.errors import ConflictError, MappingError, OutcomeUnknown, TransientError
from connector.mapping import map_referral
from connector.model import Deal, Lifecycle, Status, Substatus
from connector.ports import (
    ChangeCursor,
    ChangePage,
    Direction,
    OpportunityWrite,
    Rejected,
    WriteOutcome,
)


def accepted(world: World, rid: str, **fields: object) -> None:
    world.salesperson(
        rid, StageName="Qualification", Amount=Decimal(42000), Description="Call Ada", **fields
    )


# -- 1. no duplicates --------------------------------------------------------------------------


def test_every_referral_becomes_one_opportunity_carrying_its_crm_id_back():
    world = World()
    world.pc.seed(*referrals(250))

    world.cycle()

    opps = world.opportunities()
    assert len(opps) == 250
    for rid, ref in world.pc.referrals.items():
        assert ref.external_reference_id == opps[rid]["Id"]
    assert world.store.links_awaiting_crm_id(CONNECTION) == []


def test_replaying_every_page_from_the_start_changes_nothing():
    world = World()
    world.pc.seed(*referrals(30))
    world.settle()
    before = world.crm_stamps()

    world.store.set_cursor(CONNECTION, PC_STREAM, ChangeCursor().to_json())
    world.cycle()

    assert world.crm_stamps() == before  # fingerprints unchanged: nothing rewritten
    assert len(world.opportunities()) == 30


def test_with_its_state_lost_the_engine_still_upserts_onto_the_same_opportunities():
    world = World()
    world.pc.seed(*referrals(20))
    world.settle()
    ids = {k: v["Id"] for k, v in world.opportunities().items()}

    from connector.state import MemoryStateStore  # noqa: PLC0415

    world.store = MemoryStateStore(clock=world.clock)
    world.restart()
    world.cycle()

    assert {k: v["Id"] for k, v in world.opportunities().items()} == ids


def test_our_own_creates_whose_record_was_lost_are_not_taken_for_partner_edits():
    """A stop between the CRM's reply to a create and the state's record of it: the next
    outbound half meets keyed opportunities without a link. They are ours, as created: their
    links are recorded and nothing (no default close date) is sent to Partner Center."""
    world = World()
    world.pc.seed(*referrals(20, deal=Deal(value=Decimal(0), currency="EUR")))  # no close date
    world.settle()
    ids = {k: v["Id"] for k, v in world.opportunities().items()}
    untouched, edited = sorted(ids)[:19], sorted(ids)[19]
    updates = world.pc.requests["update"]

    from connector.state import MemoryStateStore  # noqa: PLC0415

    world.store = MemoryStateStore(clock=world.clock)
    world.restart()
    accepted(world, edited)  # one partner edit made while the state was gone: it is sent
    world.cycle()

    assert world.pc.requests["update"] == updates + 1
    assert world.pc.referrals[edited].lifecycle.status is Status.ACTIVE
    for rid in untouched:
        assert world.pc.referrals[rid].lifecycle.status is Status.NEW
        assert world.pc.referrals[rid].deal.close_date is None
        link = world.store.get_link(CONNECTION, rid)
        assert link is not None
        assert link.crm_id == ids[rid]
    assert world.settle() == 1


# -- 2. nothing lost ---------------------------------------------------------------------------


def test_a_fault_mid_feed_keeps_the_cursor_before_the_page_and_the_next_cycle_finishes():
    world = World(page_size=10)
    world.pc.seed(*referrals(35))
    real_upsert = world.crm.upsert
    calls = {"n": 0}

    def failing_upsert(writes):
        calls["n"] += 1
        if calls["n"] == 3:
            raise TransientError("CRM unavailable")
        return real_upsert(writes)

    world.crm.upsert = failing_upsert  # type: ignore[method-assign]
    # the 20th change of the feed (read before the cycle: its write-backs change the times)
    twentieth = sorted(world.pc.referrals.values(), key=lambda r: r.updated_at)[19].updated_at
    result = world.cycle()

    assert result.inbound.failed
    assert len(world.opportunities()) == 20
    cursor = ChangeCursor.from_json(world.store.get_cursor(CONNECTION, PC_STREAM) or {})
    assert cursor.high_water == twentieth
    [run, *_] = world.store.recent_runs(CONNECTION)
    assert (run.direction, run.outcome) == (Direction.INBOUND, "failed")
    assert any(r.outcome == "failed" for r in world.store.recent_runs(CONNECTION))

    world.restart()
    world.cycle()

    assert len(world.opportunities()) == 35


# -- 3. no echo loops --------------------------------------------------------------------------


def test_our_own_writes_read_back_are_not_written_again():
    world = World()
    world.pc.seed(*referrals(10))
    world.cycle()
    updates = world.pc.requests["update"]  # the ten CRM-id write-backs

    world.cycle()
    world.cycle()

    assert world.pc.requests["update"] == updates == 10
    assert world.pc.requests["get"] == 0  # recognised by fingerprint: not even re-read
    assert world.cycle().outbound.counts["unchanged"] == 0  # nothing new to even look at


def test_a_salesperson_edit_travels_once_and_the_sides_go_quiet():
    world = World()
    [ref] = referrals(1, lifecycle=ACTIVE)
    world.pc.seed(ref)
    world.settle()

    world.salesperson(ref.id, Amount=Decimal(99000))
    cycles = world.settle()

    assert world.pc.referrals[ref.id].deal.value == Decimal(99000)
    assert cycles <= 3
    assert world.cycle().outbound.counts.get("edit", 0) == 0


# -- 4. field ownership ------------------------------------------------------------------------


def test_microsoft_edits_reach_the_crm_but_never_overwrite_what_the_crm_owns():
    world = World()
    [ref] = referrals(1, lifecycle=ACTIVE)
    world.pc.seed(ref)
    world.settle()
    world.salesperson(ref.id, Amount=Decimal(77000))
    world.pc.microsoft_edit(ref.id, microsoft_notes="Demo booked", deal=ref.deal)

    world.cycle()

    opp = world.opportunity(ref.id)
    assert opp["Microsoft_Notes__c"] == "Demo booked"
    assert opp["Amount"] == Decimal(77000)
    world.settle()
    assert world.pc.referrals[ref.id].deal.value == Decimal(77000)


def test_a_microsoft_edit_made_while_we_write_back_the_crm_id_is_not_lost():
    """Microsoft edits the referral after the page was read and before our write-back: the
    write-back is rebased on the new version (stale eTag), and the next poll still brings the
    edit to the CRM. (Its webhook is taken for our own write's echo: the poll is what saves
    it, an interval later; see the known limitations in README.)"""
    world = World()
    [ref] = referrals(1, lifecycle=ACTIVE)
    world.pc.seed(ref)
    update = world.pc.update
    edited = []

    def update_after_microsoft(change, current):
        if not edited:  # once: between our read of the page and our PATCH
            edited.append(world.pc.microsoft_edit(ref.id, microsoft_notes="Budget approved"))
        return update(change, current)

    world.pc.update = update_after_microsoft  # type: ignore[method-assign]
    world.cycle()
    world.pc.update = update  # type: ignore[method-assign]
    written = world.pc.referrals[ref.id]
    assert written.external_reference_id == world.opportunity(ref.id)["Id"]

    world.settle()
    assert world.opportunity(ref.id)["Microsoft_Notes__c"] == "Budget approved"


# -- 5. bad input is contained -----------------------------------------------------------------


def test_a_record_the_crm_refuses_is_dead_lettered_and_the_rest_sync():
    world = World()
    good = referrals(5)
    world.pc.seed(*good)
    world.crm.remove_picklist_value("Opportunity", "StageName", "Qualification")
    [active] = referrals(1, lifecycle=ACTIVE, id="0a000000-0000-4000-8000-00000000000a")
    world.pc.seed(active)

    world.cycle()

    assert set(world.opportunities()) == {r.id for r in good}
    [dead] = world.store.dead_letters(CONNECTION)
    assert (dead.direction, dead.record_id) == (Direction.INBOUND, active.id)
    assert "StageName" in dead.reason
    assert dead.payload["id"] == active.id


def test_a_referral_that_does_not_parse_is_dead_lettered_with_its_payload():
    world = World()
    world.pc.seed(*referrals(3))
    bad = Rejected("bad-1", MappingError("status", "Open", "unknown status"), {"id": "bad-1"})
    real = world.pc.changes_since

    def with_a_bad_one(cursor):
        for page in real(cursor):
            yield ChangePage(page.referrals, (bad,), page.cursor)

    world.pc.changes_since = with_a_bad_one  # type: ignore[method-assign]
    world.cycle()

    assert len(world.opportunities()) == 3
    [dead] = world.store.dead_letters(CONNECTION)
    assert dead.record_id == "bad-1"
    assert dead.payload == {"id": "bad-1"}
    assert "status" in dead.reason


def test_accepting_without_a_value_is_dead_lettered_with_guidance_then_goes_through_once_filled():
    world = World()
    [ref] = referrals(1)
    world.pc.seed(ref)
    world.settle()
    world.salesperson(ref.id, StageName="Qualification", Amount=Decimal(0))

    world.cycle()

    assert world.pc.referrals[ref.id].lifecycle == NEW
    [dead] = world.store.dead_letters(CONNECTION)
    assert dead.direction is Direction.OUTBOUND
    assert "fill Amount" in dead.reason

    world.salesperson(ref.id, Amount=Decimal(5000))
    world.cycle()

    assert world.pc.referrals[ref.id].lifecycle == ACTIVE
    assert world.store.dead_letters(CONNECTION) == []  # resolved by the successful sync


def test_a_dead_lettered_edit_of_a_create_whose_reply_was_lost_is_not_overwritten_by_a_create():
    """Found by the full-size fault soak (Salesforce, phase 0): our create landed but its reply
    was lost, so no CRM id was recorded; the salesperson accepted without an amount (a dead
    letter); the next inbound pass took the referral for one still to create and wrote a
    create's values (stage, amount) over the salesperson's."""
    world = World()
    [ref] = referrals(1)
    world.pc.seed(ref)
    landed = map_referral(ref, SF_MAPPING, create=True)
    world.crm.upsert([landed.write])  # what landed of the create; the engine never heard
    world.salesperson(ref.id, StageName="Qualification", Amount=Decimal(0))

    world.settle()

    opportunity = world.opportunity(ref.id)
    assert (opportunity["StageName"], opportunity["Amount"]) == ("Qualification", Decimal(0))
    [dead] = world.store.dead_letters(CONNECTION)
    assert "fill Amount" in dead.reason
    assert world.pc.referrals[ref.id].external_reference_id == opportunity["Id"]

    world.salesperson(ref.id, Amount=Decimal(5000))  # the fix still goes through
    world.settle()

    assert world.pc.referrals[ref.id].lifecycle == ACTIVE
    assert world.store.dead_letters(CONNECTION) == []


def test_a_create_the_crm_applied_late_is_not_written_again_over_the_salespersons_accept():
    """Found by the full-size fault soak (Dynamics, phase 0): a batch of creates outlived its
    read timeout and the CRM applied it later; the salesperson accepted a new opportunity at
    once; the next cycle, which had not seen the opportunity yet, sent its create again and
    wrote the first stage and amount over the accept. A create is create-only now: the second
    one finds the opportunity and writes Partner Center's fields only."""
    world = World()
    [ref] = referrals(1)
    world.pc.seed(ref)
    real_upsert = world.crm.upsert
    sent: list[list[OpportunityWrite]] = []

    def slow_crm(writes: Sequence[OpportunityWrite]) -> list[WriteOutcome]:
        sent.append(list(writes))
        if len(sent) == 1:
            raise OutcomeUnknown("read timed out")  # the CRM still works on the batch
        if len(sent) == 2:
            real_upsert(sent[0])  # ... which lands now, and the salesperson accepts at once
            world.salesperson(ref.id, StageName="Qualification", Amount=Decimal(5000))
        return real_upsert(writes)

    world.crm.upsert = slow_crm  # type: ignore[method-assign]
    world.cycle()
    result = world.cycle()

    assert [w.create for w in sent[1]] == [True]
    assert [w.create for w in sent[2]] == [False]  # written again, as an update
    assert "StageName" not in sent[2][0].fields
    assert "Amount" not in sent[2][0].fields
    assert result.inbound.counts["found_existing"] == 1
    opportunity = world.opportunity(ref.id)
    assert (opportunity["StageName"], opportunity["Amount"]) == ("Qualification", Decimal(5000))
    assert len(world.opportunities()) == 1
    world.crm.upsert = real_upsert  # type: ignore[method-assign]
    world.settle()
    assert world.pc.referrals[ref.id].lifecycle == ACTIVE  # the accept reached Partner Center
    assert world.pc.referrals[ref.id].external_reference_id == opportunity["Id"]
    assert world.store.dead_letters(CONNECTION) == []


def test_a_dead_letter_fixed_and_sent_just_before_a_kill_is_resolved_after_the_restart():
    """The fix reached Partner Center and its link was recorded at once, but the process died
    before the page's commit: the change read again is "unchanged", and its dead letter must
    still be resolved (it was left open for ever; the full-size crash test found it)."""
    world = World()
    [ref] = referrals(1)
    world.pc.seed(ref)
    world.settle()
    world.salesperson(ref.id, StageName="Qualification", Amount=Decimal(0))
    world.cycle()
    assert len(world.store.dead_letters(CONNECTION)) == 1
    world.salesperson(ref.id, Amount=Decimal(5000))
    real_record_page = world.store.record_page

    class Killed(BaseException):
        pass

    def killed_before_commit(connection, stream, **kwargs):
        if stream == CRM_STREAM:
            raise Killed
        return real_record_page(connection, stream, **kwargs)

    world.store.record_page = killed_before_commit  # type: ignore[method-assign]
    with pytest.raises(Killed):
        world.cycle()
    world.store.record_page = real_record_page  # type: ignore[method-assign]
    assert world.pc.referrals[ref.id].lifecycle == ACTIVE  # the fix was sent

    world.restart()
    world.cycle()

    assert world.store.dead_letters(CONNECTION) == []


def test_an_update_made_invalid_by_a_concurrent_change_is_dead_lettered_and_retried_later():
    world = World()
    [ref] = referrals(1)
    world.pc.seed(ref)
    world.settle()
    accepted(world, ref.id)
    real_update = world.pc.update

    def conflicting(update, current):
        raise ConflictError("stale eTag, and after a re-read the update no longer applies")

    world.pc.update = conflicting  # type: ignore[method-assign]
    world.cycle()

    [dead] = world.store.dead_letters(CONNECTION)
    assert (dead.direction, dead.attempts) == (Direction.OUTBOUND, 1)
    assert "no longer applies" in dead.reason
    assert dead.payload["fields"]["StageName"] == "Qualification"

    world.pc.update = real_update  # type: ignore[method-assign]
    world.salesperson(ref.id, Description="Called Ada twice")
    world.cycle()

    assert world.pc.referrals[ref.id].lifecycle == ACTIVE
    assert world.store.dead_letters(CONNECTION) == []


# -- 6. transient faults end the cycle, the next one resumes -----------------------------------


def test_a_transient_partner_center_fault_fails_the_cycle_and_loses_nothing():
    world = World()
    world.pc.seed(*referrals(5))
    world.pc.fail_next = [TransientError("503")]

    result = world.cycle()

    assert result.inbound.failed
    assert "TransientError" in result.inbound.errors[0]
    assert world.opportunities() == {}
    world.cycle()
    assert len(world.opportunities()) == 5


# -- 7. cost grows with change -----------------------------------------------------------------


def test_a_cycle_with_nothing_new_costs_one_request_per_side():
    world = World()
    world.pc.seed(*referrals(40))
    world.settle()
    pc_before, crm_before = sum(world.pc.requests.values()), world.crm.request_count

    world.cycle()

    assert sum(world.pc.requests.values()) - pc_before == 1
    assert world.crm.request_count - crm_before == 1


def test_a_page_of_changes_is_one_batched_upsert():
    world = World()
    world.pc.seed(*referrals(150))  # two pages of Partner Center's feed
    before = world.crm.request_count

    world.sync.inbound.run(
        RunReport(connection=CONNECTION, direction=Direction.INBOUND, started_at=world.clock.now())
    )

    assert world.crm.request_count - before == 2  # one batched upsert per page
    # two pages of the feed, then two of our own write-backs read back (unchanged: no upsert)
    assert world.pc.requests["list"] == 4
    assert len(world.opportunities()) == 150


# -- the lifecycle -----------------------------------------------------------------------------


def test_accept_win_lose_and_decline_in_the_crm_reach_partner_center():
    world = World()
    a, b, c, d = referrals(4)
    world.pc.seed(a, b, c, d)
    world.settle()

    accepted(world, a.id)
    world.salesperson(b.id, StageName="Closed Won", Amount=Decimal(9000), Description="Won")
    world.salesperson(c.id, StageName="Closed Lost", Decline_Reason__c="Not a fit")
    accepted(world, d.id)
    world.settle()
    world.salesperson(d.id, StageName="Closed Lost", Loss_Reason__c="Price")
    world.settle()

    lifecycle = {rid: str(r.lifecycle) for rid, r in world.pc.referrals.items()}
    assert lifecycle == {
        a.id: "Active/Accepted",
        b.id: "Closed/Won",
        c.id: "Closed/Declined",
        d.id: "Closed/Lost",
    }
    assert [h for h in world.pc.history if h[0] == b.id] == [
        (b.id, "Active/Accepted"),
        (b.id, "Closed/Won"),
    ]
    assert world.pc.referrals[a.id].deal.value == Decimal(42000)
    assert world.pc.referrals[c.id].status_reason == "Not a fit"
    assert world.pc.referrals[d.id].status_reason == "Price"
    assert world.opportunity(a.id)["Partner_Center_Status__c"] == "Active/Accepted"


def test_an_expired_referral_closes_its_open_opportunity():
    world = World()
    [ref] = referrals(1)
    world.pc.seed(ref)
    world.settle()

    world.pc.expire(ref.id)
    world.settle()

    opp = world.opportunity(ref.id)
    assert (opp["StageName"], opp["Partner_Center_Status__c"]) == ("Closed Lost", "Closed/Expired")
    assert world.pc.referrals[ref.id].lifecycle == Lifecycle(Status.CLOSED, Substatus.EXPIRED)


def test_a_won_referral_whose_opportunity_was_left_open_gets_it_closed_as_won():
    """Found by the fault soak (Dataverse): a referral shared already Won; our create landed but
    its reply was lost before the close (Dataverse closes in a second call), so the next cycle
    found the opportunity open and linked it. Won comes from the partner's side, so it was
    taken for closed already and the opportunity stayed open for good."""
    world = World()
    won = Lifecycle(Status.CLOSED, Substatus.WON)
    [ref] = referrals(1, lifecycle=won, deal=Deal(value=Decimal(9000), currency="USD"))
    world.pc.seed(ref)
    left_open = map_referral(dataclasses.replace(ref, lifecycle=ACTIVE), SF_MAPPING, create=True)
    world.crm.upsert([left_open.write])  # what landed of the create
    assert world.opportunity(ref.id)["StageName"] != "Closed Won"

    world.settle()

    assert world.opportunity(ref.id)["StageName"] == "Closed Won"
    assert world.pc.referrals[ref.id].lifecycle == won


def test_a_referral_closed_by_microsoft_after_the_crm_won_it_is_a_logged_conflict():
    world = World()
    [ref] = referrals(1, lifecycle=ACTIVE)
    world.pc.seed(ref)
    world.settle()
    world.salesperson(ref.id, StageName="Closed Won")
    world.pc.microsoft_edit(ref.id, lifecycle=Lifecycle(Status.CLOSED, Substatus.LOST))

    with capture_logs() as logs:
        world.settle()

    assert world.opportunity(ref.id)["StageName"] == "Closed Won"  # not reopened, not re-closed
    assert world.opportunity(ref.id)["Partner_Center_Status__c"] == "Closed/Lost"
    conflicts = [e for e in logs if e["event"] == "conflict_resolved"]
    assert conflicts
    assert all(e["rule"] == "terminal_states_win" for e in conflicts)


# -- plan mode ---------------------------------------------------------------------------------


def test_plan_mode_says_what_it_would_write_and_writes_nothing():
    world = World()
    world.pc.seed(*referrals(3))

    result = world.cycle(plan=True)

    assert world.opportunities() == {}
    assert world.store.get_cursor(CONNECTION, PC_STREAM) is None
    assert [p.action for p in result.inbound.planned] == ["create"] * 3
    assert result.inbound.planned[0].values["StageName"] == "Prospecting"
    assert result.inbound.counts["would_create"] == 3


def test_plan_mode_shows_the_partner_update_it_would_send():
    world = World()
    [ref] = referrals(1)
    world.pc.seed(ref)
    world.settle()
    accepted(world, ref.id)

    result = world.cycle(plan=True)

    [planned] = result.outbound.planned
    assert planned.action == "accept"
    assert planned.values["deal_value"] == "42000"
    assert world.pc.referrals[ref.id].lifecycle == NEW
    assert world.store.get_cursor(CONNECTION, CRM_STREAM) is not None  # from the settle only


@pytest.mark.parametrize("n", [0, 1, 101])
def test_runs_are_recorded_per_direction(n: int):
    world = World()
    world.pc.seed(*referrals(n))

    world.cycle()

    runs = world.store.recent_runs(CONNECTION)
    assert [r.direction for r in runs] == [Direction.INBOUND, Direction.OUTBOUND]  # newest first
    assert runs[0].counts.get("created", 0) == n
    assert all(r.outcome == "ok" for r in runs)


def test_a_stop_request_ends_the_backfill_after_the_page_in_hand_and_the_next_start_resumes():
    world = World(page_size=10)
    world.pc.seed(*referrals(35))
    real_upsert = world.crm.upsert

    def upsert_then_stop(writes):
        outcomes = real_upsert(writes)
        world.sync.stop_soon()  # SIGTERM arrives while the first page is being written
        return outcomes

    world.crm.upsert = upsert_then_stop  # type: ignore[method-assign]
    result = world.cycle()

    assert result.inbound.counts["stopped_early"] == 1
    assert len(world.opportunities()) == 10
    world.crm.upsert = real_upsert  # type: ignore[method-assign]
    world.restart()
    world.cycle()
    assert len(world.opportunities()) == 35


def test_a_dead_lettered_crm_change_is_replayed_from_its_payload():
    world = World()
    [ref] = referrals(1)
    world.pc.seed(ref)
    world.settle()
    world.salesperson(ref.id, StageName="Closed Lost")  # declining needs a reason
    world.cycle()
    [dead] = world.store.dead_letters(CONNECTION)

    from connector.engine.outbound import change_from_payload  # noqa: PLC0415

    change = change_from_payload(dead.payload, SF_MAPPING)
    change = dataclasses.replace(change, fields={**change.fields, "Decline_Reason__c": "Other"})
    report = RunReport(
        connection=CONNECTION, direction=Direction.OUTBOUND, started_at=world.clock.now()
    )
    world.sync.outbound.replay([change], report)

    assert world.pc.referrals[ref.id].lifecycle == DECLINED
    assert world.store.dead_letters(CONNECTION) == []
