"""The daemon with several connections: isolated failures, webhooks routed to their own
connection, and leases deciding which connections this process syncs (real apscheduler, fakes
for the services, intervals of one second)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_world import SF_MAPPING, referrals
from fakes import FakeCrm, FakePartnerCenter, TickingClock

from connector.clock import SystemClock
from connector.daemon.leases import LeaseKeeper
from connector.daemon.scheduler import Daemon
from connector.engine import ConnectionSync
from connector.ports import Direction
from connector.settings import ConnectionSettings, PartnerCenterSettings
from connector.state import MemoryStateStore
from connector.webhooks import WebhookEvent
from connector.wiring import Connection


class Side:
    """One connection's world: its own Partner Center, CRM and engine on a shared store."""

    def __init__(self, name: str, store: MemoryStateStore, count: int) -> None:
        clock = TickingClock(datetime(2026, 5, 10, 8, 0, tzinfo=UTC))
        self.pc = FakePartnerCenter(clock=clock)
        self.crm = FakeCrm(clock=clock)
        self.pc.seed(*referrals(count))
        pc_settings = PartnerCenterSettings(
            base_url="https://pc.example",
            authority="https://login.example/t",
            client_id="c",
            scopes=("s",),
            auth_mode="device_code",
            token_cache=Path("unused.json"),
        )
        sync = ConnectionSync(
            name, source=self.pc, crm=self.crm, store=store, spec=SF_MAPPING, clock=clock
        )
        self.connection = Connection(
            settings=ConnectionSettings(
                name=name, crm="salesforce", partner_center=pc_settings, interval_seconds=1.0
            ),
            spec=SF_MAPPING,
            crm=self.crm,
            partner_center=None,  # type: ignore[arg-type] # the daemon never touches it
            sync=sync,
        )

    def opportunities(self) -> int:
        return len(self.crm.records("Opportunity"))


def wait_until(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.fixture
def store() -> MemoryStateStore:
    return MemoryStateStore()


def running(daemon: Daemon) -> Iterator[threading.Thread]:
    thread = threading.Thread(
        target=daemon.run_until_stopped, kwargs={"install_signals": False}, daemon=True
    )
    thread.start()
    yield thread
    daemon.request_stop()
    thread.join(timeout=30)


def test_a_connection_whose_crm_is_down_does_not_hold_up_the_others(store):
    up, down = Side("up", store, 30), Side("down", store, 30)
    down.crm.rate_limit_next(10**9)  # every request refused, for ever
    daemon = Daemon([up.connection, down.connection], clock=SystemClock())
    for _ in running(daemon):
        wait_until(lambda: up.opportunities() == 30)
        wait_until(lambda: len(store.recent_runs("down", limit=10)) >= 4)  # it keeps trying

    assert down.opportunities() == 0
    failed = [r for r in store.recent_runs("down", limit=10) if r.direction is Direction.OUTBOUND]
    assert failed
    assert all(r.outcome == "failed" for r in failed)
    assert all(r.outcome in ("ok", "partial") for r in store.recent_runs("up", limit=10))


def test_a_webhook_event_is_synced_on_its_own_connection_only(store):
    a, b = Side("a", store, 3), Side("b", store, 3)
    same = next(iter(a.pc.referrals))  # both tenants happen to hold this referral id
    daemon = Daemon([a.connection, b.connection], clock=SystemClock())
    for _ in running(daemon):
        wait_until(lambda: a.opportunities() == 3 and b.opportunities() == 3)
        time.sleep(0.2)
        gets = (a.pc.requests["get"], b.pc.requests["get"])
        changed = datetime.now(UTC) + timedelta(seconds=1)
        daemon.webhook_receiver("a")(WebhookEvent("referral-updated", same, changed))
        wait_until(lambda before=gets[0]: a.pc.requests["get"] > before)
        time.sleep(0.2)
    assert b.pc.requests["get"] == gets[1]  # "b" never re-read it
    with pytest.raises(KeyError):
        daemon.webhook_receiver("nobody")


def test_only_the_connections_whose_lease_this_daemon_holds_are_synced(store):
    mine, theirs = Side("mine", store, 5), Side("theirs", store, 5)
    assert store.acquire_lease("theirs", "another-replica", timedelta(minutes=5))
    leases = LeaseKeeper(
        store, {"mine": timedelta(seconds=3), "theirs": timedelta(seconds=3)}, holder="me"
    )
    daemon = Daemon([mine.connection, theirs.connection], clock=SystemClock(), leases=leases)
    for _ in running(daemon):
        wait_until(lambda: mine.opportunities() == 5)
        time.sleep(1.5)  # more than an interval: "theirs" would have run by now
        assert theirs.opportunities() == 0
        store.release_lease("theirs", "another-replica")  # the other replica stops
        wait_until(lambda: theirs.opportunities() == 5, timeout=10)
    assert store.lease_holder("mine") is None  # given back at stop


class AheadClock:
    """An engine clock a year ahead of the wall (a sandbox clock moved forward)."""

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(days=365)


def test_the_first_cycle_runs_at_once_whatever_the_engine_clock_says(store):
    side = Side("ahead", store, 4)
    daemon = Daemon([side.connection], clock=AheadClock())
    for _ in running(daemon):
        wait_until(lambda: side.opportunities() == 4, timeout=10)


def test_a_run_skipped_while_a_long_cycle_goes_on_is_not_logged_as_a_warning(store, caplog):
    side = Side("slow", store, 5)
    real = side.connection.sync.run_cycle
    cycles: list[float] = []

    def slow_cycle() -> Any:
        cycles.append(time.monotonic())
        time.sleep(3.5)  # three intervals of 1 s: apscheduler skips the runs due meanwhile
        return real()

    side.connection.sync.run_cycle = slow_cycle  # type: ignore[method-assign]
    daemon = Daemon([side.connection], clock=SystemClock())
    with caplog.at_level("DEBUG", logger="apscheduler"):
        for _ in running(daemon):
            wait_until(lambda: len(cycles) >= 2, timeout=30)
        logging.getLogger("apscheduler.scheduler").warning(  # what apscheduler itself logs
            'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
            "slow", 1,
        )  # fmt: skip
        logging.getLogger("apscheduler.scheduler").warning("any other warning")

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["any other warning"]
