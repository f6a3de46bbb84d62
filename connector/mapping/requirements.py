"""What a mapping needs of the CRM's metadata, for the adapter's start-up check. No I/O."""

from __future__ import annotations

from connector.mapping.spec import MappingSpec
from connector.ports import FieldRequirement

__all__ = ["requirements"]


def requirements(spec: MappingSpec) -> list[FieldRequirement]:
    """Every mapped field writable, the key an external id, every named stage a value."""
    lifecycle = spec.lifecycle

    stages = {*(stage for _, stage in lifecycle.on_create), *lifecycle.won, *lifecycle.lost}
    stages |= set(lifecycle.not_accepted) | {lifecycle.closed_by_partner_center}
    names = [f.crm for f in spec.fields]
    names += [n for n in (lifecycle.decline_reason, lifecycle.loss_reason) if n]
    return [
        FieldRequirement(sobject=spec.object, name=spec.key, external_id=True),
        *(FieldRequirement(sobject=spec.object, name=n) for n in dict.fromkeys(names)),
        FieldRequirement(
            sobject=spec.object,
            name=lifecycle.field,
            picklist_values=tuple(sorted(str(s) for s in stages)),
        ),
    ]
