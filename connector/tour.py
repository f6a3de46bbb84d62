"""``referral-sync try``: the two-way sync end to end against the sandbox, in one command.

It starts the sandbox (Entra ID, Partner Center and a Salesforce org over TLS), writes a
configuration pointing at it (SQLite state in the state folder), checks the mapping against the
org's metadata, signs in with the device-code flow (the sandbox's test user approves at once),
syncs every referral into Salesforce, lets a simulated salesperson work the opportunities, syncs
the partner's changes back to Partner Center, and shows an idle cycle's cost. Human-readable
lines go to stdout, JSON log lines to stderr.

The daemon (``referral-sync run``) schedules the same cycles; it lands with its issue.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from connector.ports import StateStore
from connector.settings import load_settings
from connector.state import open_state_store
from connector.wiring import Connection, build_connection
from sandbox.app import Sandbox

CONFIG_TEMPLATE = """\
# Written by `referral-sync try`: one connection, Partner Center <-> Salesforce, on the sandbox.
[state]
url = "sqlite:///{state_dir}/state.db"

[[connection]]
name = "sandbox"
crm = "salesforce"
interval_seconds = {interval_seconds}

[connection.partner_center]
base_url = "{base_url}"
authority = "{authority}"
client_id = "{client_id}"
auth_mode = "device_code"
token_cache = "{state_dir}/partner-center-token-cache.json"
ca_bundle = "{ca_bundle}"
poll_overlap_seconds = 60
webhook_base_url = "{webhook_base_url}"

[connection.salesforce]
instance_url = "{sf_instance_url}"
token_url = "{sf_token_url}"
client_id = "{sf_client_id}"
client_secret_file = "{state_dir}/salesforce-client-secret"
api_version = "{sf_api_version}"
ca_bundle = "{ca_bundle}"
"""


WEBHOOKS_TEMPLATE = """
# The ops server, and Partner Center's signed events into it (`referral-sync webhooks register`).
[server]
listen = "127.0.0.1:{port}"

[webhooks]
enabled = true
public_url = "http://127.0.0.1:{port}"
certificate_hosts = ["{certificate_host}"]
trusted_ca = "{ca_bundle}"
"""


def write_sandbox_config(
    sandbox: Sandbox,
    state_dir: Path,
    *,
    interval_seconds: float = 30,
    webhooks_port: int | None = None,
) -> Path:
    """A config for one connection to ``sandbox``; with ``webhooks_port``, the ops server
    listens on that loopback port and takes the sandbox's signed webhooks there."""
    info = sandbox.info
    salesforce = info["salesforce"]
    secret = state_dir / "salesforce-client-secret"
    secret.touch(mode=0o600)
    secret.write_text(salesforce["client_secret"], encoding="utf-8")
    path = state_dir / "try.toml"
    path.write_text(
        CONFIG_TEMPLATE.format(
            state_dir=state_dir.resolve(),
            interval_seconds=interval_seconds,
            sf_instance_url=salesforce["instance_url"],
            sf_token_url=salesforce["token_url"],
            sf_client_id=salesforce["client_id"],
            sf_api_version=salesforce["api_version"],
            base_url=info["partner_center"]["base_url"],
            authority=info["entra"]["authority"],
            client_id=info["entra"]["partner_center"]["client_id"],
            ca_bundle=Path(info["ca_bundle"]).resolve(),
            webhook_base_url=info["webhooks"]["base_url"],
        )
        + (
            ""
            if webhooks_port is None
            else WEBHOOKS_TEMPLATE.format(
                port=webhooks_port,
                certificate_host=info["webhooks"]["certificate_host"],
                ca_bundle=Path(info["ca_bundle"]).resolve(),
            )
        ),
        encoding="utf-8",
    )
    return path


def run_tour(state_dir: Path, *, referrals: int, out: TextIO, steps: int = 80) -> int:
    state_dir = state_dir.resolve()  # the config it writes names absolute paths
    state_dir.mkdir(parents=True, exist_ok=True)

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    with Sandbox(state_dir, referrals=referrals, user_realm_port=None) as sandbox:
        servers = sandbox.info["servers"]
        say(f"sandbox up: Entra {servers['entra']}")
        say(f"            Partner Center {sandbox.info['partner_center']['base_url']}")
        say(f"            Salesforce {sandbox.info['salesforce']['instance_url']}")
        config = write_sandbox_config(sandbox, state_dir)
        settings = load_settings(config)
        say(f"config written: {config}")
        store = open_state_store(settings.state.url)
        try:
            connection = build_connection(
                settings.connections[0],
                store,
                clock=sandbox.clock,
                prompt=lambda m: say(f"  entra: {m}"),
            )
            _tour(sandbox, connection, store, referrals=referrals, steps=steps, say=say)
        finally:
            store.close()
        say(f"\nState (SQLite, owner-only): {settings.state.url.removeprefix('sqlite:///')}")
    say("Next: the daemon (`referral-sync run`) schedules these cycles; see README.")
    return 0


def _tour(
    sandbox: Sandbox,
    connection: Connection,
    store: StateStore,
    *,
    referrals: int,
    steps: int,
    say: Callable[[str], None],
) -> None:
    spec = connection.spec
    say(
        f"   mapping {spec.source}: {len(spec.fields)} fields, key {spec.key}, checked "
        "against the org's metadata"
    )
    say("\n1. Sign in (device code; the sandbox's test user approves at once)")
    user = connection.partner_center.auth.login()
    say(f"   signed in as {user}; token cache written owner-only")

    say(f"\n2. First cycle: {referrals} referrals from Partner Center into Salesforce")
    sandbox.log.clear()
    result = connection.sync.run_cycle()
    inbound = result.inbound.counts
    opportunities = sandbox.salesforce.store.records("Opportunity")
    say(
        f"   {inbound['created']} opportunities created ({len(opportunities)} in the org), "
        f"{inbound['crm_id_written_back']} CRM ids written back to Partner Center"
    )
    say(f"   requests: {_requests(sandbox)}")

    say(f"\n3. A salesperson works {steps} steps in Salesforce (accept, decline, win, lose, edit)")
    rng = random.Random(7)  # noqa: S311 - a reproducible simulated salesperson, not security
    done = collections.Counter(
        action.kind
        for action in (sandbox.salesforce.salesperson.random_step(rng) for _ in range(steps))
        if action is not None
    )
    say("   " + ", ".join(f"{kind} {n}" for kind, n in sorted(done.items())))

    say("\n4. Next cycle: the partner's changes go to Partner Center")
    sandbox.log.clear()
    result = connection.sync.run_cycle()
    sent = result.outbound.counts
    say(
        "   sent: "
        + ", ".join(
            f"{a} {sent[a]}" for a in ("accept", "decline", "win", "lose", "edit") if sent[a]
        )
        + f"; our own writes recognised and skipped: {sent['unchanged']}"
    )
    states = collections.Counter(
        f"{r['status']}/{r['substatus']}" for r in sandbox.partner_center.store.all_raw()
    )
    say("   Partner Center now: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    say(f"   requests: {_requests(sandbox)}")

    say("\n5. Idle: nothing changes (a minute later, past the feeds' overlap windows)")
    sandbox.clock.advance(timedelta(minutes=2))
    connection.sync.run_cycle()
    sandbox.log.clear()
    connection.sync.run_cycle()
    say(f"   one more cycle cost {_requests(sandbox)}")
    dead = store.dead_letters(connection.settings.name)
    say(
        f"\nDead letters: {len(dead)}"
        + "".join(f"\n   {d.record_id}: {d.reason}" for d in dead[:5])
    )


def _requests(sandbox: Sandbox) -> str:
    counts = collections.Counter(entry.service for entry in sandbox.log.entries())
    return ", ".join(f"{service} {n}" for service, n in sorted(counts.items())) or "none"
