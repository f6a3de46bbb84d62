"""The daemon takes Partner Center's signed webhooks: a change reaches the CRM at once, long
before the next poll, and our own writes announced back are not synced again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.daemon.ops import Ops
from connector.daemon.scheduler import Daemon
from connector.demo import serve_with_webhooks
from connector.settings import load_settings
from connector.state import open_state_store
from connector.tour import write_sandbox_config
from connector.wiring import Connection, build_connection
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e
KEY = "Partner_Center_Referral_Id__c"


def opportunities(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r[KEY]: r for r in sandbox.salesforce.store.records("Opportunity")}


def wait_until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def running(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[Sandbox, Connection, Daemon]]:
    sandbox.partner_center.store.clear()
    sandbox.salesforce.store.clear()
    sandbox.partner_center.store.seed_raw(generate_referrals(20, 8, sandbox.clock))
    settings = load_settings(write_sandbox_config(sandbox, tmp_path, interval_seconds=3600))
    store = open_state_store("memory://")
    connection = build_connection(settings.connections[0], store, clock=sandbox.clock)
    connection.partner_center.auth.login()
    ops = Ops([connection], store, clock=sandbox.clock)
    synced: list[str] = []
    daemon = Daemon(
        [connection],
        clock=sandbox.clock,
        on_webhook_sync=lambda conn, rid, report: synced.append(rid),
    )
    daemon.synced = synced  # type: ignore[attr-defined]
    serve_with_webhooks(sandbox, connection, ops, daemon)
    thread = threading.Thread(
        target=daemon.run_until_stopped, kwargs={"install_signals": False}, daemon=True
    )
    thread.start()
    yield sandbox, connection, daemon
    daemon.request_stop()
    thread.join(timeout=30)
    ops.stop()
    store.close()
    sandbox.partner_center.webhooks.reset()


def test_a_partner_center_change_reaches_the_crm_by_webhook_long_before_the_poll(running):
    sandbox, _, daemon = running
    wait_until(lambda: len(opportunities(sandbox)) == 20)  # the first cycle, at start
    wait_until(sandbox.partner_center.webhooks.delivered)  # our write-backs, announced
    time.sleep(1)
    assert daemon.synced == []  # our own writes coming back are recognised, not synced

    rid = next(r["id"] for r in sandbox.partner_center.store.all_raw() if r["status"] != "Closed")
    started = time.monotonic()
    sandbox.partner_center.store.edit(rid, inviteContext={"notes": "Customer called again"})

    wait_until(lambda: opportunities(sandbox)[rid]["Microsoft_Notes__c"] == "Customer called again")
    elapsed = time.monotonic() - started
    assert elapsed < 10  # the poll is an hour away: only the webhook can have done it
    wait_until(lambda: daemon.synced != [])  # the callback runs just after the CRM write
    assert daemon.synced == [rid]


def test_a_forged_event_is_refused_and_syncs_nothing(running):
    sandbox, _, daemon = running
    wait_until(lambda: len(opportunities(sandbox)) == 20)
    rid = sandbox.partner_center.store.all_raw()[0]["id"]

    sandbox.partner_center.webhooks.emit_forged(rid)
    wait_until(lambda: any(a.status == 401 for a in sandbox.partner_center.webhooks.attempts()))

    assert daemon.synced == []
