"""The canonical referral: what Referral Sync knows about one Partner Center referral.

Field names are ours; the Partner Center names appear only in ``connector.partner_center``.
Every part is a frozen value object, so two parses of the same payload compare equal and a
referral can be fingerprinted. Optional text is ``None`` when absent (never ``""``); money is
:class:`~decimal.Decimal`; datetimes are aware UTC; the closing date is a :class:`date`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from connector.model.lifecycle import Lifecycle, Status, Substatus

__all__ = [
    "Address",
    "Consent",
    "Contact",
    "Customer",
    "CustomerId",
    "Deal",
    "Referral",
    "Requirements",
    "Solution",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """The customer's address; ``country`` is a 2-letter ISO 3166 code, as Partner Center sends."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    """A customer contact. Emails and phones are personal data: logs mask them."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    title: str | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerId:
    """An identifier of the customer in another register (``Duns``, ``External``)."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Customer:
    """Who the deal is with. Owned by Partner Center."""

    name: str
    address: Address | None = None
    size: str | None = None
    contacts: tuple[Contact, ...] = ()
    ids: tuple[CustomerId, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Deal:
    """The partner's estimate. Owned by the partner's CRM."""

    value: Decimal | None = None
    currency: str | None = None
    close_date: date | None = None


@dataclass(frozen=True, slots=True)
class Solution:
    """A solution the customer needs (``SOL-…`` catalog id or a category id)."""

    id: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirements:
    """What the customer needs. Owned by Partner Center."""

    solutions: tuple[Solution, ...] = ()
    products: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    industries: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    """The consent flags; ``None`` where Partner Center did not say."""

    share_info_with_others: bool | None = None
    contact: bool | None = None
    share_with_microsoft_sellers: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Referral:
    """One Partner Center referral, as the engine and the mappings see it.

    ``etag`` is kept exactly as the wire gives it (quotes included): it goes back in If-Match.
    ``external_reference_id`` is the CRM's id for the opportunity, written by us.
    ``updated_at`` falls back to ``created_at`` when Partner Center leaves it out.
    """

    id: str
    customer: Customer
    lifecycle: Lifecycle
    created_at: datetime
    updated_at: datetime
    engagement_id: str | None = None
    name: str | None = None
    type: str | None = None
    qualification: str | None = None
    direction: str | None = None
    status_reason: str | None = None
    sales_stage: str | None = None
    deal: Deal = field(default_factory=Deal)
    partner_notes: str | None = None
    microsoft_notes: str | None = None
    assistance_request: str | None = None
    requirements: Requirements = field(default_factory=Requirements)
    consent: Consent = field(default_factory=Consent)
    customer_requested_contact: bool = False
    accepted_at: datetime | None = None
    closed_at: datetime | None = None
    expires_at: datetime | None = None
    external_reference_id: str | None = None
    microsoft_crm_id: str | None = None
    etag: str | None = None

    @property
    def status(self) -> Status:
        return self.lifecycle.status

    @property
    def substatus(self) -> Substatus:
        return self.lifecycle.substatus

    @property
    def is_hot(self) -> bool:
        """The customer asked to be contacted: Partner Center gives the partner 72 hours."""
        return self.customer_requested_contact
