"""The crash test: the real daemon, SIGKILLed at random instants, against a reference run.

A backfill of N referrals while the salesperson works the new opportunities and Microsoft edits,
closes and adds referrals, then two more phases of changes on both sides; the daemon
(``python -m connector run``, SQLite state) runs as a subprocess on the sandbox (TLS, in this
process) and is killed with SIGKILL K times, at random requests (after the simulator has made
the write, before the reply leaves) or at random times (start-up, back-off sleeps), and started
again each time. The end state must equal an uninterrupted reference run of the same script:
no duplicate opportunity (nor account or contact), no lost or stale update on either side,
every dead letter the scripted one, and no crash.
"""

from __future__ import annotations

import os
import time

import pytest

from reliability._harness_crm import Script, ScriptSize
from reliability._harness_run import compare, first_divergence, lost_updates, run_script

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

SEED = 20_260_601


def _kills_per_phase(kills: int, phases: int) -> list[int]:
    """Most kills during the backfill (the long phase), the rest spread over the others."""
    first = max(1, round(kills * 0.6)) if kills else 0
    rest = kills - first
    per = [first] + [rest // (phases - 1)] * (phases - 1)
    per[1] += rest - sum(per[1:])
    return per


@pytest.mark.parametrize("crm", ["salesforce", "dynamics"])
def test_sigkill_at_random_instants_changes_nothing_in_the_end_state(crm, sizes, report, tmp_path):
    script = Script.make(SEED, ScriptSize(referrals=sizes.crash_referrals))
    started = time.monotonic()
    reference = run_script(tmp_path / "reference", crm, script, quiet_timeout_s=1800)
    reference_bad = set(script.bad)
    killed = run_script(
        tmp_path / "killed",
        crm,
        script,
        kills_per_phase=_kills_per_phase(sizes.crash_kills, script.size.phases),
        reference_requests=reference.phase_requests,
        kill_seed=int(os.environ.get("RS_CRASH_KILL_SEED", SEED + len(crm))),
        quiet_timeout_s=1800,
    )

    differences = compare(reference.snapshot, killed.snapshot)
    diverged = first_divergence(reference, killed)
    letters = {(d["direction"], d["referral_id"], d["resolved"]) for d in killed.dead_letters}
    reference_letters = {
        (d["direction"], d["referral_id"], d["resolved"]) for d in reference.dead_letters
    }
    unexplained = [d for d in killed.dead_letters if d["referral_id"] not in script.bad]
    figures = {
        "crm": crm,
        "referrals": sizes.crash_referrals,
        "opportunities": killed.counts["opportunities"],
        "kills_planned": sizes.crash_kills,
        "kills_survived": len(killed.kills),
        "lifetimes": killed.lifetimes,
        "duplicates": killed.counts["duplicate_opportunities"],
        "accounts": [reference.counts["accounts"], killed.counts["accounts"]],
        "contacts": [reference.counts["contacts"], killed.counts["contacts"]],
        "lost_updates": lost_updates(reference.snapshot, killed.snapshot),
        "crashes": len(killed.crashes) + len(reference.crashes),
        "dead_letters": killed.dead_letters,
        "unexplained_dead_letters": len(unexplained),
        "requests": [reference.requests, killed.requests],
        "wall_s": [round(reference.wall_s, 1), round(killed.wall_s, 1)],
        "total_s": round(time.monotonic() - started, 1),
        "first_divergence": diverged,
        "kills": [f"phase {k.phase}, lifetime {k.lifetime}: {k.how}" for k in killed.kills],
    }
    report(f"crash[{crm}]", figures)

    assert reference.crashes == []
    assert killed.crashes == []
    assert len(killed.kills) == sizes.crash_kills
    assert killed.counts["duplicate_opportunities"] == 0
    assert diverged is None, f"phase {diverged[0]} converged elsewhere: {diverged[1]}"
    assert differences == []
    assert killed.counts["opportunities"] == reference.counts["opportunities"]
    assert killed.counts["accounts"] == reference.counts["accounts"], "duplicate accounts"
    assert killed.counts["contacts"] == reference.counts["contacts"], "duplicate contacts"
    assert script.bad == reference_bad
    assert unexplained == []
    assert letters == reference_letters
