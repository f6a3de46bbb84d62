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
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from connector.daemon.http import WEBHOOK_PATH
from connector.daemon.ops import Ops
from connector.daemon.scheduler import Daemon
from connector.engine import CycleResult, RunReport
from connector.http.session import build_session
from connector.observe.metrics import Metrics
from connector.settings import load_settings
from connector.state import open_state_store
from connector.tour import write_sandbox_config
from connector.webhooks import WebhookVerifier, make_webhook_handler, register_webhook
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
        config = write_sandbox_config(sandbox, state_dir, interval_seconds=DEMO_INTERVAL_S)
        settings = load_settings(config)
        say(f"sandbox up; config {config}; state {settings.state.url}")
        say(f"  Partner Center {sandbox.info['partner_center']['base_url']}")
        say(f"  Salesforce     {sandbox.info['salesforce']['instance_url']}")
        store = open_state_store(settings.state.url)
        try:
            metrics = Metrics()
            connection = build_connection(
                settings.connections[0],
                store,
                clock=sandbox.clock,
                prompt=lambda m: None,
                on_request=metrics.observe_request,
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
            url = serve_with_webhooks(sandbox, connection, ops, daemon)
            say(f"status page {url}/status   metrics {url}/metrics   readiness {url}/readyz")
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


def serve_with_webhooks(sandbox: Sandbox, connection: Connection, ops: Ops, daemon: Daemon) -> str:
    """The ops server with the webhook route, registered with the sandbox's Partner Center."""
    hooks = sandbox.info["webhooks"]
    session = build_session(ca_bundle=sandbox.info["ca_bundle"])
    verifier = WebhookVerifier(
        Path(sandbox.info["ca_bundle"]),
        allowed_certificate_hosts=(hooks["certificate_host"],),
        session=session,
        clock=sandbox.clock,
    )
    url = ops.serve("127.0.0.1", 0, webhook=make_webhook_handler(verifier, daemon.on_webhook))
    register_webhook(
        session, hooks["base_url"], connection.partner_center.auth, f"{url}{WEBHOOK_PATH}"
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
