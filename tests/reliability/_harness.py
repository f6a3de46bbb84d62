"""The reliability harness, part 1: the real daemon as a subprocess on a sandbox here.

:func:`world_sandbox` is one sandbox (Entra, Partner Center, a Salesforce org or a Dataverse
environment over TLS), :func:`write_config` a daemon configuration (SQLite state) for it. A
:class:`DaemonProcess` runs ``python -m connector run`` on that configuration, each lifetime
logging to its own file, and can be SIGKILLed at any instant and started again. The sandbox
lives in the test process, so it (and everything the daemon wrote) outlives every kill.

Part 2 (:mod:`reliability._harness_crm`) is the script and the CRM side; part 3
(:mod:`reliability._harness_run`) kills, runs and compares. ``run_script`` plays a ``Script``
(the same one, seeded, for the reference run and the run under test): a backfill of every
seeded referral while the salesperson and Microsoft make changes, then phases of changes,
each applied once the system is quiet (so that a phase decides its moves from the same state
in every run). Within a phase each referral is touched by
one side only: the order in which the daemon sees two sides' changes to one record is legitimately
timing-dependent ("the newer change wins"), so such races cannot be compared with a reference.

``snapshot`` reads the end state of both sides in a form two runs can compare (no ids,
etags or timestamps that differ by construction; a referral's CRM id is checked to point at the
opportunity keyed by that referral); ``compare`` lists every difference.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.app import Sandbox
from sandbox.testing import random_loopback_host

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"

# -- the world: a sandbox and a configuration ------------------------------------------------


CONFIG = """\
# Written by tests/reliability: one connection on the sandbox, SQLite state.
[state]
url = "sqlite:///{dir}/state.db"

[logging]
level = "info"

[[connection]]
name = "reliability"
crm = "{crm}"
interval_seconds = {interval}
mapping = "{mapping}"

[connection.partner_center]
base_url = "{pc_base_url}"
authority = "{authority}"
client_id = "{pc_client_id}"
auth_mode = "device_code"
token_cache = "{dir}/partner-center-token-cache.json"
ca_bundle = "{ca_bundle}"
poll_overlap_seconds = 60
read_timeout = {read_timeout}

[connection.partner_center.retry]
{retry}
{crm_section}
"""

SALESFORCE = """
[connection.salesforce]
instance_url = "{instance_url}"
token_url = "{token_url}"
client_id = "{client_id}"
client_secret_file = "{dir}/salesforce-client-secret"
api_version = "{api_version}"
ca_bundle = "{ca_bundle}"
read_timeout = {read_timeout}
quota_wait_seconds = {quota_wait}

[connection.salesforce.retry]
{retry}
"""

DYNAMICS = """
[connection.dynamics]
base_url = "{base_url}"
authority = "{authority}"
client_id = "{client_id}"
client_secret_file = "{dir}/dataverse-client-secret"
scope = "{scope}"
ca_bundle = "{ca_bundle}"
read_timeout = {read_timeout}

[connection.dynamics.retry]
{retry}
"""


@dataclass(frozen=True, slots=True)
class DaemonTuning:
    """What the daemon's configuration says about timing (the soak shortens timeouts)."""

    interval_s: float = 1.0
    read_timeout_s: float = 60.0
    max_attempts: int = 6
    max_seconds: float = 120.0
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    quota_wait_s: float = 900.0  # Salesforce: after "the org's API quota is spent"

    def retry_table(self) -> str:
        return (
            f"max_attempts = {self.max_attempts}\nmax_seconds = {self.max_seconds}\n"
            f"base_seconds = {self.base_seconds}\ncap_seconds = {self.cap_seconds}"
        )


def write_config(sandbox: Sandbox, directory: Path, crm: str, tuning: DaemonTuning) -> Path:
    info = sandbox.info
    ca_bundle = Path(info["ca_bundle"]).resolve()
    common = {"dir": directory, "ca_bundle": ca_bundle, "read_timeout": tuning.read_timeout_s}
    retry = tuning.retry_table()
    if crm == "salesforce":
        sf = info["salesforce"]
        secret = directory / "salesforce-client-secret"
        secret.touch(mode=0o600)
        secret.write_text(sf["client_secret"], encoding="utf-8")
        section = SALESFORCE.format(
            instance_url=sf["instance_url"], token_url=sf["token_url"], client_id=sf["client_id"],
            api_version=sf["api_version"], retry=retry, quota_wait=tuning.quota_wait_s, **common,
        )  # fmt: skip
    else:
        dv, client = info["dataverse"], info["entra"]["dataverse"]
        secret = directory / "dataverse-client-secret"
        secret.touch(mode=0o600)
        secret.write_text(client["client_secret"], encoding="utf-8")
        section = DYNAMICS.format(
            base_url=dv["base_url"], authority=info["entra"]["authority"],
            client_id=client["client_id"], scope=dv["scope"], retry=retry, **common,
        )  # fmt: skip
    path = directory / "reliability.toml"
    path.write_text(
        CONFIG.format(
            crm=crm,
            interval=tuning.interval_s,
            mapping=MAPPINGS / f"{crm}.yaml",
            pc_base_url=info["partner_center"]["base_url"],
            authority=info["entra"]["authority"],
            pc_client_id=info["entra"]["partner_center"]["client_id"],
            retry=retry,
            crm_section=section,
            **common,
        ),
        encoding="utf-8",
    )
    return path


def daemon_env() -> dict[str, str]:
    """The daemon's environment; ``RS_DAEMON_PYTHONPATH`` runs it from another copy of the
    code (to try a fix without touching the tree)."""
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONDONTWRITEBYTECODE": "1"}
    other = os.environ.get("RS_DAEMON_PYTHONPATH")
    if other:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [other, env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def world_sandbox(directory: Path, *, fault_seed: int) -> Iterator[Sandbox]:
    with Sandbox(
        directory / "sandbox",
        host=random_loopback_host(),
        fault_seed=fault_seed,
        user_realm_port=None,
    ) as sandbox:
        sandbox.salesforce.set_api_usage(0, 50_000_000)  # the daily quota is not what we test
        yield sandbox


def login(config: Path) -> None:
    """Sign in once (device code; the sandbox's test user approves at once): the token cache."""
    result = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "connector", "login", "partner-center", "--config", str(config)],
        cwd=config.parent,
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"login failed: {result.stdout}\n{result.stderr}")


# -- the daemon process ---------------------------------------------------------------------


@dataclass(slots=True)
class Lifetime:
    number: int
    started: datetime
    log: Path
    process: subprocess.Popen[bytes]
    ended_by: str | None = None  # "kill" | "term" | None (still running, or died by itself)
    returncode: int | None = None


class DaemonProcess:
    """``referral-sync run`` as a subprocess; one log file per lifetime (its stderr)."""

    def __init__(self, config: Path, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.lifetimes: list[Lifetime] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def current(self) -> Lifetime:
        return self.lifetimes[-1]

    @property
    def pid(self) -> int:
        return self.current.process.pid

    def start(self) -> Lifetime:
        number = len(self.lifetimes) + 1
        log = self.log_dir / f"daemon-{number:04d}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(  # noqa: S603 - our own command
                [
                    sys.executable,
                    "-m",
                    "connector",
                    "run",
                    "--config",
                    str(self.config),
                    "--listen",
                    "127.0.0.1:0",
                ],
                cwd=self.config.parent,  # not the project root: RS_DAEMON_PYTHONPATH must win
                env=daemon_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        lifetime = Lifetime(number, datetime.now(UTC), log, process)
        self.lifetimes.append(lifetime)
        return lifetime

    def alive(self) -> bool:
        return bool(self.lifetimes) and self.current.process.poll() is None

    def kill(self) -> None:
        """SIGKILL now (if still running) and reap it."""
        lifetime = self.current
        with contextlib.suppress(ProcessLookupError):
            lifetime.process.send_signal(signal.SIGKILL)
        lifetime.returncode = lifetime.process.wait(timeout=30)
        lifetime.ended_by = "kill"

    def terminate(self, timeout: float = 120) -> int:
        """SIGTERM (graceful: the page in hand is finished); the exit status."""
        lifetime = self.current
        lifetime.process.send_signal(signal.SIGTERM)
        lifetime.returncode = lifetime.process.wait(timeout=timeout)
        lifetime.ended_by = "term"
        return lifetime.returncode

    def events(self, lifetime: Lifetime | None = None) -> list[dict[str, Any]]:
        """The JSON log events of one lifetime (default: the current one), in order."""
        found = []
        path = (lifetime or self.current).log
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    found.append(json.loads(line))
        return found

    def all_events(self) -> list[dict[str, Any]]:
        return [e for lifetime in self.lifetimes for e in self.events(lifetime)]

    def crashes(self) -> list[str]:
        """Lifetimes that ended other than by our kill or a clean SIGTERM exit, and halts."""
        problems = []
        for lifetime in self.lifetimes:
            died_alone = lifetime.ended_by is None and lifetime.process.poll() is not None
            if died_alone or (lifetime.ended_by == "term" and lifetime.returncode != 0):
                tail = lifetime.log.read_text(errors="replace")[-1500:]
                problems.append(f"lifetime {lifetime.number} rc={lifetime.process.poll()}: {tail}")
            problems.extend(
                f"lifetime {lifetime.number}: {event}"
                for event in self.events(lifetime)
                if event.get("event") in ("daemon_halted", "cycle_error")
                or (event.get("level") in ("error", "critical") and "exception" in event)
            )
        return problems


_NOT_WRITES = frozenset({"received", "unchanged", "conflicts", "dead_lettered", "stopped_early"})


def _quiet(event: dict[str, Any]) -> bool:
    if event.get("outcome") == "failed":
        return False
    counts = {k: v for k, v in event.items() if isinstance(v, int) and not isinstance(v, bool)}
    return not any(v for k, v in counts.items() if k not in _NOT_WRITES)


def _stamp(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]))


def quiet_since(daemon: DaemonProcess, mark: datetime) -> bool:
    """Whether the current lifetime ran a whole cycle that began after ``mark`` and wrote
    nothing on either side (outbound and inbound both ok, no writes)."""
    lifetime = daemon.current
    cycles = [e for e in daemon.events() if e.get("event") == "cycle_finished"]
    previous_end = lifetime.started
    index = 0
    while index + 1 < len(cycles):
        out, inn = cycles[index], cycles[index + 1]
        if out.get("direction") != "outbound" or inn.get("direction") != "inbound":
            index += 1  # a lifetime's first event may be an inbound after a stop; realign
            continue
        if previous_end >= mark and _quiet(out) and _quiet(inn):
            return True
        previous_end = _stamp(inn)
        index += 2
    return False


def wait_quiet(daemon: DaemonProcess, mark: datetime, *, timeout: float) -> float:
    """Wait until :func:`quiet_since`; seconds waited. ``AssertionError`` on timeout or death."""
    started = time.monotonic()
    while not quiet_since(daemon, mark):
        if not daemon.alive():
            raise AssertionError(f"the daemon died: {daemon.crashes() or daemon.current.log}")
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not quiet after {timeout:.0f} s; see {daemon.current.log}")
        time.sleep(0.1)
    return time.monotonic() - started
