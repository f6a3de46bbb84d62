"""``referral-sync try``: what exists today, end to end, against the sandbox, in one command.

It starts the sandbox (Entra ID and Partner Center over TLS), writes a configuration pointing at
it, signs in with the device-code flow (the sandbox's test user approves at once), pulls every
referral through the change feed, accepts one referral while Microsoft edits it at the same
moment (a stale eTag, recovered), polls again from the saved cursor, and reports what it cost in
requests. Human-readable lines go to stdout, JSON log lines to stderr.

The daemon (``referral-sync run`` / ``demo``) replaces this once the CRM side and the engine exist.
"""

from __future__ import annotations

import collections
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from connector.model import Action, PartnerUpdate, Referral, Status
from connector.partner_center.build import build_partner_center
from connector.ports import ChangeCursor
from connector.settings import load_settings
from sandbox.app import Sandbox

CONFIG_TEMPLATE = """\
# Written by `referral-sync try`: the Partner Center side of a connection, on the sandbox.
[state]
url = "sqlite:///{state_dir}/state.db"

[[connection]]
name = "sandbox"
crm = "salesforce"

[connection.partner_center]
base_url = "{base_url}"
authority = "{authority}"
client_id = "{client_id}"
auth_mode = "device_code"
token_cache = "{state_dir}/partner-center-token-cache.json"
ca_bundle = "{ca_bundle}"
poll_overlap_seconds = 60

[connection.salesforce]
instance_url = "{sf_instance_url}"
token_url = "{sf_token_url}"
client_id = "{sf_client_id}"
client_secret_file = "{state_dir}/salesforce-client-secret"
api_version = "{sf_api_version}"
ca_bundle = "{ca_bundle}"
"""


def write_sandbox_config(sandbox: Sandbox, state_dir: Path) -> Path:
    info = sandbox.info
    salesforce = info["salesforce"]
    secret = state_dir / "salesforce-client-secret"
    secret.touch(mode=0o600)
    secret.write_text(salesforce["client_secret"], encoding="utf-8")
    path = state_dir / "try.toml"
    path.write_text(
        CONFIG_TEMPLATE.format(
            state_dir=state_dir.resolve(),
            sf_instance_url=salesforce["instance_url"],
            sf_token_url=salesforce["token_url"],
            sf_client_id=salesforce["client_id"],
            sf_api_version=salesforce["api_version"],
            base_url=info["partner_center"]["base_url"],
            authority=info["entra"]["authority"],
            client_id=info["entra"]["partner_center"]["client_id"],
            ca_bundle=info["ca_bundle"],
        ),
        encoding="utf-8",
    )
    return path


def run_tour(state_dir: Path, *, referrals: int, out: TextIO) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    with Sandbox(state_dir, referrals=referrals, user_realm_port=None) as sandbox:
        say(f"sandbox up: Entra {sandbox.info['servers']['entra']}")
        say(f"            Partner Center {sandbox.info['partner_center']['base_url']}")
        config = write_sandbox_config(sandbox, state_dir)
        settings = load_settings(config)
        say(f"config written: {config}")
        pc = build_partner_center(
            settings.connections[0].partner_center, prompt=lambda m: say(f"  entra: {m}")
        )

        say("\n1. Sign in (device code; the sandbox's test user approves at once)")
        user = pc.auth.login()
        say(f"   signed in as {user}; token cache written owner-only")

        say(f"\n2. Backfill: every referral through the change feed ({referrals} seeded)")
        sandbox.log.clear()
        cursor = ChangeCursor()
        pulled: list[Referral] = []
        for number, page in enumerate(pc.source.changes_since(cursor), start=1):
            pulled.extend(page.referrals)
            cursor = page.cursor
            say(f"   page {number}: {len(page.referrals)} referrals, {len(page.rejected)} rejected")
        by_state = collections.Counter(f"{r.status}/{r.substatus}" for r in pulled)
        say(
            f"   {len(pulled)} referrals: "
            + ", ".join(f"{k} {v}" for k, v in sorted(by_state.items()))
        )
        say(f"   requests to Partner Center: {_requests(sandbox)}")

        fresh = next((r for r in pulled if r.status == Status.NEW and r.name), None)
        if fresh is not None:
            say("\n3. Accept one referral while Microsoft edits it at the same moment")
            sandbox.log.clear()
            sandbox.partner_center.store.edit(fresh.id, name=f"{fresh.name} (renamed by Microsoft)")
            accepted = pc.source.update(
                PartnerUpdate(
                    referral_id=fresh.id,
                    action=Action.ACCEPT,
                    deal_value=Decimal("48000"),
                    currency=fresh.deal.currency or "USD",
                    close_date=(fresh.created_at + timedelta(days=90)).date(),
                    partner_notes="Accepted from the sandbox tour",
                    external_reference_id="006TOUR000000001",
                ),
                fresh,
            )
            say(
                f"   {fresh.id}: {fresh.status}/{fresh.substatus} -> "
                f"{accepted.status}/{accepted.substatus}, value {accepted.deal.value} "
                f"{accepted.deal.currency}, CRM id {accepted.external_reference_id}"
            )
            stale = sandbox.log.count(service="partner_center", route="referrals_patch", status=412)
            say(
                f"   name now {accepted.name!r}: {stale} PATCH met a stale eTag (412), the "
                f"referral was re-read and the update re-applied; {_requests(sandbox)} requests"
            )

        say("\n4. Poll again from the saved cursor")
        sandbox.log.clear()
        changed = [r.id for page in pc.source.changes_since(cursor) for r in page.referrals]
        say(f"   {len(changed)} change(s) since the backfill, {_requests(sandbox)} request(s)")

    say("\nDone. Next: the CRM side and the sync engine (see README, 'Where we are').")
    return 0


def _requests(sandbox: Sandbox) -> int:
    return sandbox.log.count(service="partner_center")
