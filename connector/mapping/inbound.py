"""Partner Center → CRM: a canonical referral as the CRM write the mapping asks for. No I/O.

On **create** every mapped field is written: Partner Center's own and, seeded from the
referral, the ones the CRM owns from then on (value, currency, close date, notes), plus the
starting stage. On **update** only the fields Partner Center owns are written, so a
salesperson's edits are never overwritten; the stage is written only when the engine says so
(Partner Center closed the referral while the opportunity was still open).
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, fields
from datetime import timedelta

from connector.mapping.sources import source_value
from connector.mapping.spec import FieldMap, MappingSpec, Owner, StageValue
from connector.mapping.values import fingerprint, shape
from connector.model import Contact, Referral
from connector.ports import AccountRef, ContactRef, OpportunityWrite

__all__ = [
    "MappedWrite",
    "created_partner_values",
    "inbound_fingerprint",
    "map_referral",
    "seeded_partner_values",
]

CLOSE_DATE = "deal.close_date"


@dataclass(frozen=True, slots=True, kw_only=True)
class MappedWrite:
    """The write for one referral, and what the mapping had to say about it."""

    write: OpportunityWrite
    warnings: tuple[str, ...] = ()


def map_referral(
    referral: Referral, spec: MappingSpec, *, create: bool, stage: StageValue | None = None
) -> MappedWrite:
    """The upsert for ``referral``; ``create``: the opportunity does not exist yet.

    A value that cannot be shaped raises :class:`~connector.errors.MappingError` naming the CRM
    field: the referral is dead-lettered, the rest of the page goes on.
    """
    warnings: list[str] = []
    owners = (Owner.PARTNER_CENTER, Owner.CRM) if create else (Owner.PARTNER_CENTER,)
    fields: dict[str, object] = {}
    for field_map in spec.fields:
        if field_map.owner in owners:
            fields[field_map.crm] = _value(referral, field_map, spec, warnings)
    if create:
        stage = spec.lifecycle.stage_on_create(referral.lifecycle)
    if stage is not None:
        fields[spec.lifecycle.field] = stage
    write = OpportunityWrite(
        key=referral.id,
        fields=fields,
        account=account_of(referral),
        contacts=tuple(contact_ref(c) for c in referral.customer.contacts),
        create=create,
    )
    return MappedWrite(write=write, warnings=tuple(warnings))


def inbound_fingerprint(referral: Referral, spec: MappingSpec) -> str:
    """A digest of what Partner Center owns, as mapped: unchanged means nothing to write."""
    ignored: list[str] = []
    values = {
        f.crm: _value(referral, f, spec, ignored) for f in spec.owned_by(Owner.PARTNER_CENTER)
    }
    values["(account)"] = account_of(referral)
    values["(contacts)"] = [contact_ref(c) for c in referral.customer.contacts]
    values["(lifecycle)"] = str(referral.lifecycle)
    return fingerprint({k: _plain(v) for k, v in values.items()})


def seeded_partner_values(referral: Referral, spec: MappingSpec) -> dict[str, object]:
    """The CRM-owned fields as a create writes them, by CRM field name (the outbound
    baseline: reading these back is not a partner's change)."""
    ignored: list[str] = []
    return {f.crm: _value(referral, f, spec, ignored) for f in spec.owned_by(Owner.CRM)}


def created_partner_values(referral: Referral, spec: MappingSpec) -> dict[str, object]:
    """What a create writes of the partner's view (the CRM-owned fields and the starting
    stage), by CRM field name: its outbound fingerprint is that of our own create read back."""
    stage = spec.lifecycle.stage_on_create(referral.lifecycle)
    return {**seeded_partner_values(referral, spec), spec.lifecycle.field: stage}


def _value(
    referral: Referral, field_map: FieldMap, spec: MappingSpec, warnings: list[str]
) -> object:
    if field_map.template is not None:
        names = _template_names(field_map.template)
        value: object = field_map.template.format(
            **{n: source_value(referral, n) or "" for n in names}
        )
    elif field_map.source is not None:
        value = source_value(referral, field_map.source)
        if field_map.source == CLOSE_DATE and value is None:
            value = referral.created_at.date() + timedelta(days=spec.close_date_default_days)
    else:
        value = field_map.constant
    return shape(field_map, value, warnings)


@functools.lru_cache(maxsize=256)
def _template_names(template: str) -> tuple[str, ...]:
    return tuple(n for _, n, _, _ in string.Formatter().parse(template) if n)


def account_of(referral: Referral) -> AccountRef:
    address = referral.customer.address
    if address is None:
        return AccountRef(name=referral.customer.name)
    street = "\n".join(p for p in (address.line1, address.line2) if p) or None
    return AccountRef(
        name=referral.customer.name,
        postal_code=address.postal_code,
        street=street,
        city=address.city,
        state=address.state,
        country=address.country,
    )


def contact_ref(contact: Contact) -> ContactRef:
    """A CRM contact needs a last name: fall back to the first name, then the e-mail."""
    last = contact.last_name or contact.first_name or contact.email or "(no name)"
    first = contact.first_name if contact.last_name else None
    return ContactRef(
        last_name=last,
        first_name=first,
        email=contact.email,
        phone=contact.phone,
        title=contact.title,
    )


_REF_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (AccountRef, ContactRef)
}


def _plain(value: object) -> object:
    names = _REF_FIELDS.get(type(value))
    if names is not None:  # what dataclasses.asdict gives (their fields are text), without its
        return {name: getattr(value, name) for name in names}  # deep copy of every value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
