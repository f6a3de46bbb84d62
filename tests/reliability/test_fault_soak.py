"""The fault soak: every simulator misbehaves on 20 % of requests for a set duration.

Entra, Partner Center and the CRM (Salesforce or Dataverse) answer one request in five with a
fault: 429 and 503 with ``Retry-After``, 500, a reset connection, a reply held back past the
client's read timeout after the write was made, a token expired before its time, and the CRM's
own limits (Salesforce's spent daily quota and concurrent-request limit, Dataverse's
52-concurrent-requests limit). The daemon plays the crash test's script (a backfill, then phases
of changes on both sides, at least three, and more while the duration lasts: the changes go on
all along it); alongside, another sandbox and daemon play the same phases without faults, in
lockstep (each phase starts once the faulty run has started it) and over the same time.
The faulty run must reach the fault-free end state, never send a request before a
``Retry-After`` it was given has passed (checked in the simulators' request log), and make at
most 1.3 times the fault-free run's calls.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest

from reliability._harness import DaemonTuning
from reliability._harness_crm import Script, ScriptSize
from reliability._harness_run import (
    Lockstep,
    RunResult,
    compare,
    first_divergence,
    lost_updates,
    retry_after_violations,
    run_script,
)

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

SEED = 20_260_602
OPTIONS = "retry_after=1,slow_s=0.5,timeout_s=3"
PLANS = {
    "entra": "429=0.05,500=0.04,503=0.04,reset=0.03,timeout=0.02,slow=0.02",
    "partner_center": ("429=0.04,500=0.03,503=0.03,reset=0.03,timeout=0.02,expire=0.03,slow=0.02"),
    "salesforce": (
        "429=0.03,500=0.03,503=0.03,reset=0.03,timeout=0.02,expire=0.02,quota=0.02,concurrency=0.02"
    ),
    "dataverse": "429=0.03,500=0.03,503=0.03,reset=0.03,timeout=0.02,expire=0.02,concurrency=0.04",
}
PLANS["entra"] = os.environ.get("RS_SOAK_ENTRA_FAULTS", PLANS["entra"])
"""A diagnostic switch: another Entra fault mix (e.g. without bare 500s, see RELIABILITY.md)."""
MAX_CALL_RATIO = 1.3
TUNING = DaemonTuning(
    read_timeout_s=2, max_attempts=6, max_seconds=60, cap_seconds=8, quota_wait_s=2
)
"""Short timeouts for a short soak. The injected "quota spent" is gone a moment later (a real
spent daily quota is not): the daemon's own quiet time after one (15 min by default, no request
sent meanwhile) is set to 2 s, or the soak would spend most of its time waiting it out."""


FEED_ROUTES = frozenset({("partner_center", "referrals_list"), ("salesforce", "query_all"),
                         ("dataverse", "query")})  # fmt: skip
"""The change-feed polls: over the same time, a run that waits out faults polls less often."""


def work_calls(run: RunResult) -> int:
    """Calls that are not change-feed polls: what the sync's work cost (the issue's 1.3 is
    checked on every call; this is reported beside it, since backing off replaces idle polls,
    and 20 % faults that each cost one retry alone make it 1.25)."""
    return sum(1 for e in run.log if (e.service, e.route) not in FEED_ROUTES)


def fault_plan(crm: str) -> str:
    services = ("entra", "partner_center", "salesforce" if crm == "salesforce" else "dataverse")
    return ";".join(f"{s}:{PLANS[s]},{OPTIONS}" for s in services)


def test_every_plan_faults_one_request_in_five():
    for rule in PLANS.values():
        total = sum(float(item.split("=")[1]) for item in rule.split(","))
        assert total == pytest.approx(0.20)


@pytest.mark.soak
@pytest.mark.parametrize("crm", ["salesforce", "dynamics"])
def test_twenty_percent_faults_everywhere_reach_the_fault_free_end_state(
    crm, sizes, report, tmp_path
):
    script = Script.make(SEED, ScriptSize(referrals=sizes.soak_referrals))
    faulty_done = threading.Event()
    lockstep = Lockstep()
    clean_box: dict[str, RunResult] = {}

    def clean_run() -> None:  # the same phases without faults, over the same time, alongside
        clean_box["run"] = run_script(
            tmp_path / "clean", crm, script.copy(), tuning=TUNING,
            follow=lockstep, until=faulty_done, fault_seed=SEED + 1,
        )  # fmt: skip

    alongside = threading.Thread(target=clean_run, name="clean-run", daemon=True)
    alongside.start()
    try:
        faulty = run_script(
            tmp_path / "faulty",
            crm,
            script,
            faults=fault_plan(crm),
            fault_seed=SEED,
            tuning=TUNING,
            lead=lockstep,
            min_duration_s=sizes.soak_seconds,
            quiet_timeout_s=300,  # a phase not quiet 5 min after its last change: stuck
        )
    finally:
        faulty_done.set()
        alongside.join(timeout=max(900, sizes.soak_seconds * 2))
    clean = clean_box["run"]

    differences = compare(clean.snapshot, faulty.snapshot)
    diverged = first_divergence(clean, faulty)
    violations = retry_after_violations(faulty.log)
    injected = Counter(e.injected for e in faulty.log if e.injected)
    ratio = faulty.requests / clean.requests
    work = work_calls(faulty), work_calls(clean)
    figures = {
        "crm": crm,
        "referrals": sizes.soak_referrals,
        "seconds": round(faulty.wall_s, 1),
        "phases": [clean.phases, faulty.phases],
        "phase_requests": [clean.phase_requests, faulty.phase_requests],
        "first_divergence": diverged,
        "calls": [clean.requests, faulty.requests],
        "call_ratio": round(ratio, 3),
        "work_calls": [work[1], work[0]],
        "work_call_ratio": round(work[0] / work[1], 3),
        "by_service": [clean.by_service, faulty.by_service],
        "injected": dict(injected),
        "fault_share": round(sum(injected.values()) / faulty.requests, 3),
        "retry_after_replies": sum(1 for e in faulty.log if e.retry_after),
        "retry_after_violations": len(violations),
        "violations": violations[:20],
        "differences": differences,
        "lost_updates": lost_updates(clean.snapshot, faulty.snapshot),
        "duplicates": faulty.counts["duplicate_opportunities"],
        "crashes": len(faulty.crashes),
        "dead_letters": faulty.dead_letters,
    }
    report(f"soak[{crm}]", figures)

    assert faulty.crashes == []
    assert faulty.wall_s >= sizes.soak_seconds
    assert faulty.counts["duplicate_opportunities"] == 0
    assert clean.phases == faulty.phases
    assert diverged is None, f"phase {diverged[0]} converged elsewhere: {diverged[1]}"
    assert differences == []
    assert faulty.counts == clean.counts
    assert violations == []
    assert ratio <= MAX_CALL_RATIO
    unexplained = [d for d in faulty.dead_letters if d["referral_id"] not in script.bad]
    assert unexplained == []
