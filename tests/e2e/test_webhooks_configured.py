"""Webhooks the way an operator sets them up: ``[webhooks]`` in the config, ``referral-sync
webhooks register``, then ``referral-sync run`` takes the signed events on the connection's own
route and syncs them at once (the poll is an hour away), and refuses a forged one."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_process import log_records, own_sandbox, start_daemon, wait_until

from connector.cli import main
from connector.demo import free_port
from connector.tour import write_sandbox_config
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from own_sandbox(tmp_path_factory)  # the daemon process keeps the wall clock


ROOT = Path(__file__).resolve().parents[2]
KEY = "Partner_Center_Referral_Id__c"


def opportunities(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r[KEY]: r for r in sandbox.salesforce.store.records("Opportunity")}


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    status = main([*args, "--json"])
    return status, json.loads(capsys.readouterr().out)


@pytest.fixture
def configured(sandbox: Sandbox, tmp_path: Path) -> tuple[Path, int]:
    sandbox.partner_center.store.clear()
    sandbox.salesforce.store.clear()
    port = free_port()
    path = write_sandbox_config(sandbox, tmp_path, interval_seconds=3600, webhooks_port=port)
    assert main(["login", "partner-center", "--config", str(path)]) == 0
    return path, port


def test_register_then_show_names_the_connections_own_route(configured, capsys):
    config, port = configured
    assert cli_json(capsys, "webhooks", "show", "--config", str(config)) == (0, {"sandbox": {}})

    status, answers = cli_json(capsys, "webhooks", "register", "--config", str(config))

    assert status == 0
    url = f"http://127.0.0.1:{port}/webhooks/partner-center/sandbox"
    assert answers["sandbox"]["WebhookUrl"] == url
    assert sorted(answers["sandbox"]["WebhookEvents"]) == ["referral-created", "referral-updated"]
    status, shown = cli_json(capsys, "webhooks", "show", "--config", str(config))
    assert (status, shown["sandbox"]["WebhookUrl"]) == (0, url)


def test_register_refuses_while_webhooks_are_disabled(sandbox, tmp_path, capsys):
    config = write_sandbox_config(sandbox, tmp_path)
    assert main(["webhooks", "register", "--config", str(config)]) == 2
    assert "webhooks.enabled" in capsys.readouterr().err
    assert sandbox.partner_center.webhooks.registration is None


def test_an_unknown_connection_is_named_in_the_error(configured, capsys):
    config, _ = configured
    assert main(["webhooks", "show", "--config", str(config), "--connection", "nope"]) == 2
    assert "known: sandbox" in capsys.readouterr().err


def test_the_daemon_syncs_a_registered_event_at_once_and_refuses_a_forged_one(sandbox, configured):
    config, port = configured
    sandbox.partner_center.store.seed_raw(generate_referrals(15, 21, sandbox.clock))
    assert main(["webhooks", "register", "--config", str(config)]) == 0
    daemon = start_daemon(config)
    try:
        wait_until(lambda: len(opportunities(sandbox)) == 15)  # the first cycle, at start
        open_ones = [r for r in sandbox.partner_center.store.all_raw() if r["status"] != "Closed"]
        rid = open_ones[0]["id"]
        # once our CRM id is written back to it, the edit below is Microsoft's alone
        wait_until(lambda: (sandbox.partner_center.store.get_raw(rid) or {})["externalReferenceId"])
        started = time.monotonic()
        sandbox.partner_center.store.edit(rid, inviteContext={"notes": "Asked for a demo"})
        wait_until(lambda: opportunities(sandbox)[rid]["Microsoft_Notes__c"] == "Asked for a demo")
        assert time.monotonic() - started < 10  # the next poll is an hour away

        sandbox.partner_center.webhooks.emit_forged(rid)
        wait_until(lambda: any(a.status == 401 for a in sandbox.partner_center.webhooks.attempts()))
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr[-2000:]
    records = log_records(stderr)
    started_event = next(r for r in records if r["event"] == "ops_server_started")
    assert (started_event["url"], started_event["webhooks"]) == (f"http://127.0.0.1:{port}", True)
    synced = [r for r in records if r["event"] == "webhook_synced"]
    assert [(r["connection"], r["referral_id"]) for r in synced] == [("sandbox", rid)]
    assert any(r["event"] == "webhook_rejected" for r in records)
