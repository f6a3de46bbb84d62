"""``once``, ``plan``, ``status``, ``dlq`` and the daemon (``run``) against the sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from daemon_process import log_records, own_sandbox, start_daemon, wait_until

from connector.cli import main
from connector.tour import write_sandbox_config
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from own_sandbox(tmp_path_factory)  # the daemon process keeps the wall clock


ROOT = Path(__file__).resolve().parents[2]
KEY = "Partner_Center_Referral_Id__c"


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path) -> Path:
    sandbox.partner_center.store.clear()
    sandbox.salesforce.store.clear()
    path = write_sandbox_config(sandbox, tmp_path, interval_seconds=1)
    assert main(["login", "partner-center", "--config", str(path)]) == 0
    return path


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    status = main([*args, "--json"])
    out = capsys.readouterr().out
    return status, json.loads(out)


def opportunities(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r[KEY]: r for r in sandbox.salesforce.store.records("Opportunity")}


def test_plan_shows_the_writes_then_once_makes_them_and_status_reports_the_runs(
    sandbox, config, capsys
):
    sandbox.partner_center.store.seed_raw(generate_referrals(12, 3, sandbox.clock))

    status, planned = cli_json(capsys, "plan", "--config", str(config))
    assert status == 0
    assert [p["action"] for p in planned] == ["create"] * 12
    assert opportunities(sandbox) == {}

    status, reports = cli_json(capsys, "once", "--config", str(config))
    assert status == 0
    inbound = next(r for r in reports if r["direction"] == "inbound")
    assert (inbound["outcome"], inbound["created"]) == ("ok", 12)
    assert len(opportunities(sandbox)) == 12

    status, state = cli_json(capsys, "status", "--config", str(config))
    assert status == 0
    [connection] = state
    assert connection["dead_letters"] == 0
    assert {r["direction"] for r in connection["runs"]} == {"inbound", "outbound"}
    assert 0 <= connection["lag_seconds"] < 60  # the inbound cycle just succeeded
    assert set(connection["last_success"]) == {"inbound", "outbound"}
    token = connection["partner_center_token"]
    assert token["signed_in"] is True  # the fixture logged in
    renewed = datetime.fromisoformat(token["refresh_token_renewed_at"])
    assert datetime.now(UTC) - renewed < timedelta(minutes=10)
    assert token["refresh_idle_expires_at"] is not None

    capsys.readouterr()
    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "s behind Partner Center" in text
    assert "Partner Center sign-in: signed in; lapses if unused for 90 more day(s)" in text


def test_a_dead_letter_is_listed_shown_and_replayed_once_the_record_is_fixed(
    sandbox, config, capsys
):
    [raw] = generate_referrals(1, 5, sandbox.clock)
    raw = {
        **raw,
        "status": "New",
        "substatus": "Pending",
        "details": {**raw["details"], "dealValue": "lots"},
    }
    sandbox.partner_center.store.seed_raw([raw])

    assert main(["once", "--config", str(config)]) == 0  # a dead letter is not a failed cycle
    _, letters = cli_json(capsys, "dlq", "list", "--config", str(config))
    [letter] = letters
    assert letter["record_id"] == raw["id"]
    _, mine = cli_json(capsys, "dlq", "list", "--config", str(config), "--connection", "sandbox")
    assert mine == letters
    _, others = cli_json(capsys, "dlq", "list", "--config", str(config), "--connection", "other")
    assert others == []
    assert "dealValue" in letter["reason"]
    capsys.readouterr()
    assert main(["dlq", "show", str(letter["id"]), "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["payload"]["details"]["dealValue"] == "lots"

    assert main(["dlq", "replay", str(letter["id"]), "--config", str(config)]) == 1  # still bad
    sandbox.partner_center.store.edit(raw["id"], details={"dealValue": 12000})
    assert main(["dlq", "replay", str(letter["id"]), "--config", str(config)]) == 0

    assert raw["id"] in opportunities(sandbox)
    _, letters = cli_json(capsys, "dlq", "list", "--config", str(config))
    assert letters == []


def test_dlq_drop_resolves_without_syncing_and_an_unknown_id_is_refused(sandbox, config, capsys):
    [raw] = generate_referrals(1, 6, sandbox.clock)
    sandbox.partner_center.store.seed_raw([{**raw, "status": "Open"}])
    main(["once", "--config", str(config)])
    _, [letter] = cli_json(capsys, "dlq", "list", "--config", str(config))

    assert main(["dlq", "drop", str(letter["id"]), "--config", str(config)]) == 0
    assert main(["dlq", "drop", "999999", "--config", str(config)]) == 2
    _, letters = cli_json(capsys, "dlq", "list", "--config", str(config))
    assert letters == []
    assert opportunities(sandbox) == {}


def test_the_daemon_syncs_on_its_interval_and_exits_0_on_sigterm(sandbox, config):
    sandbox.partner_center.store.seed_raw(generate_referrals(30, 9, sandbox.clock))
    daemon = start_daemon(config, "--listen", "127.0.0.1:0")
    try:
        wait_until(lambda: len(opportunities(sandbox)) == 30)
        more = generate_referrals(31, 10, sandbox.clock)[30:]  # a new referral while it runs
        sandbox.partner_center.store.seed_raw(more)
        sandbox.partner_center.store.edit(more[0]["id"], name="Arrived while the daemon ran")
        wait_until(lambda: more[0]["id"] in opportunities(sandbox))
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr[-2000:]
    events = [record["event"] for record in log_records(stderr)]
    assert events.index("daemon_started") < events.index("daemon_stopping")
    assert "cycle_finished" in events
    assert events[-1] == "daemon_stopped"


def test_an_org_missing_a_mapped_field_stops_start_up_naming_it(sandbox, config, capsys):
    sandbox.salesforce.org.remove_field("Opportunity", "Microsoft_Notes__c")
    try:
        status = main(["once", "--config", str(config)])
    finally:
        sandbox.salesforce.reset()

    assert status == 2
    err = capsys.readouterr().err
    assert "Opportunity.Microsoft_Notes__c" in err
    assert "salesforce.yaml" in err


def test_a_broken_mapping_file_stops_start_up_with_its_path(sandbox, config, tmp_path, capsys):
    mapping = tmp_path / "broken.yaml"
    mapping.write_text("version: 1\ncrm: salesforce\nfields: {}\n", encoding="utf-8")
    text = config.read_text(encoding="utf-8").replace(
        'crm = "salesforce"', f'crm = "salesforce"\nmapping = "{mapping}"'
    )
    config.write_text(text, encoding="utf-8")

    assert main(["once", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{mapping}: fields: maps no field" in err
    assert f"{mapping}: lifecycle" in err


def test_check_says_ok_for_a_ready_connection_and_names_what_is_missing_otherwise(
    sandbox, config, capsys
):
    assert main(["check", "--config", str(config)]) == 0
    assert "sandbox: OK" in capsys.readouterr().out

    sandbox.salesforce.org.remove_picklist_value("Opportunity", "StageName", "Qualification")
    try:
        assert main(["check", "--config", str(config)]) == 1
    finally:
        sandbox.salesforce.reset()
    out = capsys.readouterr().out
    assert "sandbox: FAILED" in out
    assert "Qualification" in out


def test_once_at_a_terminal_shows_a_live_progress_table(sandbox, config):
    import pty  # noqa: PLC0415 - POSIX only, like the daemon

    sandbox.partner_center.store.seed_raw(generate_referrals(250, 13, sandbox.clock))
    leader, follower = pty.openpty()
    try:
        once = subprocess.run(  # noqa: S603 - our own command
            [sys.executable, "-m", "connector", "once", "--config", str(config)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "160"},
            timeout=120,
            check=False,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end is closed: all read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert once.returncode == 0, once.stderr[-2000:]
    assert "received" in screen
    assert "per second" in screen
    assert "250" in screen  # the table's last state: every referral received
    assert "sandbox inbound: ok (created 250" in screen  # then the summary lines


def test_sigterm_in_the_middle_of_a_backfill_exits_0_and_the_next_start_resumes(sandbox, config):
    referrals = generate_referrals(1000, 23, sandbox.clock)
    sandbox.partner_center.store.seed_raw(referrals)
    sandbox.faults.latency_ms = 15  # every request takes a while: the backfill is in flight
    daemon = start_daemon(config, "--listen", "127.0.0.1:0")
    try:
        wait_until(lambda: opportunities(sandbox))
    finally:
        daemon.send_signal(signal.SIGTERM)  # mid-backfill: the first batch has just landed
        _, stderr = daemon.communicate(timeout=120)
    sandbox.faults.latency_ms = 0
    assert daemon.returncode == 0, stderr[-2000:]
    inbound = next(
        r
        for r in log_records(stderr)
        if r["event"] == "cycle_finished" and r["direction"] == "inbound"
    )
    assert inbound["stopped_early"] == 1
    synced_before = len(opportunities(sandbox))
    assert 0 < synced_before < 1000

    assert main(["once", "--config", str(config)]) == 0  # the next start resumes

    keys = [r[KEY] for r in sandbox.salesforce.store.records("Opportunity")]
    assert len(keys) == len(set(keys)) == 1000  # every referral, none twice
    for raw in sandbox.partner_center.store.all_raw():
        if raw["status"] != "Closed":
            assert raw["externalReferenceId"], raw["id"]  # every CRM id written back


def test_the_daemon_refuses_to_start_without_a_partner_center_sign_in(sandbox, tmp_path, capsys):
    sandbox.salesforce.store.clear()
    config = write_sandbox_config(sandbox, tmp_path, interval_seconds=1)  # no login first
    assert main(["run", "--config", str(config), "--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert "connection.sandbox.partner_center" in err
    assert "referral-sync login partner-center" in err
    assert opportunities(sandbox) == {}
