"""The status page as ops see it: rendered by a real browser (Debian's headless Chromium) from
the daemon's HTTP server after a real sync on the sandbox, and checked for what it must say.

``RS_UPDATE_SCREENSHOT=1 pytest tests/e2e/test_status_page_browser.py`` also writes the
screenshot to ``docs/status-page.png``.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.daemon.ops import Ops
from connector.observe.metrics import Metrics
from connector.settings import load_settings
from connector.state import open_state_store
from connector.tour import write_sandbox_config
from connector.wiring import build_connection
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (  # what this machine's closed network needs (see the env notes), and a clean profile
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, (
        "this test needs Debian's chromium (`apt-get install chromium`; .ci/run installs it)"
    )
    return subprocess.run(  # noqa: S603 - a fixed browser binary with fixed flags
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )


class StatusUrl(str):
    contact_email: str


@pytest.fixture
def status_url(sandbox: Sandbox, tmp_path: Path) -> Iterator[StatusUrl]:
    sandbox.partner_center.store.clear()
    sandbox.salesforce.store.clear()
    referrals = generate_referrals(30, 17, sandbox.clock)
    bad = referrals[0]
    referrals[0] = {
        **bad,
        "status": "New",
        "substatus": "Pending",
        "details": {**bad["details"], "dealValue": "lots"},
    }
    sandbox.partner_center.store.seed_raw(referrals)
    settings = load_settings(write_sandbox_config(sandbox, tmp_path, interval_seconds=30))
    store = open_state_store("memory://")
    metrics = Metrics()
    connection = build_connection(
        settings.connections[0], store, clock=sandbox.clock, on_request=metrics.observe_request
    )
    connection.partner_center.auth.login()
    ops = Ops([connection], store, clock=sandbox.clock, metrics=metrics)
    ops.observe(connection, connection.sync.run_cycle())
    url = ops.serve("127.0.0.1", 0)
    found = StatusUrl(f"{url}/status")
    found.contact_email = bad["customerProfile"]["team"][0]["email"]
    yield found
    ops.stop()
    store.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_status_page_renders_in_chromium_and_says_what_ops_need(status_url, tmp_path):
    dom = chromium(tmp_path / "profile-dom", "--dump-dom", status_url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "<title>Referral Sync" in page
    assert "sandbox" in page  # the connection's card
    assert "Salesforce" in page
    assert "behind Partner Center" in page  # the lag, in words
    assert "dealValue" in page  # the dead letter, with the field its reason names
    assert status_url.contact_email not in page  # ...but never its payload's customer data
    assert "inbound" in page
    assert "outbound" in page

    shot = tmp_path / "status-page.png"
    taken = chromium(
        tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,900", status_url
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert png_size(shot.read_bytes()) == (1280, 900)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    if os.environ.get("RS_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "status-page.png")
