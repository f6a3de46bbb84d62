"""``sandbox serve`` as a process, and the Sandbox's start-up choices."""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.app import Sandbox
from sandbox.clock import SandboxClock
from sandbox.testing import ca_session as ca_session_for
from sandbox.testing import random_loopback_host

pytestmark = pytest.mark.e2e


def wait_for(path: Path, process: subprocess.Popen[str], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"sandbox serve exited early with {process.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} was not written within {timeout_s} s")
        time.sleep(0.05)


def list_referrals(session, info):
    pc = info["entra"]["partner_center"]
    token = session.post(
        f"{info['entra']['authority']}/oauth2/v2.0/token",
        data={
            "client_id": pc["client_id"],
            "grant_type": "password",
            "username": pc["username"],
            "password": pc["password"],
            "scope": pc["scope"],
        },
    ).json()["access_token"]
    response = session.get(
        f"{info['partner_center']['base_url']}/referrals",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()["value"]


@pytest.fixture
def served(tmp_path):
    state_dir = tmp_path / "state"
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and fixed arguments)
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--state-dir",
            str(state_dir),
            "--host",
            random_loopback_host(),
            "--faults",
            "partner_center/referrals_create:500=0.5",
            "--clock-speed",
            "60",
            "--referrals",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(state_dir / "sandbox.json", process)
        yield process, state_dir
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_serve_writes_a_private_sandbox_json_answers_and_stops_cleanly_on_sigterm(served):
    process, state_dir = served
    info_path = state_dir / "sandbox.json"
    assert stat.S_IMODE(info_path.stat().st_mode) == 0o600
    info = json.loads(info_path.read_text())

    assert Path(info["ca_bundle"]).is_file()
    entra = info["entra"]
    assert entra["authority"].endswith(f"/{entra['tenant_id']}")
    assert set(entra["partner_center"]) >= {
        "client_id",
        "client_secret",
        "username",
        "password",
        "scope",
    }
    assert set(entra["dataverse"]) >= {"client_id", "client_secret", "scope"}
    assert info["clock_speed"] == 60
    with ca_session_for(info["ca_bundle"]) as session:
        response = session.get(f"{entra['authority']}/v2.0/.well-known/openid-configuration")
        assert response.status_code == 200
        assert len(list_referrals(session, info)) == 3

    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert f"entra {entra['authority'].rsplit('/', 1)[0]}" in stdout
    assert f"sandbox.json {info_path}" in stdout


def test_serve_stops_cleanly_on_sigint(served):
    process, _ = served
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0


def test_serve_refuses_a_bad_fault_spec(tmp_path):
    result = subprocess.run(  # noqa: S603 (our own interpreter and fixed arguments)
        [sys.executable, "-m", "sandbox", "serve", "--state-dir", str(tmp_path), "--faults", "x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "expected 'service" in result.stderr
    assert not (tmp_path / "sandbox.json").exists()


def test_without_port_443_the_sandbox_runs_and_says_password_grant_is_off(tmp_path, caplog):
    host = random_loopback_host()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            squatter.bind((host, 443))
        except OSError:
            pytest.skip("cannot bind port 443 here (not root?)")
        squatter.listen(1)
        with Sandbox(tmp_path, host=host) as sandbox:
            assert sandbox.info["entra"]["user_realm_discovery"] is False
            assert "entra_user_realm" not in sandbox.servers
            with ca_session_for(str(sandbox.ca_path)) as session:
                discovery = (
                    f"{sandbox.info['entra']['authority']}/v2.0/.well-known/openid-configuration"
                )
                assert session.get(discovery).status_code == 200
    assert "user_realm_listener_unavailable" in caplog.text


def test_stop_frees_the_ports(tmp_path):
    host = random_loopback_host()
    with Sandbox(tmp_path, host=host) as sandbox:
        port = sandbox.servers["entra"].port
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind((host, port))


def test_seed_file_and_generated_referrals_are_both_loaded(tmp_path):
    pc = pytest.importorskip("sandbox.partner_center")
    seeded = pc.generate_referrals(2, 99, SandboxClock())
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"value": seeded}))

    with Sandbox(
        tmp_path / "state", host=random_loopback_host(), seed_file=seed_file, referrals=3
    ) as sandbox:
        assert sandbox.partner_center is not None
        stored = sandbox.partner_center.store.all_raw()

    assert len(stored) == 5
    assert [r["id"] for r in stored[:2]] == [r["id"] for r in seeded]
