"""A backfill whose referrals share one change time (more than a page of them) loses none,
though the CRM ids are written back while the feed is still paging over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.settings import load_settings
from connector.state import open_state_store
from connector.tour import write_sandbox_config
from connector.wiring import build_connection
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e
KEY = "Partner_Center_Referral_Id__c"


def test_a_run_of_referrals_stamped_with_one_instant_all_reach_the_crm(
    sandbox: Sandbox, tmp_path: Path
):
    store_pc = sandbox.partner_center.store
    store_pc.clear()
    sandbox.salesforce.store.clear()
    store_pc.seed_raw(generate_referrals(450, 5, sandbox.clock))
    ids = [r["id"] for r in store_pc.all_raw()]
    store_pc.stamp_updated(ids[:350], "2026-01-01T00:00:00.0000000Z")  # 3.5 pages of one instant
    settings = load_settings(write_sandbox_config(sandbox, tmp_path))
    state = open_state_store(f"sqlite:///{tmp_path}/state.db")
    connection = build_connection(settings.connections[0], state, clock=sandbox.clock)
    connection.partner_center.auth.login()
    try:
        connection.sync.run_cycle()
    finally:
        state.close()

    synced = {r[KEY] for r in sandbox.salesforce.store.records("Opportunity")}
    assert synced == set(ids)
