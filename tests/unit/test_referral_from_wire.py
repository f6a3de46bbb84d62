"""referral_from_wire: every recorded payload parses, every bad one names its field.

Payload files live in tests/data/partner_center/:

- ``payloads/spec_*.json``: the examples of the Partner Center docs and the real payloads the
  spec cites ([PR-GET], [PR-LIST], [PR-CREATE], [REAL]); ``payloads/q_*.json``: hand-written
  quirks. Each carries ``_comment`` (what it proves) and ``_expect`` (dotted paths into the
  canonical referral → expected value, in JSON form).
- ``bad/*.json``: payloads that must be refused; ``_field`` is the wire field the
  :class:`MappingError` must name.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from connector.errors import MappingError
from connector.model import Lifecycle, Referral, Status, Substatus
from connector.partner_center.convert import referral_from_wire

DATA = Path(__file__).parents[1] / "data" / "partner_center"
PAYLOADS = sorted((DATA / "payloads").glob("*.json"))
BAD = sorted((DATA / "bad").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def referrals_in(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One referral, or each item of an OData collection envelope."""
    return list(payload["value"]) if "value" in payload else [payload]


def as_json(value: object) -> object:
    """The canonical value in the shape the ``_expect`` blocks are written in."""
    if isinstance(value, Lifecycle | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [as_json(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [as_json(getattr(value, f.name)) for f in dataclasses.fields(value)]
    return value


def resolve(referral: Referral, path: str) -> object:
    node: object = referral
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, tuple) else getattr(node, part)
    return node


def test_there_are_at_least_thirty_quirky_payloads_and_every_spec_example():
    names = {path.name for path in PAYLOADS}
    assert sum(name.startswith("q_") for name in names) >= 30
    assert {"spec_get_by_id.json", "spec_list_page.json", "spec_create_response.json"} <= names


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda p: p.stem)
def test_payload_parses_into_a_consistent_referral(path: Path):
    payload = load(path)
    assert payload.get("_comment"), "every payload says what it proves"
    for raw in referrals_in(payload):
        referral = referral_from_wire(raw)
        assert referral.id == raw["id"]
        assert referral.customer.name
        assert referral.created_at.tzinfo is UTC
        assert referral.updated_at.tzinfo is UTC
        for moment in (referral.accepted_at, referral.closed_at, referral.expires_at):
            assert moment is None or moment.tzinfo is UTC
        assert referral.deal.value is None or isinstance(referral.deal.value, Decimal)
        assert "" not in (referral.name, referral.partner_notes, referral.microsoft_notes)
        assert referral_from_wire(raw) == referral, "parsing is deterministic"


@pytest.mark.parametrize(
    ("path", "attribute", "expected"),
    [
        pytest.param(path, attribute, expected, id=f"{path.stem}:{attribute}")
        for path in PAYLOADS
        for attribute, expected in load(path).get("_expect", {}).items()
    ],
)
def test_payload_maps_field_as_expected(path: Path, attribute: str, expected: object):
    referral = referral_from_wire(load(path))
    assert as_json(resolve(referral, attribute)) == expected


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_payload_is_refused_naming_the_field(path: Path):
    payload = load(path)
    with pytest.raises(MappingError) as caught:
        referral_from_wire(payload)
    assert caught.value.field == payload["_field"]
    assert payload["_field"] in str(caught.value)


def test_bad_payloads_cover_the_fields_the_issue_names():
    fields = {load(path)["_field"] for path in BAD}
    assert {
        "id",
        "status",
        "substatus",
        "customerProfile",
        "customerProfile.name",
        "details.dealValue",
        "details.currency",
        "createdDateTime",
    } <= fields


def test_a_json_array_is_not_a_referral():
    with pytest.raises(MappingError) as caught:
        referral_from_wire([{"id": "x"}])  # type: ignore[arg-type]
    assert caught.value.field == "referral"


def test_mapping_error_carries_the_offending_value():
    payload = load(DATA / "bad" / "deal_value_abc.json")
    with pytest.raises(MappingError) as caught:
        referral_from_wire(payload)
    assert caught.value.value == "abc"
    assert "abc" in str(caught.value)


def test_spec_example_maps_every_part_of_the_model():
    referral = referral_from_wire(load(DATA / "payloads" / "spec_get_by_id.json"))
    assert referral.lifecycle == Lifecycle(Status.NEW, Substatus.PENDING)
    assert referral.engagement_id == "b1c40bb4-6d36-4eca-baa3-e1460cf2a454"
    assert referral.type == "Independent"
    assert referral.qualification == "SalesQualified"
    assert referral.customer.address is not None
    assert referral.customer.address.postal_code == "98052"
    assert referral.customer.size == "10to50employees"
    assert [c.email for c in referral.customer.contacts] == [
        "sue.smith@contoso.com",
        "joe.hansen@contoso.com",
    ]
    assert referral.consent.share_info_with_others is True
    assert referral.requirements.products == ("Dynamics365Enterprise",)
    assert referral.requirements.services == ("DeploymentOrMigration",)
    assert referral.partner_notes is not None
    assert referral.partner_notes.startswith("Customer is looking")
    assert referral.expires_at == datetime(2018, 11, 6, tzinfo=UTC)


def test_wire_names_stay_out_of_the_canonical_referral():
    names = {f.name for f in dataclasses.fields(Referral)}
    assert not {"eTag", "dealValue", "customerProfile", "inviteContext"} & names
