"""PartnerUpdate and patch_for_update: what the partner may change, and the JSON Patch for it."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from connector.errors import ConflictError, MappingError
from connector.model import (
    Action,
    Customer,
    Deal,
    Lifecycle,
    PartnerUpdate,
    Referral,
    Status,
    Substatus,
    target_lifecycle,
    transition_problem,
)
from connector.partner_center.convert import patch_for_update, referral_from_wire
from connector.partner_center.wire import PATCHABLE_PATHS

REFERRAL_ID = "9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
NEW = Lifecycle(Status.NEW, Substatus.PENDING)
ACTIVE = Lifecycle(Status.ACTIVE, Substatus.ACCEPTED)
WON = Lifecycle(Status.CLOSED, Substatus.WON)
LOST = Lifecycle(Status.CLOSED, Substatus.LOST)
DECLINED = Lifecycle(Status.CLOSED, Substatus.DECLINED)
WIRE = Path(__file__).parents[1] / "data" / "partner_center" / "payloads"


def referral(**changes: Any) -> Referral:
    base = Referral(
        id=REFERRAL_ID,
        customer=Customer(name="Contoso Ltd"),
        lifecycle=NEW,
        created_at=datetime(2024, 5, 2, tzinfo=UTC),
        updated_at=datetime(2024, 5, 3, tzinfo=UTC),
        name="Contoso ERP migration",
        deal=Deal(value=Decimal(25000), currency="USD", close_date=date(2024, 9, 30)),
        partner_notes="Partner notes here",
        etag='"6a00"',
    )
    return dataclasses.replace(base, **changes)


def update(action: Action = Action.EDIT, **fields: Any) -> PartnerUpdate:
    return PartnerUpdate(referral_id=REFERRAL_ID, action=action, **fields)


def replace(path: str, value: object) -> dict[str, object]:
    return {"op": "replace", "path": path, "value": value}


def add(path: str, value: object) -> dict[str, object]:
    return {"op": "add", "path": path, "value": value}


# --- field edits ------------------------------------------------------------------------------


def test_an_update_that_changes_nothing_is_an_empty_patch():
    same = update(
        deal_value=Decimal("25000.00"),
        currency="usd",
        close_date=date(2024, 9, 30),
        partner_notes="Partner notes here",
    )
    assert patch_for_update(referral(), same) == []


def test_an_update_with_no_fields_is_an_empty_patch():
    assert patch_for_update(referral(), update()) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"deal_value": Decimal(30000)}, replace("/details/dealValue", "30000")),
        ({"deal_value": Decimal("10000.50")}, replace("/details/dealValue", "10000.50")),
        ({"deal_value": Decimal("1E+3")}, replace("/details/dealValue", "1000")),
        ({"currency": "eur"}, replace("/details/currency", "EUR")),
        (
            {"close_date": date(2024, 12, 31)},
            replace("/details/closingDateTime", "2024-12-31T00:00:00Z"),
        ),
        ({"partner_notes": "New notes"}, replace("/details/notes", "New notes")),
        ({"external_reference_id": "006ABC"}, add("/externalReferenceId", "006ABC")),
    ],
)
def test_a_changed_field_becomes_one_op_on_its_patchable_path(
    fields: dict[str, Any], expected: dict[str, object]
):
    assert patch_for_update(referral(), update(**fields)) == [expected]


def test_a_field_the_referral_lacks_is_added_not_replaced():
    bare = referral(deal=Deal(), partner_notes=None)
    ops = patch_for_update(
        bare,
        update(
            deal_value=Decimal(5),
            currency="USD",
            close_date=date(2025, 1, 31),
            partner_notes="n",
        ),
    )
    assert [op["op"] for op in ops] == ["add"] * 4
    assert [op["path"] for op in ops] == [
        "/details/dealValue",
        "/details/currency",
        "/details/closingDateTime",
        "/details/notes",
    ]


def test_a_changed_crm_id_replaces_the_old_one():
    ops = patch_for_update(
        referral(external_reference_id="006OLD"), update(external_reference_id="006NEW")
    )
    assert ops == [replace("/externalReferenceId", "006NEW")]


def test_deal_value_is_sent_as_a_string_like_the_documented_example():
    (op,) = patch_for_update(referral(), update(deal_value=Decimal("10000")))
    assert op["value"] == "10000"
    assert isinstance(op["value"], str)


# --- lifecycle actions ------------------------------------------------------------------------


def test_accept_sends_changed_fields_then_status_and_substatus():
    ops = patch_for_update(referral(), update(Action.ACCEPT, deal_value=Decimal(40000)))
    assert ops == [
        replace("/details/dealValue", "40000"),
        replace("/status", "Active"),
        replace("/substatus", "Accepted"),
    ]


@pytest.mark.parametrize(
    ("current", "missing_field"),
    [
        ({"name": None}, "name"),
        ({"deal": Deal(currency="USD", close_date=date(2024, 9, 30))}, "deal_value"),
        ({"deal": Deal(value=Decimal(0), close_date=date(2024, 9, 30))}, "deal_value"),
        ({"deal": Deal(value=Decimal(1))}, "close_date"),
        ({"partner_notes": None}, "partner_notes"),
    ],
)
def test_accept_names_what_is_missing(current: dict[str, Any], missing_field: str):
    with pytest.raises(MappingError) as caught:
        patch_for_update(referral(**current), update(Action.ACCEPT))
    assert caught.value.field == missing_field
    assert "accept" in caught.value.reason


def test_accept_lists_every_missing_field_at_once():
    bare = referral(name=None, deal=Deal(), partner_notes=None)
    problems = update(Action.ACCEPT).missing(bare)
    assert [p.field for p in problems] == ["name", "deal_value", "close_date", "partner_notes"]


def test_accept_takes_missing_fields_from_the_update_itself():
    bare = referral(deal=Deal(), partner_notes=None)
    accept = update(
        Action.ACCEPT,
        deal_value=Decimal(9000),
        currency="USD",
        close_date=date(2024, 12, 1),
        partner_notes="Call booked",
    )
    ops = patch_for_update(bare, accept)
    assert ops[-2:] == [replace("/status", "Active"), replace("/substatus", "Accepted")]
    assert len(ops) == 6


def test_decline_needs_a_reason():
    with pytest.raises(MappingError) as caught:
        patch_for_update(referral(), update(Action.DECLINE))
    assert caught.value.field == "reason"


def test_decline_sends_closed_declined_and_the_reason():
    ops = patch_for_update(referral(), update(Action.DECLINE, reason="Not our region"))
    assert ops == [
        replace("/status", "Closed"),
        replace("/substatus", "Declined"),
        add("/statusReason", "Not our region"),
    ]


def test_win_from_active_closes_as_won():
    ops = patch_for_update(referral(lifecycle=ACTIVE), update(Action.WIN))
    assert ops == [replace("/status", "Closed"), replace("/substatus", "Won")]


def test_lose_replaces_an_existing_status_reason():
    current = referral(lifecycle=ACTIVE, status_reason="old")
    ops = patch_for_update(current, update(Action.LOSE, reason="Lost on price"))
    assert ops[-1] == replace("/statusReason", "Lost on price")


def test_lose_without_a_reason_is_fine():
    ops = patch_for_update(referral(lifecycle=ACTIVE), update(Action.LOSE))
    assert ops == [replace("/status", "Closed"), replace("/substatus", "Lost")]


@pytest.mark.parametrize(
    ("current", "action"),
    [
        (NEW, Action.WIN),
        (NEW, Action.LOSE),
        (ACTIVE, Action.DECLINE),
        (WON, Action.LOSE),
        (LOST, Action.ACCEPT),
        (DECLINED, Action.WIN),
    ],
)
def test_an_action_the_lifecycle_forbids_is_a_conflict(current: Lifecycle, action: Action):
    reason = "r" if action in {Action.DECLINE, Action.LOSE} else None
    with pytest.raises(ConflictError) as caught:
        patch_for_update(referral(lifecycle=current), update(action, reason=reason))
    assert str(current) in str(caught.value)
    assert caught.value.code == "invalid_transition"


def test_replaying_an_action_already_applied_changes_nothing():
    assert patch_for_update(referral(lifecycle=WON), update(Action.WIN)) == []
    assert patch_for_update(referral(lifecycle=ACTIVE), update(Action.ACCEPT)) == []


def test_replaying_accept_on_an_accepted_referral_sends_only_field_changes():
    current = referral(lifecycle=ACTIVE, partner_notes=None)
    ops = patch_for_update(current, update(Action.ACCEPT, deal_value=Decimal(1)))
    assert ops == [replace("/details/dealValue", "1")]


def test_editing_a_closed_referral_is_a_conflict():
    with pytest.raises(ConflictError, match="terminal"):
        patch_for_update(referral(lifecycle=WON), update(deal_value=Decimal(1)))


def test_an_update_for_another_referral_is_a_programming_error():
    with pytest.raises(ValueError, match="applied to"):
        patch_for_update(referral(id="other"), update())


@pytest.mark.parametrize(
    ("lifecycle", "action"),
    list(itertools.product(Lifecycle.all(), Action)),
    ids=lambda v: str(v).replace("/", "-"),
)
def test_patch_follows_the_lifecycle_rule_and_stays_on_patchable_paths(
    lifecycle: Lifecycle, action: Action
):
    current = referral(lifecycle=lifecycle)
    change = update(
        action,
        deal_value=Decimal(123),
        reason="why" if action in {Action.DECLINE, Action.LOSE} else None,
    )
    target = target_lifecycle(action)
    allowed = target is None or transition_problem(lifecycle, target) is None
    if not allowed or lifecycle.is_terminal:
        with pytest.raises(ConflictError):
            patch_for_update(current, change)
        return
    ops = patch_for_update(current, change)
    assert ops
    assert all(op["op"] in {"add", "replace"} for op in ops)
    assert {op["path"] for op in ops} <= PATCHABLE_PATHS


# --- the patch applied to the wire reads back as the update -----------------------------------


@pytest.mark.parametrize(
    "name", ["q_deal_value_missing.json", "spec_real_active_accepted_inr.json"]
)
def test_patch_applied_to_the_wire_payload_reads_back_as_the_update(name: str):
    wire = json.loads((WIRE / name).read_text(encoding="utf-8"))
    current = referral_from_wire(wire)
    action = Action.ACCEPT if current.lifecycle.status is Status.NEW else Action.WIN
    change = PartnerUpdate(
        referral_id=current.id,
        action=action,
        deal_value=Decimal("98765.43"),
        currency="eur",
        close_date=date(2025, 3, 31),
        partner_notes="Kick-off booked — São Paulo",
        external_reference_id="0065g00000AbCdEAAV",
    )
    ops = patch_for_update(current, change)
    patched = jsonpatch.apply_patch(copy.deepcopy(wire), ops)
    after = referral_from_wire(patched)
    assert after.deal == Deal(
        value=Decimal("98765.43"), currency="EUR", close_date=date(2025, 3, 31)
    )
    assert after.partner_notes == "Kick-off booked — São Paulo"
    assert after.external_reference_id == "0065g00000AbCdEAAV"
    assert after.lifecycle == target_lifecycle(action)
    assert patch_for_update(after, change) == []


# --- PartnerUpdate itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Action.EDIT, None),
        (Action.ACCEPT, Lifecycle(Status.ACTIVE, Substatus.ACCEPTED)),
        (Action.DECLINE, Lifecycle(Status.CLOSED, Substatus.DECLINED)),
        (Action.WIN, Lifecycle(Status.CLOSED, Substatus.WON)),
        (Action.LOSE, Lifecycle(Status.CLOSED, Substatus.LOST)),
    ],
)
def test_each_action_has_one_target_lifecycle(action: Action, expected: Lifecycle | None):
    assert target_lifecycle(action) == expected
    assert (
        update(action, reason="r" if action in {Action.DECLINE, Action.LOSE} else None).target
        == expected
    )


def test_update_upper_cases_its_currency():
    assert update(currency="gbp").currency == "GBP"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"deal_value": Decimal(-1)}, "deal_value"),
        ({"deal_value": Decimal("NaN")}, "deal_value"),
        ({"deal_value": Decimal("Infinity")}, "deal_value"),
        ({"currency": "US"}, "currency"),
    ],
)
def test_update_refuses_values_that_cannot_be_sent(fields: dict[str, Any], field: str):
    with pytest.raises(MappingError) as caught:
        update(**fields)
    assert caught.value.field == field


def test_a_reason_only_goes_with_decline_or_lose():
    with pytest.raises(ValueError, match="reason"):
        update(Action.ACCEPT, reason="because")


def test_an_update_needs_a_referral_id():
    with pytest.raises(ValueError, match="referral id"):
        PartnerUpdate(referral_id="")


def test_problems_lists_a_wrong_referral_and_a_forbidden_transition():
    problems = update(Action.WIN).problems(referral(id="other"))
    assert [p.field for p in problems] == ["referral_id", "lifecycle"]
    assert "Active" in str(problems[1])


def test_problems_is_empty_for_an_update_that_applies():
    assert update(Action.ACCEPT).problems(referral()) == ()


def test_partner_update_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        update().action = Action.WIN  # type: ignore[misc]
