"""The canonical values a mapping file may name as a field's ``source``, one getter each.

A name here is the mapping's vocabulary: ``deal.value``, ``customer.address.postal_code``,
``lifecycle``… A file naming anything else is refused when it is loaded, with the known names.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.model import Referral

__all__ = ["PARTNER_FIELDS", "SOURCES", "source_value"]

Getter = Callable[[Referral], object]


def _address(r: Referral, part: str) -> object:
    return None if r.customer.address is None else getattr(r.customer.address, part)


def _primary_contact(r: Referral, part: str) -> object:
    return getattr(r.customer.contacts[0], part) if r.customer.contacts else None


SOURCES: dict[str, Getter] = {
    "id": lambda r: r.id,
    "engagement_id": lambda r: r.engagement_id,
    "name": lambda r: r.name,
    "name_or_customer": lambda r: r.name or r.customer.name,
    "lifecycle": lambda r: str(r.lifecycle),
    "status": lambda r: str(r.status),
    "substatus": lambda r: str(r.substatus),
    "type": lambda r: r.type,
    "qualification": lambda r: r.qualification,
    "direction": lambda r: r.direction,
    "status_reason": lambda r: r.status_reason,
    "deal.value": lambda r: r.deal.value,
    "deal.currency": lambda r: r.deal.currency,
    "deal.close_date": lambda r: r.deal.close_date,
    "partner_notes": lambda r: r.partner_notes,
    "microsoft_notes": lambda r: r.microsoft_notes,
    "assistance_request": lambda r: r.assistance_request,
    "customer.name": lambda r: r.customer.name,
    "customer.size": lambda r: r.customer.size,
    "customer.address.line1": lambda r: _address(r, "line1"),
    "customer.address.city": lambda r: _address(r, "city"),
    "customer.address.state": lambda r: _address(r, "state"),
    "customer.address.postal_code": lambda r: _address(r, "postal_code"),
    "customer.address.country": lambda r: _address(r, "country"),
    "customer.contact.email": lambda r: _primary_contact(r, "email"),
    "requirements.solutions": lambda r: [s.name or s.id for s in r.requirements.solutions],
    "requirements.products": lambda r: list(r.requirements.products),
    "requirements.services": lambda r: list(r.requirements.services),
    "requirements.industries": lambda r: list(r.requirements.industries),
    "customer_requested_contact": lambda r: r.customer_requested_contact,
    "created_at": lambda r: r.created_at,
    "updated_at": lambda r: r.updated_at,
    "accepted_at": lambda r: r.accepted_at,
    "closed_at": lambda r: r.closed_at,
    "expires_at": lambda r: r.expires_at,
    "microsoft_crm_id": lambda r: r.microsoft_crm_id,
}

PARTNER_FIELDS = ("deal_value", "currency", "close_date", "partner_notes")
"""The canonical fields of a partner update that a CRM-owned field may be read back into."""


def source_value(referral: Referral, name: str) -> object:
    return SOURCES[name](referral)
