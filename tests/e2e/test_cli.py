"""The ``referral-sync`` command: help, config check, login and README's first command."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from connector.cli import main
from connector.tour import write_sandbox_config
from sandbox.app import Sandbox

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command with fixed arguments
        [sys.executable, "-m", "connector", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )


def test_help_lists_every_command_with_examples():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in (
        "config",
        "login",
        "try",
        "demo",
        "run",
        "once",
        "plan",
        "status",
        "dlq",
        "webhooks",
        "sandbox",
    ):
        assert command in result.stdout
    assert "examples:" in result.stdout


def test_config_check_lists_every_problem_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[connection]]\nname = "x"\ncrm = "hubspot"\n', encoding="utf-8")
    assert main(["config", "check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: connection[0].crm: must be one of salesforce, dynamics" in err
    assert f"{bad}: connection[0].partner_center: is required" in err


def test_config_check_summarises_a_good_config(sandbox: Sandbox, tmp_path, capsys):
    config = write_sandbox_config(sandbox, tmp_path)
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "OK, 1 connection(s)" in out
    assert "sandbox: Partner Center https://" in out


def test_login_signs_in_with_device_code_and_stores_an_owner_only_cache(
    sandbox: Sandbox, tmp_path, capsys
):
    config = write_sandbox_config(sandbox, tmp_path)
    assert main(["login", "partner-center", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "enter the code" in out
    assert "signed in to Partner Center as partner.admin@" in out
    cache = tmp_path / "partner-center-token-cache.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert json.loads(cache.read_text(encoding="utf-8"))["RefreshToken"]


def test_login_with_an_unknown_connection_name_fails_clearly(sandbox, tmp_path, capsys):
    config = write_sandbox_config(sandbox, tmp_path)
    assert main(["login", "partner-center", "--config", str(config), "--connection", "x"]) == 2
    assert "--connection: no 'x'; known: sandbox" in capsys.readouterr().err


def test_readme_first_command_runs_the_two_way_sync_end_to_end(tmp_path):
    result = run_cli("try", "--state-dir", str(tmp_path / "sbx"), "--referrals", "230")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "signed in as partner.admin@" in out
    assert "checked against the org's metadata" in out
    assert "230 opportunities created (230 in the org)" in out
    assert re.search(r"sent: accept \d+", out), out
    assert "one more cycle cost partner_center 1, salesforce 1" in out
    assert "Dead letters: 0" in out
    state = tmp_path / "sbx" / "state.db"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    # the logs are JSON lines and carry no secret from the sandbox
    info = json.loads((tmp_path / "sbx" / "sandbox.json").read_text(encoding="utf-8"))
    secrets = [
        info["entra"]["partner_center"]["client_secret"],
        info["entra"]["partner_center"]["password"],
    ]
    for line in result.stderr.splitlines():
        record = json.loads(line)
        assert "event" in record
        assert not any(secret in line for secret in secrets)


def test_readme_first_command_the_demo_shows_the_two_way_flow_and_stops_by_itself(tmp_path):
    result = run_cli(
        "demo", "--state-dir", str(tmp_path / "demo"), "--referrals", "40", "--duration", "20"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "cycle inbound: created 40" in out
    assert re.search(r"salesperson: (accept|decline) ", out), out
    assert re.search(r"cycle outbound: .*(accept|decline) \d+", out), out
    assert "Salesforce: 40 opportunities" in out
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert "daemon_started" in events
    assert events[-1] == "daemon_stopped"


def test_try_works_with_a_state_dir_relative_to_the_working_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "connector", "try", "--state-dir", "rel-state", "--referrals", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "20 opportunities created" in result.stdout
    config = (tmp_path / "rel-state" / "try.toml").read_text(encoding="utf-8")
    assert f'ca_bundle = "{tmp_path / "rel-state" / "ca.pem"}"' in config
