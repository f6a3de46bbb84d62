"""The metadata check: what a mapping needs of the org, against describe, in admin words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from connector.crm.salesforce import wire
from connector.ports import FieldRequirement, MetadataProblem

OPPORTUNITY = "Opportunity"
_PICKLIST_TYPES = frozenset({"picklist", "multipicklist"})


def with_external_id(
    required: Sequence[FieldRequirement], external_id_field: str
) -> list[FieldRequirement]:
    """``required``, with the adapter's own external id field checked as one (merged)."""
    needs = list(required)
    for n, need in enumerate(needs):
        if need.sobject == OPPORTUNITY and need.name.casefold() == external_id_field.casefold():
            needs[n] = replace(need, external_id=True)
            return needs
    needs.insert(0, FieldRequirement(sobject=OPPORTUNITY, name=external_id_field, external_id=True))
    return needs


def field_problems(
    need: FieldRequirement, described: wire.DescribeField | None
) -> list[MetadataProblem]:
    """Every way ``described`` falls short of ``need``, worded for a CRM admin."""

    def problem(message: str) -> MetadataProblem:
        return MetadataProblem(sobject=need.sobject, field=need.name, message=message)

    if described is None:
        return [
            problem(
                f"the field does not exist: create it (API name {need.name}) or give the "
                "integration user field-level access to it"
            )
        ]
    problems = []
    if need.writable and not described.get("createable"):
        problems.append(
            problem("the integration user cannot set it on new records (needs Edit access)")
        )
    if need.writable and not need.external_id and not described.get("updateable"):
        problems.append(problem("the integration user cannot edit it (needs Edit access)"))
    if need.external_id:
        if not described.get("externalId"):
            problems.append(problem("it must be marked 'External ID' in the field definition"))
        if not described.get("unique"):
            problems.append(
                problem("it must be marked 'Unique' so one referral can never match two records")
            )
    if need.picklist_values:
        kind = described.get("type", "")
        if kind not in _PICKLIST_TYPES:
            problems.append(
                problem(f"it must be a picklist, but it is a {kind or 'unknown'} field")
            )
        else:
            entries = {e.get("value"): e for e in described.get("picklistValues", [])}
            for value in need.picklist_values:
                entry = entries.get(value)
                if entry is None:
                    problems.append(problem(f"the picklist value {value!r} is missing: add it"))
                elif entry.get("active") is False:
                    problems.append(
                        problem(f"the picklist value {value!r} is inactive: activate it")
                    )
    return problems
