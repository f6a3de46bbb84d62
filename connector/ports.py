"""The ports: what the engine needs from the outside world, as Protocols.

Real adapters (``connector.partner_center``, ``connector.crm.*``, later ``connector.state``)
and the fakes in ``tests/fakes.py`` satisfy these without inheriting from them. The state store
port arrives with its issue.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connector.errors import MappingError
from connector.model import PartnerUpdate, Referral


class Clock(Protocol):
    """Wall-clock time, injectable so tests and the sandbox can move it."""

    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


@dataclass(frozen=True, slots=True)
class ChangeCursor:
    """Where a change feed stopped: a high-water mark plus what was already seen near it.

    ``high_water`` is the newest change time delivered. ``seen`` maps the id of every change
    delivered within the overlap window below ``high_water`` to a stamp of that change (its
    time, then its version), so a re-read of the window (to catch late commits) never delivers
    the same change twice, while a *new* change of the same record still comes through.
    """

    high_water: datetime | None = None
    seen: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "high_water": None if self.high_water is None else self.high_water.isoformat(),
            "seen": dict(self.seen),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChangeCursor:
        raw = data.get("high_water")
        seen = data.get("seen") or {}
        return cls(
            high_water=None if raw is None else datetime.fromisoformat(str(raw)),
            seen={str(k): str(v) for k, v in dict(seen).items()},
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record of a change feed that could not be turned into the canonical model."""

    record_id: str | None
    error: MappingError
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of a change feed: what parsed, what did not, and the cursor after this page.

    The caller stores ``cursor`` only after it has written and recorded everything in the page.
    """

    referrals: tuple[Referral, ...]
    rejected: tuple[Rejected, ...]
    cursor: ChangeCursor


class PartnerCenterSource(Protocol):
    """Partner Center referrals as the engine sees them."""

    def changes_since(self, cursor: ChangeCursor) -> Iterator[ChangePage]:
        """Every referral changed since ``cursor``, page by page, each change exactly once."""
        ...

    def get(self, referral_id: str) -> Referral:
        """The referral as it is now (with its current eTag)."""
        ...

    def update(self, update: PartnerUpdate, current: Referral) -> Referral:
        """Apply the partner's update to ``current`` (whose eTag guards the write).

        On a stale eTag the referral is re-read and the update re-applied once if it is still
        valid; otherwise ``ConflictError``. Returns the referral as written (its new eTag).
        """
        ...


# -- the CRM side -------------------------------------------------------------------------------
#
# The CRM adapter speaks the CRM's own field names: the mapping (connector/mapping) turns the
# canonical model into those names and back. The adapter owns everything vendor-shaped below
# that: batching, the external-id upsert, accounts and contacts, change detection, metadata.


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountRef:
    """The customer's account: found by name + postal code, else created with these values."""

    name: str
    postal_code: str | None = None
    street: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRef:
    """A customer contact, attached to the opportunity (found by e-mail, else created)."""

    last_name: str
    first_name: str | None = None
    email: str | None = None
    phone: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpportunityWrite:
    """One opportunity to upsert, keyed by the referral id (the external id / alternate key)."""

    key: str
    fields: Mapping[str, object]
    account: AccountRef | None = None
    contacts: tuple[ContactRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOutcome:
    """What happened to one write: ``created``, ``updated`` or ``failed`` (with the reason)."""

    key: str
    action: str
    crm_id: str | None = None
    reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.action == "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpportunityChange:
    """One opportunity as read back from the CRM after it changed."""

    crm_id: str
    key: str | None
    fields: Mapping[str, object]
    modified_at: datetime
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class CrmChangePage:
    """A page of CRM changes and the cursor to store once the page is handled.

    The cursor is the adapter's own JSON-able state (a watermark and ties, or a delta link).
    """

    changes: tuple[OpportunityChange, ...]
    cursor: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRequirement:
    """A field the mapping needs on a CRM object, and how it is used."""

    sobject: str
    name: str
    writable: bool = True
    external_id: bool = False
    picklist_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataProblem:
    """Something the CRM's metadata lacks, in words a CRM admin understands."""

    sobject: str
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.sobject if self.field is None else f"{self.sobject}.{self.field}"
        return f"{where}: {self.message}"


class CrmAdapter(Protocol):
    """A partner's CRM, as the engine sees it. Each implementation passes tests/contract."""

    def upsert(self, writes: Sequence[OpportunityWrite]) -> list[WriteOutcome]:
        """Upsert by key, batched; one outcome per write, in order. A record the CRM refuses
        is a ``failed`` outcome with the reason, never an exception; the rest go on."""
        ...

    def changes_since(self, cursor: Mapping[str, Any] | None) -> Iterator[CrmChangePage]:
        """Every opportunity changed since ``cursor`` (None: from the beginning), once each."""
        ...

    def check_metadata(self, required: Sequence[FieldRequirement]) -> list[MetadataProblem]:
        """Every required field that is missing, read-only, not an external id, or lacks a
        picklist value: all of them, not only the first."""
        ...
