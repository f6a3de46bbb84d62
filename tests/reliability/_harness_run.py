"""The reliability harness, part 3: SIGKILLs at random instants, one run of a script from a
fresh sandbox to its end state, and the comparisons (end states, Retry-After)."""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.state import open_state_store
from reliability._harness import (
    DaemonProcess,
    DaemonTuning,
    login,
    wait_quiet,
    world_sandbox,
    write_config,
)
from reliability._harness_crm import CrmSide, Driver, Script, crm_side
from sandbox.app import Sandbox
from sandbox.requestlog import LoggedRequest

# -- kills ----------------------------------------------------------------------------------


class Killer:
    """SIGKILLs the daemon at its ``n``-th request of this lifetime, from inside the sandbox's
    request log: after the simulator has answered (a write is made) and before the reply
    leaves, the worst instant for "did my write happen?"."""

    def __init__(self, sandbox: Sandbox, daemon: DaemonProcess) -> None:
        self.sandbox, self.daemon = sandbox, daemon
        self._lock = threading.Lock()
        self._left: int | None = None
        self.fired = threading.Event()
        self.at: LoggedRequest | None = None
        sandbox.log.add_listener(self._seen)

    def close(self) -> None:
        self.sandbox.log.remove_listener(self._seen)

    def arm(self, after_requests: int) -> None:
        with self._lock:
            self.fired.clear()
            self._left = after_requests

    def disarm(self) -> None:
        with self._lock:
            self._left = None

    def _seen(self, entry: LoggedRequest) -> None:
        with self._lock:
            if self._left is None:
                return
            self._left -= 1
            if self._left > 0:
                return
            self._left = None
            self.at = entry
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.daemon.pid, signal.SIGKILL)
        self.fired.set()


@dataclass(slots=True)
class KillRecord:
    phase: int
    lifetime: int
    how: str  # "request N (service route)" or "after S s"


# -- running a script -----------------------------------------------------------------------


class Lockstep:
    """Two runs of one script playing the same phases over the same time: the leader plays
    phases while its duration lasts (a faulty run's phases are slower); the follower starts a
    phase only once the leader has started it, and stops when the leader has stopped."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._started = 0  # phases the leader has started
        self._final: int | None = None  # phases the leader played, once it has stopped

    def lead(self, phase: int) -> None:
        with self._changed:
            self._started = max(self._started, phase + 1)
            self._changed.notify_all()

    def stop(self, phases: int) -> None:
        with self._changed:
            self._final = phases
            self._changed.notify_all()

    def follow(self, phase: int, *, timeout: float) -> bool:
        """Whether the follower plays ``phase``: wait until the leader has started it (True)
        or has stopped before it (False)."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: self._started > phase or self._final is not None, timeout=timeout
            ):
                raise AssertionError(f"the leading run did not reach phase {phase}")
            return self._started > phase


@dataclass(slots=True)
class RunResult:
    crm: str
    kills: list[KillRecord]
    lifetimes: int
    crashes: list[str]
    phase_requests: list[int]
    phase_snapshots: list[dict[str, Any]]  # the state each phase converged to
    phases: int
    requests: int
    by_service: dict[str, int]
    wall_s: float
    snapshot: dict[str, Any]
    counts: dict[str, int]
    dead_letters: list[dict[str, Any]]
    log: list[LoggedRequest]


def run_script(  # noqa: PLR0915 - one run, top to bottom, reads best in one piece
    directory: Path,
    crm: str,
    script: Script,
    *,
    kills_per_phase: list[int] | None = None,
    reference_requests: list[int] | None = None,
    faults: str = "",
    fault_seed: int = 1,
    tuning: DaemonTuning | None = None,
    phases: int | None = None,
    min_duration_s: float = 0.0,
    until: threading.Event | None = None,
    quiet_timeout_s: float = 600.0,
    kill_seed: int = 99,
    on_phase: Callable[[int, float], None] | None = None,
    lead: Lockstep | None = None,
    follow: Lockstep | None = None,
) -> RunResult:
    """Play ``script`` against a fresh sandbox and daemon; SIGKILL as planned, restart each
    time; keep ``faults`` on throughout; at the end stop the daemon with SIGTERM.

    Phases: ``phases`` if given, else the script's, and more while ``min_duration_s`` has not
    passed since the daemon first started. After the last phase the daemon goes on (idle, or
    faulted) until ``min_duration_s`` has passed and ``until`` (if given) is set: the soak's
    fault-free run ends with the faulty one, so both are measured over the same time. With
    ``lead``, the phases played are announced; with ``follow``, a leader's decide them."""
    directory.mkdir(parents=True, exist_ok=True)
    tuning = tuning or DaemonTuning()
    script.bad.clear()
    rng = random.Random(kill_seed)
    kills: list[KillRecord] = []
    phase_requests: list[int] = []
    phase_snapshots: list[dict[str, Any]] = []
    with world_sandbox(directory, fault_seed=fault_seed) as sandbox:
        side = crm_side(sandbox, crm)
        config = write_config(sandbox, directory, crm, tuning)
        login(config)
        sandbox.partner_center.store.seed_raw(script.seeded)
        sandbox.log.clear()
        if faults:
            sandbox.faults.set_plan(faults)
        started = time.monotonic()
        daemon = DaemonProcess(config, directory / "logs")
        killer = Killer(sandbox, daemon)
        phase = 0
        try:
            daemon.start()

            def more() -> bool:
                if follow is not None:
                    return follow.follow(phase, timeout=quiet_timeout_s * 4)
                return phase < (phases or script.size.phases) or (
                    phases is None and time.monotonic() - started < min_duration_s
                )

            while more():
                if lead is not None:
                    lead.lead(phase)
                before = len(sandbox.log)
                mark_start = time.monotonic()
                moves = script.moves(phase, sandbox.partner_center.store.all_raw(), side)
                driver = Driver(sandbox, side, moves, script.arrivals(phase))
                driver.start()
                planned = _at(kills_per_phase, phase, 0)
                budget = _at(reference_requests, phase, 2000)
                kills.extend(
                    _kill_once(sandbox, daemon, killer, rng, phase, budget, planned)
                    for _ in range(planned)
                )
                driver.join()
                if driver.error is not None:
                    raise driver.error
                mark = datetime.now(UTC)
                wait_quiet(daemon, mark, timeout=quiet_timeout_s)
                phase_requests.append(len(sandbox.log) - before)
                phase_snapshots.append(snapshot(sandbox, side))
                if on_phase is not None:
                    on_phase(phase, time.monotonic() - mark_start)
                phase += 1
            if lead is not None:
                lead.stop(phase)
            left = min_duration_s - (time.monotonic() - started)
            if left > 0 or until is not None:  # the rest of the time: idle (or faulted) polls
                time.sleep(max(0.0, left))
                if until is not None:
                    until.wait(timeout=quiet_timeout_s * 4)
                wait_quiet(daemon, datetime.now(UTC), timeout=quiet_timeout_s)
            status = daemon.terminate()
            wall = time.monotonic() - started
            assert status == 0, f"daemon exit status {status}: {daemon.current.log}"
        finally:
            if lead is not None:  # also when this run fails: the follower must not wait on
                lead.stop(phase)
            killer.close()
            if daemon.lifetimes and daemon.alive():
                daemon.kill()
            sandbox.faults.clear()
        log = sandbox.log.entries()
        _write_log(directory / "requests.jsonl", log)
        snap = snapshot(sandbox, side)
        (directory / "snapshot.json").write_text(json.dumps(snap, default=str, sort_keys=True))
        counts = side.counts()
        letters = dead_letters(directory, side)
    return RunResult(
        crm=crm, kills=kills, lifetimes=len(daemon.lifetimes), crashes=daemon.crashes(),
        phase_requests=phase_requests, phase_snapshots=phase_snapshots,
        phases=len(phase_requests), requests=len(log),
        by_service=dict(Counter(e.service for e in log)), wall_s=wall, snapshot=snap,
        counts=counts, dead_letters=letters, log=log,
    )  # fmt: skip


def _write_log(path: Path, log: list[LoggedRequest]) -> None:
    """The simulators' request log, one JSON object a line (``time`` is monotonic seconds)."""
    with path.open("w", encoding="utf-8") as handle:
        for entry in log:
            handle.write(json.dumps(dataclasses.asdict(entry)) + "\n")


def _at(values: list[int] | None, index: int, default: int) -> int:
    return values[index] if values is not None and index < len(values) else default


def _kill_once(  # noqa: PLR0917 - private, called once, in this order
    sandbox: Sandbox,
    daemon: DaemonProcess,
    killer: Killer,
    rng: random.Random,
    phase: int,
    budget: int,
    planned: int,
) -> KillRecord:
    """One SIGKILL at a random instant of this lifetime, then a restart."""
    lifetime = daemon.current.number
    if rng.random() < 0.75:  # at a random request: mid-write, mid-page, mid-sign-in
        n = rng.randint(1, max(2, budget // max(1, planned)))
        killer.arm(n)
        deadline = time.monotonic() + 300
        while not killer.fired.wait(0.05):
            # Dead: by itself, or by the killer between its SIGKILL and its "fired" (a loaded
            # machine can run this loop in that gap): give the killer time to say so.
            if not daemon.alive() and not killer.fired.wait(2.0):
                killer.disarm()
                raise AssertionError(f"the daemon died by itself: {daemon.crashes()}")
            if time.monotonic() > deadline:
                killer.disarm()
                raise AssertionError(f"request {n} never came; see {daemon.current.log}")
        at = killer.at
        how = f"at request {n} ({at.service} {at.method} {at.route})" if at else f"request {n}"
        daemon.kill()
    else:  # at a random time: start-up, between requests, in a back-off sleep
        delay = rng.uniform(0.1, 4.0)
        time.sleep(delay)
        if not daemon.alive():
            raise AssertionError(f"the daemon died by itself: {daemon.crashes()}")
        daemon.kill()
        how = f"after {delay:.2f} s"
    daemon.start()
    return KillRecord(phase, lifetime, how)


# -- end states -----------------------------------------------------------------------------

PC_VOLATILE = frozenset({"eTag", "updatedDateTime", "externalReferenceId", "acceptedDateTime",
                         "closedDateTime"})  # fmt: skip


def snapshot(sandbox: Sandbox, crm: CrmSide) -> dict[str, Any]:
    index = crm.index()
    referrals = {}
    for raw in sandbox.partner_center.store.all_raw():
        fields = {k: v for k, v in raw.items() if k not in PC_VOLATILE}
        link = raw.get("externalReferenceId")
        fields["crm_link"] = (
            None if not link else ("own" if index.get(raw["id"]) == link else f"other:{link}")
        )
        fields["accepted"] = raw.get("acceptedDateTime") is not None
        fields["closed"] = raw.get("closedDateTime") is not None
        referrals[raw["id"]] = fields
    return {"referrals": referrals, "opportunities": crm.snapshot()}


def dead_letters(directory: Path, crm: CrmSide) -> list[dict[str, Any]]:
    """Every dead letter (resolved too), with outbound CRM ids turned into referral ids."""
    by_crm_id = {v: k for k, v in crm.index().items()}
    store = open_state_store(f"sqlite:///{directory}/state.db")
    try:
        letters = store.dead_letters(include_resolved=True)
    finally:
        store.close()
    return [
        {
            "direction": str(d.direction),
            "referral_id": by_crm_id.get(d.record_id or "", d.record_id),
            "reason": d.reason,
            "resolved": d.resolved_at is not None,
        }
        for d in letters
    ]


def compare(reference: dict[str, Any], other: dict[str, Any], limit: int = 20) -> list[str]:
    """Every difference between two snapshots, as lines (at most ``limit`` shown in full)."""
    problems: list[str] = []
    for part in ("referrals", "opportunities"):
        ref, got = reference[part], other[part]
        problems.extend(f"{part}: {key} missing" for key in sorted(set(ref) - set(got)))
        problems.extend(f"{part}: {key} unexpected" for key in sorted(set(got) - set(ref)))
        for key in sorted(set(ref) & set(got)):
            for name in sorted(set(ref[key]) | set(got[key])):
                a, b = ref[key].get(name), got[key].get(name)
                if a != b:
                    problems.append(f"{part}: {key}.{name}: reference {a!r}, got {b!r}")
    if len(problems) > limit:
        problems = [*problems[:limit], f"... and {len(problems) - limit} more"]
    return problems


def first_divergence(reference: RunResult, other: RunResult) -> tuple[int, list[str]] | None:
    """The first phase whose converged state differs from the reference's, and how.

    The next phase's moves are decided from that state, so one difference early makes many
    later; the first phase's differences are the ones to read."""
    for phase, (ref, got) in enumerate(
        zip(reference.phase_snapshots, other.phase_snapshots, strict=False)
    ):
        problems = compare(ref, got)
        if problems:
            return phase, problems
    return None


def lost_updates(reference: dict[str, Any], other: dict[str, Any]) -> int:
    """Records whose end state differs from the reference (a lost or stale update)."""
    count = 0
    for part in ("referrals", "opportunities"):
        ref, got = reference[part], other[part]
        count += sum(1 for key in ref if key in got and ref[key] != got[key])
        count += len(set(ref) ^ set(got))
    return count


def retry_after_violations(
    log: list[LoggedRequest], *, grace_s: float = 0.2, slack_s: float = 0.05
) -> list[str]:
    """Requests a service got before the ``Retry-After`` it had sent had elapsed.

    Any request that *arrived* more than ``grace_s`` after a reply carrying ``Retry-After: r``
    and sooner than ``r`` after it is a violation. The grace is the time a client needs to read
    the reply: the daemon writes back to Partner Center from several threads, and a request
    another thread had already started when the 429 left is not one sent in defiance of it.
    ``slack_s`` absorbs the clock reading on either side.
    """
    problems = []
    by_service: dict[str, list[LoggedRequest]] = {}
    for entry in log:
        by_service.setdefault(entry.service, []).append(entry)
    for service, entries in by_service.items():
        entries.sort(key=lambda e: e.time)
        arrivals = [e.time for e in entries]
        for reply in entries:
            wait = reply.retry_after
            if not wait or reply.status not in (429, 503):
                continue
            sent = reply.time + reply.duration_s
            position = bisect.bisect_right(arrivals, sent + grace_s)
            if position < len(entries) and arrivals[position] < sent + wait - slack_s:
                later = entries[position]
                problems.append(
                    f"{service}: {later.method} {later.route} {later.time - sent:.2f} s after "
                    f"{reply.status} {reply.route} with Retry-After {wait:g}"
                )
    return problems
