"""Two daemons on one PostgreSQL: one syncs, the other waits; SIGKILL the one that syncs and the
other takes over within two intervals, with no duplicate and no lost update on either side."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from contract.postgres_server import PostgresServer, postgres_server
from daemon_process import log_records, own_sandbox, start_daemon, wait_until

from connector.cli import main
from connector.ports import StateStore
from connector.state import open_state_store
from connector.tour import write_sandbox_config
from sandbox.app import Sandbox
from sandbox.partner_center import generate_referrals

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from own_sandbox(tmp_path_factory)  # the daemon process keeps the wall clock


ROOT = Path(__file__).resolve().parents[2]
KEY = "Partner_Center_Referral_Id__c"
INTERVAL_S = 3


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def shared_config(sandbox: Sandbox, tmp_path: Path, postgres: PostgresServer) -> Iterator[Path]:
    sandbox.partner_center.store.clear()
    sandbox.salesforce.store.clear()
    with postgres.schema() as url:
        path = write_sandbox_config(sandbox, tmp_path, interval_seconds=INTERVAL_S)
        database = url.render_as_string(hide_password=False)
        text = re.sub(r'(?m)^url = "sqlite:.*"$', f"url = {json.dumps(database)}", path.read_text())
        path.write_text(text, encoding="utf-8")
        assert main(["login", "partner-center", "--config", str(path)]) == 0
        yield path


def opportunities(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(sandbox.salesforce.store.records("Opportunity"))


def by_referral(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {r[KEY]: r for r in opportunities(sandbox)}


def daemon(config: Path) -> subprocess.Popen[str]:
    return start_daemon(config, "--listen", "127.0.0.1:0")


def store_of(config: Path) -> StateStore:
    url = next(
        json.loads(line.split("=", 1)[1])
        for line in config.read_text().splitlines()
        if line.startswith("url = ") and "postgresql" in line
    )
    return open_state_store(url)


def holder_pid(config: Path) -> int | None:
    store = store_of(config)
    try:
        holder = store.lease_holder("sandbox")
    finally:
        store.close()
    return None if holder is None else int(holder.split(":")[1])


def test_the_standby_takes_over_within_two_intervals_without_duplicates_or_lost_updates(
    sandbox, shared_config, record_property
):
    sandbox.partner_center.store.seed_raw(generate_referrals(120, 31, sandbox.clock))
    first = daemon(shared_config)
    wait_until(lambda: holder_pid(shared_config) == first.pid)
    second = daemon(shared_config)  # the standby: the lease is taken
    processes = {first.pid: first, second.pid: second}
    try:
        wait_until(lambda: len(opportunities(sandbox)) == 120)
        time.sleep(INTERVAL_S)  # the standby has ticked: it holds nothing
        assert holder_pid(shared_config) == first.pid

        # the salesperson accepts ten, then the leader dies before it reads them
        opps = by_referral(sandbox)
        open_ids = [
            r["id"] for r in sandbox.partner_center.store.all_raw() if r["status"] == "New"
        ][:10]
        for rid in open_ids:
            sandbox.salesforce.salesperson.accept(opps[rid]["Id"], 9_000, date(2027, 6, 30))
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        killed = time.monotonic()
        arrivals = generate_referrals(140, 32, sandbox.clock)[120:]  # Microsoft goes on
        sandbox.partner_center.store.seed_raw(arrivals)
        for raw in arrivals:  # they arrive now (the generator dates them in the past)
            sandbox.partner_center.store.edit(raw["id"], name=f"{raw['name']} (new)")

        took_over = wait_until(lambda: holder_pid(shared_config) == second.pid, timeout=30)
        assert took_over <= 2 * INTERVAL_S, f"took {took_over:.1f} s"
        wait_until(lambda: len(opportunities(sandbox)) == 140, timeout=60)
        synced_new = time.monotonic() - killed

        def accepted() -> bool:
            raws = {r["id"]: r for r in sandbox.partner_center.store.all_raw()}
            return all(raws[rid]["status"] == "Active" for rid in open_ids)

        wait_until(accepted, timeout=60)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        stderr = {pid: p.communicate(timeout=60)[1] for pid, p in processes.items()}
    assert second.returncode == 0, stderr[second.pid][-2000:]
    keys = [r[KEY] for r in opportunities(sandbox)]
    assert len(keys) == len(set(keys)) == 140  # no duplicate: one opportunity per referral
    raws = {r["id"]: r for r in sandbox.partner_center.store.all_raw()}
    for rid in open_ids:  # no lost update: the accepts reached Partner Center, with the value
        assert raws[rid]["details"]["dealValue"] in (9000, "9000", 9000.0)
    events = [record["event"] for record in log_records(stderr[second.pid])]
    assert "lease_acquired" in events
    record_property("takeover_seconds", round(took_over, 1))
    record_property("new_referrals_synced_seconds", round(synced_new, 1))


def test_a_database_url_with_its_password_in_the_environment(postgres, tmp_path, capsys):
    with postgres.schema() as url:
        bare = url.set(password=None).render_as_string(hide_password=False)
        config = tmp_path / "c.toml"
        config.write_text(
            f'[state]\nurl = {json.dumps(bare)}\npassword_env = "RS_DB_PASSWORD"\n'
            '[[connection]]\nname = "x"\ncrm = "salesforce"\n'
            '[connection.partner_center]\nbase_url = "https://pc.example"\n'
            'authority = "https://login.example/t"\nclient_id = "c"\n'
            '[connection.salesforce]\ninstance_url = "https://x.my.salesforce.com"\n'
            'client_id = "c"\nclient_secret_env = "RS_SF"\n',
            encoding="utf-8",
        )
        os.environ["RS_DB_PASSWORD"] = str(url.password)
        os.environ["RS_SF"] = "s"
        try:
            assert main(["dlq", "list", "--config", str(config), "--json"]) == 0
        finally:
            del os.environ["RS_DB_PASSWORD"], os.environ["RS_SF"]
        assert json.loads(capsys.readouterr().out) == []
        engine = sa.create_engine(url)
        with engine.connect() as conn:  # the store made its tables in that schema
            assert conn.scalar(sa.text("SELECT count(*) FROM leases")) == 0
        engine.dispose()


def with_connections(config: Path, count: int) -> None:
    """The config's one connection made ``count`` (c0 … c5), each with its own state."""
    text = config.read_text()
    head, _, block = text.partition("[[connection]]")
    copies = [block.replace('name = "sandbox"', f'name = "c{i}"') for i in range(count)]
    config.write_text(head + "".join(f"[[connection]]{copy}" for copy in copies), "utf-8")


def lease_holders(config: Path) -> dict[str, int]:
    store = store_of(config)
    try:
        leases = store.leases()
    finally:
        store.close()
    return {name: int(h.split(":")[1]) for name, h in leases.items() if name.startswith("c")}


def test_two_replicas_split_six_connections_and_the_survivor_takes_them_all(sandbox, shared_config):
    with_connections(shared_config, 6)  # an empty tenant: the cycles are idle, the leases not
    first = daemon(shared_config)
    wait_until(lambda: len(lease_holders(shared_config)) == 6)
    second = daemon(shared_config)
    processes = [first, second]
    try:

        def split() -> bool:
            holders = list(lease_holders(shared_config).values())
            return sorted(holders.count(p.pid) for p in processes) == [3, 3]

        wait_until(split, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        took_over = wait_until(
            lambda: list(lease_holders(shared_config).values()) == [second.pid] * 6, timeout=30
        )
        assert took_over <= 2 * INTERVAL_S, f"took {took_over:.1f} s"
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
    assert second.returncode == 0
