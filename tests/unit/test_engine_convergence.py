"""Property: crashes, restarts and duplicate deliveries never change where the sync ends up.

Two worlds get the same script of outside changes (Microsoft edits and expiries, salesperson
edits, accepts, wins, losses) with sync cycles in between. One runs undisturbed; the other is
killed at random points of its cycles (before or after a CRM write, or before a page is
recorded), restarted from its state, and has pages delivered again by rewinding
cursors. After every step both sides of both worlds must agree, with one opportunity per
referral.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from engine_world import CONNECTION, World, referrals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.engine import CRM_STREAM, PC_STREAM
from connector.model import Status

N = 6
STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Closed Won", "Closed Lost"]


class Crash(BaseException):
    """The process is killed: nothing below ``BaseException`` handlers sees it."""


def outside_change() -> st.SearchStrategy[tuple[Any, ...]]:
    i = st.integers(0, N - 1)
    return st.one_of(
        st.tuples(st.just("ms_notes"), i, st.sampled_from(["call", "demo", "budget ok"])),
        st.tuples(st.just("expire"), i),
        st.tuples(st.just("amount"), i, st.integers(0, 5).map(lambda k: Decimal(k * 1000))),
        st.tuples(
            st.just("stage"),
            i,
            st.sampled_from(STAGES),
            st.sampled_from([None, "Not a fit", "Other"]),
        ),
    )


def disturbance() -> st.SearchStrategy[tuple[Any, ...]]:
    return st.one_of(
        st.just(("none",)),
        st.tuples(st.just("crash_before_upsert"), st.integers(1, 3)),
        st.tuples(st.just("crash_after_upsert"), st.integers(1, 3)),
        st.tuples(st.just("crash_before_record"), st.integers(1, 4)),
        st.tuples(st.just("rewind"), st.sampled_from([PC_STREAM, CRM_STREAM])),
    )


def apply(world: World, change: tuple[Any, ...]) -> None:
    kind, index = change[0], change[1]
    rid = sorted(world.pc.referrals)[index]
    opportunity = world.opportunities().get(rid)
    if kind == "ms_notes":
        if not world.pc.referrals[rid].lifecycle.is_terminal:
            world.pc.microsoft_edit(rid, microsoft_notes=change[2])
    elif kind == "expire":
        if world.pc.referrals[rid].status is Status.NEW:
            world.pc.expire(rid)
    elif opportunity is None or opportunity["IsClosed"]:
        return  # a salesperson cannot edit what is not there, nor a closed deal
    elif kind == "amount":
        world.salesperson(rid, Amount=change[2])
    else:
        reason = change[3]
        world.salesperson(
            rid,
            StageName=change[2],
            Amount=Decimal(8000),
            Decline_Reason__c=reason,
            Loss_Reason__c=None if reason is None else "Other",
        )


def disturbed_cycle(world: World, how: tuple[Any, ...], saved: dict[str, Any]) -> None:
    """One cycle of the disturbed world: maybe killed midway, then restarted and run again."""
    undo: list[Any] = []
    if how[0] == "rewind" and how[1] in saved:
        world.store.set_cursor(CONNECTION, how[1], saved[how[1]])
    elif how[0] in ("crash_before_upsert", "crash_after_upsert"):
        real, calls = world.crm.upsert, [0]

        def upsert_then_die(writes):
            calls[0] += 1
            if calls[0] == how[1] and how[0] == "crash_before_upsert":
                raise Crash
            outcomes = real(writes)
            if calls[0] == how[1]:
                raise Crash
            return outcomes

        world.crm.upsert = upsert_then_die  # type: ignore[method-assign]
        undo.append(lambda: setattr(world.crm, "upsert", real))
    elif how[0] == "crash_before_record":
        real_record, calls = world.store.record_page, [0]

        def die_before_record(*args, **kwargs):
            calls[0] += 1
            if calls[0] == how[1]:
                raise Crash
            return real_record(*args, **kwargs)

        world.store.record_page = die_before_record  # type: ignore[method-assign]
        undo.append(lambda: setattr(world.store, "record_page", real_record))
    with contextlib.suppress(Crash):
        world.cycle()
    for restore in undo:
        restore()
    world.restart()
    world.cycle()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(st.lists(st.tuples(outside_change(), disturbance()), min_size=1, max_size=12))
def test_crashes_restarts_and_replays_converge_to_the_undisturbed_end_state(script):
    calm, rough = World(page_size=3, crm_page_size=3), World(page_size=3, crm_page_size=3)
    for world in (calm, rough):
        world.pc.seed(*referrals(N))
    calm.cycle()
    calm.cycle()
    disturbed_cycle(rough, ("none",), {})
    saved = {s: rough.store.get_cursor(CONNECTION, s) for s in (PC_STREAM, CRM_STREAM)}

    for change, how in script:
        apply(calm, change)
        apply(rough, change)
        calm.cycle()
        calm.cycle()
        disturbed_cycle(rough, how, saved)

        assert rough.end_state() == calm.end_state()
        assert len(rough.crm.records("Opportunity")) == N
        saved = {s: rough.store.get_cursor(CONNECTION, s) for s in (PC_STREAM, CRM_STREAM)}

    calm.settle()
    rough.settle()
    assert rough.end_state() == calm.end_state()
