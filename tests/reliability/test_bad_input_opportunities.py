"""What a salesperson can do to an opportunity, one file each: an update Partner Center would
refuse is dead-lettered naming the CRM field to fill, a change Partner Center cannot take is a
logged conflict, nothing crashes, and the salesperson's other work in the same cycle goes on.

Cases live in ``tests/data/bad_input/opportunity/<case>.json``: ``referral`` (keywords for
``builders.referral``; ``lifecycle`` as ``"Status/Substatus"``), ``steps`` run after the first
sync (``{"salesperson": {field: value}}``, ``{"cycle": n}``, ``{"delete": true}``,
``{"microsoft_edit": {...}}``, ``{"expire": true}``; ``deal`` is ``{value, currency,
close_date}``), and ``expect``: ``dead_letter`` (text the
one outbound or inbound dead letter's reason must hold), ``lifecycle`` (the referral's in
Partner Center afterwards), ``conflict`` (a ``conflict_resolved`` event was logged).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_world import CONNECTION, World, referrals
from structlog.testing import capture_logs

from connector.model import Deal, Lifecycle, Status, Substatus

CASES_DIR = Path(__file__).parents[1] / "data" / "bad_input" / "opportunity"
CASES = sorted(CASES_DIR.glob("*.json"))


def expand(value: Any) -> Any:
    if isinstance(value, dict) and "$repeat" in value:
        return value["$repeat"] * value["times"]
    return value


def lifecycle(text: str) -> Lifecycle:
    status, _, substatus = text.partition("/")
    return Lifecycle(Status(status), Substatus(substatus))


def typed(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON values as the CRM holds them: amounts are Decimals."""
    return {
        name: Decimal(str(value)) if name == "Amount" and value is not None else expand(value)
        for name, value in fields.items()
    }


def run_steps(world: World, referral_id: str, steps: list[dict[str, Any]]) -> None:
    for step in steps:
        if "salesperson" in step:
            world.salesperson(referral_id, **typed(step["salesperson"]))
        elif "cycle" in step:
            for _ in range(step["cycle"]):
                world.cycle()
        elif "delete" in step:
            crm_id = world.opportunity(referral_id)["Id"]
            del world.crm.tables["Opportunity"][crm_id]
        elif "microsoft_edit" in step:
            world.pc.microsoft_edit(referral_id, **step["microsoft_edit"])
        elif "expire" in step:
            world.pc.expire(referral_id)
        else:
            raise AssertionError(f"unknown step {step}")


def test_the_opportunity_corpus_covers_what_the_issue_names():
    names = {path.stem for path in CASES}
    assert {"accept_without_amount", "reopened_closed_won_deal"} <= names
    assert any("unknown_stage" in name for name in names)
    assert any("deleted" in name for name in names)
    assert len(CASES) >= 12


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_a_salespersons_bad_edit_costs_only_itself(path: Path):
    case = json.loads(path.read_text(encoding="utf-8"))
    assert case.get("_comment"), "every case says what it is"
    world = World()
    changes = dict(case["referral"])
    if "lifecycle" in changes:
        changes["lifecycle"] = lifecycle(changes["lifecycle"])
    if "deal" in changes:
        deal = changes["deal"]
        value = None if deal["value"] is None else Decimal(str(deal["value"]))
        close = None if deal["close_date"] is None else date.fromisoformat(deal["close_date"])
        changes["deal"] = Deal(value=value, currency=deal["currency"], close_date=close)
    bad, neighbour = referrals(2, **changes)
    world.pc.seed(bad, neighbour)
    world.settle()

    with capture_logs() as events:
        run_steps(world, bad.id, case["steps"])
        world.salesperson(neighbour.id, StageName="Qualification", Amount=Decimal(1000))
        results = [world.cycle(), world.cycle()]

    for result in results:
        assert not result.inbound.failed, result.inbound.errors
        assert not result.outbound.failed, result.outbound.errors
    assert world.pc.referrals[neighbour.id].lifecycle.status is Status.ACTIVE, "the rest syncs"
    expect = case["expect"]
    assert str(world.pc.referrals[bad.id].lifecycle) == expect["lifecycle"]
    letters = world.store.dead_letters(CONNECTION)
    if "dead_letter" in expect:
        [letter] = letters
        assert expect["dead_letter"] in letter.reason, letter.reason
        assert letter.attempts <= 2  # the same bad edit is not dead-lettered anew each cycle
    else:
        assert letters == [], [letter.reason for letter in letters]
    conflicts = [e for e in events if e["event"] == "conflict_resolved"]
    assert bool(conflicts) is bool(expect.get("conflict")), conflicts
    directions = [e.get("direction") for e in conflicts]
    assert len(directions) == len(set(directions)), "logged once a side, not on every cycle"
    keys = [r.get("Partner_Center_Referral_Id__c") for r in world.crm.records("Opportunity")]
    assert len([k for k in keys if k]) == len({k for k in keys if k}), "no duplicate"
