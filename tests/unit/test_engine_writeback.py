"""The engine's batching and its concurrent write-backs: what the benchmark's goals rest on."""

from __future__ import annotations

import threading
import time

from engine_world import CONNECTION, World, referrals

from connector.engine.writeback import source_write_concurrency
from connector.errors import TransientError


def test_pages_are_gathered_into_the_crms_batch_size():
    world = World(page_size=100)
    world.crm.max_batch = 200  # type: ignore[attr-defined]
    world.pc.seed(*referrals(500))
    before = world.crm.request_count

    world.cycle()

    assert world.crm.request_count - before == 3 + 1  # 200 + 200 + 100, then the CRM feed
    assert len(world.opportunities()) == 500


def test_a_crm_that_names_no_batch_size_gets_one_upsert_per_page():
    world = World(page_size=100)
    world.pc.seed(*referrals(250))
    before = world.crm.request_count

    world.cycle()

    assert world.crm.request_count - before == 3 + 1


def test_write_backs_go_out_several_at_once_and_each_reaches_partner_center():
    world = World()
    world.pc.seed(*referrals(40))
    world.pc.write_concurrency = 8  # type: ignore[attr-defined]
    real_update = world.pc.update
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def slow_update(update, current):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.01)
        with lock:
            in_flight[0] -= 1
            return real_update(update, current)

    world.pc.update = slow_update  # type: ignore[method-assign]
    world.cycle()

    assert most[0] > 1
    opps = world.opportunities()
    assert all(
        ref.external_reference_id == opps[rid]["Id"] for rid, ref in world.pc.referrals.items()
    )


def test_a_transient_fault_postpones_the_write_backs_not_yet_sent_to_the_next_cycle():
    world = World()
    world.pc.seed(*referrals(5))
    real_update = world.pc.update
    calls = []

    def failing_update(update, current):
        calls.append(update.referral_id)
        if len(calls) == 1:
            raise TransientError("503")
        return real_update(update, current)

    world.pc.update = failing_update  # type: ignore[method-assign]
    result = world.cycle()

    assert len(calls) == 1  # one at a time (a fake says nothing of concurrency): the rest wait
    assert "postponed" in result.inbound.errors[0]
    assert len(world.store.links_awaiting_crm_id(CONNECTION)) == 5
    world.cycle()
    assert world.store.links_awaiting_crm_id(CONNECTION) == []


def test_a_source_says_how_many_writes_it_takes_at_once():
    class Source:
        write_concurrency = 8

    assert source_write_concurrency(Source()) == 8
    assert source_write_concurrency(object()) == 1
