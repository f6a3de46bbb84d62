"""The sandbox side of a benchmark: simulators, a daemon configuration, the request counters.

The sandbox (Entra, Partner Center with N generated referrals, Salesforce, Dataverse) runs in
this process, with a fixed latency injected before every reply; the engine runs in a child
process (:mod:`bench.engine`), so its CPU time and peak RSS are its own, not the simulators'.
The counts of API calls are read from the simulators' request log, never from the client.
"""

from __future__ import annotations

import collections
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sandbox.app import Sandbox
from sandbox.testing import random_loopback_host

__all__ = ["CRM_SERVICE", "Crm", "World", "count_calls"]

Crm = Literal["salesforce", "dynamics"]
CRM_SERVICE: Mapping[Crm, str] = {"salesforce": "salesforce", "dynamics": "dataverse"}
MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"

_CONFIG = """\
# Written by the benchmark: one connection, Partner Center <-> {crm}, on the sandbox.
[state]
url = "sqlite:///{state_dir}/state.db"

[[connection]]
name = "bench"
crm = "{crm}"
interval_seconds = {interval_seconds}
mapping = "{mapping}"

[connection.partner_center]
base_url = "{pc_base_url}"
authority = "{authority}"
client_id = "{pc_client_id}"
auth_mode = "device_code"
token_cache = "{state_dir}/partner-center-token-cache.json"
ca_bundle = "{ca_bundle}"
poll_overlap_seconds = {overlap_s}
webhook_base_url = "{webhook_base_url}"
"""

_SALESFORCE = """
[connection.salesforce]
instance_url = "{instance_url}"
token_url = "{token_url}"
client_id = "{client_id}"
client_secret_file = "{state_dir}/salesforce-client-secret"
api_version = "{api_version}"
ca_bundle = "{ca_bundle}"
poll_overlap_seconds = {overlap_s}
"""

_DYNAMICS = """
[connection.dynamics]
base_url = "{base_url}"
authority = "{authority}"
client_id = "{client_id}"
client_secret_file = "{state_dir}/dataverse-client-secret"
scope = "{scope}"
ca_bundle = "{ca_bundle}"
"""


def count_calls(sandbox: Sandbox, since: int = 0) -> dict[str, int]:
    """Requests per service the simulators answered, from entry ``since`` of the log on."""
    entries = sandbox.log.entries()[since:]
    return dict(collections.Counter(e.service for e in entries))


@dataclass
class World:
    """One sandbox with ``referrals`` generated referrals, and the state folder of one run."""

    state_dir: Path
    referrals: int
    latency_ms: float
    seed: int = 1
    sandbox: Sandbox | None = None

    def __enter__(self) -> World:
        if self.state_dir.exists():  # a run of our own before: its state must not carry over
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True)
        self.sandbox = Sandbox(
            self.state_dir,
            host=random_loopback_host(),
            referrals=self.referrals,
            referral_seed=self.seed,
            latency_ms=self.latency_ms,
            user_realm_port=None,
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sandbox is not None:
            self.sandbox.stop()

    @property
    def sb(self) -> Sandbox:
        if self.sandbox is None:
            raise RuntimeError("the world is not started")
        return self.sandbox

    def mark(self) -> int:
        """A position in the request log: :meth:`calls` counts what came after it."""
        return len(self.sb.log)

    def calls(self, since: int) -> dict[str, int]:
        return count_calls(self.sb, since)

    def write_config(
        self, crm: Crm, *, interval_seconds: float = 30, overlap_s: float = 60, name: str = ""
    ) -> Path:
        """A daemon configuration for this sandbox and ``crm`` (secrets in owner-only files)."""
        info = self.sb.info
        state_dir = self.state_dir.resolve()
        common = {
            "state_dir": state_dir,
            "ca_bundle": Path(info["ca_bundle"]).resolve(),
            "overlap_s": overlap_s,
            "authority": info["entra"]["authority"],
        }
        text = _CONFIG.format(
            crm=crm,
            interval_seconds=interval_seconds,
            mapping=MAPPINGS / f"{crm}.yaml",
            pc_base_url=info["partner_center"]["base_url"],
            pc_client_id=info["entra"]["partner_center"]["client_id"],
            webhook_base_url=info["webhooks"]["base_url"],
            **common,
        )
        if crm == "salesforce":
            sf = info["salesforce"]
            _secret(state_dir / "salesforce-client-secret", sf["client_secret"])
            text += _SALESFORCE.format(
                instance_url=sf["instance_url"],
                token_url=sf["token_url"],
                client_id=sf["client_id"],
                api_version=sf["api_version"],
                **common,
            )
        else:
            dv, app = info["dataverse"], info["entra"]["dataverse"]
            _secret(state_dir / "dataverse-client-secret", app["client_secret"])
            text += _DYNAMICS.format(
                base_url=dv["base_url"], client_id=app["client_id"], scope=dv["scope"], **common
            )
        path = state_dir / f"bench-{crm}{name}.toml"
        path.write_text(text, encoding="utf-8")
        return path


def _secret(path: Path, value: str) -> None:
    path.touch(mode=0o600)
    path.write_text(value, encoding="utf-8")
