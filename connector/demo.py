"""``referral-sync demo``: the sandbox, the daemon and a salesperson, together, for a while.

The sandbox serves Entra ID, Partner Center (with generated referrals) and a Salesforce org; the
daemon syncs them every few seconds and takes Partner Center's signed webhooks (a change reaches
Salesforce at once, the poll catches anything missed); a simulated salesperson works the
opportunities in Salesforce (accepts, declines, wins, loses, edits) and Microsoft now and then
edits a referral.
What each cycle did is printed as it happens; the JSON log lines (one event a line) go to
stderr. It stops after ``--duration`` seconds or on Ctrl-C / SIGTERM, finishing the page in hand.
"""

from __future__ import annotations

import collections
import random
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from connector.daemon.ops import Ops, serve_ops
from connector.daemon.scheduler import Daemon
from connector.engine import CycleResult, RunReport
from connector.observe.metrics import Metrics
from connector.settings import WebhookSettings, load_settings
from connector.state import open_state_store
from connector.tour import write_sandbox_config
from connector.webhooks.setup import (
    build_verifier,
    connection_webhook_url,
    register_connection,
    webhook_handlers,
    webhook_path,
)
from connector.wiring import Connection, build_connection
from sandbox.app import Sandbox

__all__ = ["run_demo"]

DEMO_INTERVAL_S = 5
WORK_EVERY_S = 1.5


def run_demo(
    state_dir: Path, *, referrals: int, duration: float | None, out: TextIO, seed: int = 7
) -> int:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    state_dir = state_dir.resolve()  # the config it writes names absolute paths
    state_dir.mkdir(parents=True, exist_ok=True)
    with Sandbox(state_dir, referrals=referrals, user_realm_port=None) as sandbox:
        config = write_sandbox_config(
            sandbox, state_dir, interval_seconds=DEMO_INTERVAL_S, webhooks_port=free_port()
        )
        settings = load_settings(config)
        say(f"sandbox up; config {config}; state {settings.state.url}")
        say(f"  Partner Center {sandbox.info['partner_center']['base_url']}")
        say(f"  Salesforce     {sandbox.info['salesforce']['instance_url']}")
        store = open_state_store(settings.state.url)
        try:
            metrics = Metrics()
            conn_settings = settings.connections[0]
            connection = build_connection(
                conn_settings,
                store,
                clock=sandbox.clock,
                prompt=lambda m: None,
                on_request=metrics.observe_request,
                on_retry=metrics.observe_retry,
            )
            user = connection.partner_center.auth.login()
            say(f"signed in to Partner Center as {user}; syncing every {DEMO_INTERVAL_S} s")

            ops = Ops([connection], store, clock=sandbox.clock, metrics=metrics)

            def report(conn: Connection, result: CycleResult) -> None:
                ops.observe(conn, result)
                for part in (result.outbound, result.inbound):
                    done = {k: v for k, v in part.counts.items() if v and k != "received"}
                    if done:
                        say(f"cycle {part.direction}: {_counts(done)}")

            def pushed(conn: Connection, referral_id: str, result: RunReport) -> None:
                done = {k: v for k, v in result.counts.items() if v and k != "received"}
                say(f"webhook: referral {referral_id} synced at once ({_counts(done)})")

            daemon = Daemon(
                [connection], clock=sandbox.clock, on_cycle=report, on_webhook_sync=pushed
            )
            url = serve_ops(settings, ops, daemon, clock=sandbox.clock)
            hook = connection_webhook_url(settings.webhooks, conn_settings.name)
            register_connection(conn_settings, connection.partner_center.auth, hook)
            say(f"status page {url}/status   metrics {url}/metrics   readiness {url}/readyz")
            say(f"webhooks    {hook} (registered with the sandbox's Partner Center)")
            stop = threading.Event()
            rng = random.Random(seed)  # noqa: S311 - a simulated salesperson, not security
            worker = threading.Thread(target=_work, args=(sandbox, rng, stop, say), daemon=True)
            worker.start()
            try:
                status = daemon.run_until_stopped(duration=duration)
            finally:
                stop.set()
                worker.join(timeout=5)
                ops.stop()
            _summary(sandbox, say)
        finally:
            store.close()
    return status


def free_port() -> int:
    """A loopback port nobody listens on now (the ops server takes it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_with_webhooks(sandbox: Sandbox, connection: Connection, ops: Ops, daemon: Daemon) -> str:
    """The ops server on a free loopback port with ``connection``'s webhook route, registered
    with the sandbox's Partner Center (for tests and benchmarks that build their own daemon)."""
    hooks = sandbox.info["webhooks"]
    webhooks = WebhookSettings(
        enabled=True,
        certificate_hosts=(hooks["certificate_host"],),
        trusted_ca=Path(sandbox.info["ca_bundle"]),
    )
    verifier = build_verifier(webhooks, clock=sandbox.clock)
    name = connection.settings.name
    handlers = webhook_handlers(verifier, [name], daemon.webhook_receiver)
    url = ops.serve("127.0.0.1", 0, webhooks=handlers)
    register_connection(
        connection.settings, connection.partner_center.auth, url + webhook_path(name)
    )
    return url


def _work(
    sandbox: Sandbox, rng: random.Random, stop: threading.Event, say: Callable[[str], None]
) -> None:
    """The salesperson and Microsoft, a step every ``WORK_EVERY_S`` seconds until ``stop``."""
    salesperson = sandbox.salesforce.salesperson
    while not stop.wait(WORK_EVERY_S):
        action = salesperson.random_step(rng)
        if action is not None:
            stage = action.fields["StageName"]
            say(f"salesperson: {action.kind} {action.opportunity_id} -> {stage}")
        if rng.random() < 0.2:
            referrals = [
                r for r in sandbox.partner_center.store.all_raw() if r.get("status") != "Closed"
            ]
            if referrals:
                chosen = rng.choice(referrals)
                sandbox.partner_center.store.edit(
                    chosen["id"],
                    inviteContext={
                        "notes": f"Microsoft: customer asked again ({rng.randint(1, 99)})"
                    },
                )
                say(f"microsoft: edited the notes of referral {chosen['id']}")


def _summary(sandbox: Sandbox, say: Callable[[str], None]) -> None:
    states = collections.Counter(
        f"{r['status']}/{r['substatus']}" for r in sandbox.partner_center.store.all_raw()
    )
    opportunities = len(sandbox.salesforce.store.records("Opportunity"))
    say(f"\nPartner Center: {_counts(dict(states))}")
    say(f"Salesforce: {opportunities} opportunities")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
