"""What a mapping file says, as frozen values: fields, owners, the lifecycle table.

A mapping file (``mappings/*.yaml``) is parsed into a :class:`MappingSpec` by
:mod:`connector.mapping.parse`; :mod:`~connector.mapping.inbound` and
:mod:`~connector.mapping.outbound` apply it. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connector.model import Lifecycle

__all__ = [
    "DEFAULT_ACCEPT_NOTES",
    "FieldMap",
    "LifecycleMap",
    "MappingSpec",
    "Owner",
    "StageValue",
    "Transform",
]

DEFAULT_ACCEPT_NOTES = "Accepted by the partner in their CRM."

StageValue = str | int
"""A stage as the CRM names it: a picklist label (Salesforce) or an option value (Dataverse)."""


class Owner(StrEnum):
    """Which side decides a field's value (DESIGN.md invariant 4).

    ``partner_center``: written to the CRM on every change of the referral, never read back.
    ``crm``: written once, when the opportunity is created (seeded from the referral), then
    owned by the partner: read from the CRM and pushed to Partner Center.
    """

    PARTNER_CENTER = "partner_center"
    CRM = "crm"


class Transform(StrEnum):
    """The small named transforms a field may apply to its source value."""

    TEXT = "text"  # as text; empty text becomes None
    TRUNCATE = "truncate"  # text cut to ``length`` (a value_truncated warning says so)
    DECIMAL = "decimal"
    CURRENCY = "currency"  # ISO 4217 code, upper case
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    JOIN = "join"  # a list of texts joined by ``separator``
    LOOKUP = "lookup"  # through the field's ``table`` (source value → CRM value)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldMap:
    """One CRM field: where its value comes from, how it is shaped, who owns it.

    ``source`` names a canonical value (see :data:`connector.mapping.sources.SOURCES`);
    ``constant`` is used instead when set; ``template`` formats canonical values into text
    (``"https://…/{id}"``). ``partner`` names the canonical field of a partner update that a
    CRM-owned field is read back into (``deal_value``, ``currency``, ``close_date``,
    ``partner_notes``), or None when it is only seeded.
    """

    crm: str
    owner: Owner
    source: str | None = None
    constant: object = None
    template: str | None = None
    transform: Transform = Transform.TEXT
    length: int | None = None
    separator: str = "\n"
    table: tuple[tuple[str, object], ...] = ()
    partner: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleMap:
    """The stage field and how it and the referral's lifecycle map onto each other.

    ``on_create``: the stage an opportunity starts in, for each lifecycle. ``not_accepted``:
    open stages that mean "not accepted yet"; any other open stage accepts the referral.
    ``won`` / ``lost``: the closed stages. ``closed_by_partner_center``: the stage an open
    opportunity is moved to when Partner Center closes the referral on its side (expired,
    declined or closed by Microsoft). ``decline_reason`` / ``loss_reason``: the CRM fields the
    partner's reason is read from. ``accept_notes``: the notes sent with an accept when the
    partner wrote none (Partner Center needs notes to accept).
    """

    field: str
    on_create: tuple[tuple[Lifecycle, StageValue], ...]
    not_accepted: frozenset[StageValue]
    won: frozenset[StageValue]
    lost: frozenset[StageValue]
    closed_by_partner_center: StageValue
    decline_reason: str | None = None
    loss_reason: str | None = None
    accept_notes: str = DEFAULT_ACCEPT_NOTES

    def stage_on_create(self, lifecycle: Lifecycle) -> StageValue:
        return dict(self.on_create)[lifecycle]

    def is_closed(self, stage: object) -> bool:
        return stage in self.won or stage in self.lost


@dataclass(frozen=True, slots=True, kw_only=True)
class MappingSpec:
    """One mapping file: a CRM object keyed by the referral id, its fields, its lifecycle."""

    source: str  # the file it came from, for messages
    crm: str  # "salesforce" | "dynamics"
    object: str  # the opportunity object: Opportunity | opportunity
    key: str  # the external id field / alternate key that holds the referral id
    close_date_default_days: int
    fields: tuple[FieldMap, ...]
    lifecycle: LifecycleMap

    def owned_by(self, owner: Owner) -> tuple[FieldMap, ...]:
        return tuple(f for f in self.fields if f.owner is owner)

    def read_fields(self) -> tuple[str, ...]:
        """The CRM fields the outbound direction reads back: CRM-owned, stage, reasons."""
        names = [f.crm for f in self.owned_by(Owner.CRM)]
        lifecycle = self.lifecycle
        names.append(lifecycle.field)
        names.extend(n for n in (lifecycle.decline_reason, lifecycle.loss_reason) if n)
        return tuple(dict.fromkeys(names))
