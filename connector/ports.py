"""The ports: what the engine needs from the outside world, as Protocols.

Real adapters (``connector.partner_center``, ``connector.crm.*``, ``connector.state``) and the
fakes in ``tests/fakes.py`` satisfy these without inheriting from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
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
    ``polled_at`` is when the poll that wrote this cursor began (our clock).
    """

    high_water: datetime | None = None
    seen: Mapping[str, str] = field(default_factory=dict)
    polled_at: datetime | None = None

    def read_from(self, overlap: timedelta) -> datetime | None:
        """Where the next poll starts reading (``>=``): ``overlap`` below the high water, to catch
        changes committed late, but no further back than ``overlap`` before the previous poll
        began (whatever was committed by then, that poll saw), and never above the high water
        (more changes may share its time). So once a poll has run ``overlap`` after the last
        change, an idle poll re-reads only the high water's own instant: one request.

        ``overlap`` must cover the longest commit delay plus the clock skew between us and
        the server.
        """
        if self.high_water is None:
            return None
        start = self.high_water - overlap
        if self.polled_at is not None:
            start = max(start, min(self.high_water, self.polled_at - overlap))
        return start

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "high_water": None if self.high_water is None else self.high_water.isoformat(),
            "seen": dict(self.seen),
        }
        if self.polled_at is not None:
            data["polled_at"] = self.polled_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChangeCursor:
        raw = data.get("high_water")
        seen = data.get("seen") or {}
        polled = data.get("polled_at")
        return cls(
            high_water=None if raw is None else datetime.fromisoformat(str(raw)),
            seen={str(k): str(v) for k, v in dict(seen).items()},
            polled_at=None if polled is None else datetime.fromisoformat(str(polled)),
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
        For an update that sets only the CRM id (``external_reference_id``: a write-back), only
        the id, eTag, ``updated_at`` and CRM id of what it returns need come from the write;
        the rest may be ``current``'s (the eTag guard means it was that until the write).
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
    create: bool = False
    """The opportunity is not known to exist: the write carries the CRM-owned fields' first
    values (stage, amount), and it is create-only. If an opportunity with this key exists
    already (an earlier create landed and its reply was lost, or a crash came before its link
    was recorded), nothing is written and the outcome is ``exists``: the first values must not
    land over what the salesperson (or a CRM automation) did with the record meanwhile. So such
    a write is safe to send again after a reply that may have been lost. The engine then writes
    the opportunity again as an update: Partner Center's fields only."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOutcome:
    """What happened to one write: ``created``, ``updated``, ``exists`` (a create-only write
    found the opportunity there already and wrote nothing) or ``failed`` (with the reason)."""

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
        """Upsert by key, batched; one outcome per write, in order; a ``create`` write is
        create-only (``exists`` when the key is taken). A record the CRM refuses is a ``failed``
        outcome with the reason, never an exception; the rest go on."""
        ...

    def changes_since(self, cursor: Mapping[str, Any] | None) -> Iterator[CrmChangePage]:
        """Every opportunity changed since ``cursor`` (None: from the beginning), once each."""
        ...

    def check_metadata(self, required: Sequence[FieldRequirement]) -> list[MetadataProblem]:
        """Every required field that is missing, read-only, not an external id, or lacks a
        picklist value: all of them, not only the first."""
        ...


# -- the state store ----------------------------------------------------------------------------
#
# What the engine remembers between cycles and across crashes, per connection: where each change
# feed stopped (cursors), which referral is which opportunity (links, with the fingerprints that
# stop echo loops), what could not be synced (dead letters) and what each cycle did (runs); and
# which daemon may sync it (the leader lease). Implementations: ``connector.state.memory`` and
# ``connector.state.sql`` (SQLite, Postgres); all pass tests/contract/test_state_store_contract.py.


class Direction(StrEnum):
    """Which way a record travels: Partner Center → CRM, or CRM → Partner Center."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """One referral paired with its CRM opportunity, and what was last synced between them.

    ``referral_id`` is the key (compared case-insensitively, as the CRM's external id is).
    ``inbound_fingerprint``: a digest of the Partner-Center-owned fields as last written to the
    CRM. ``outbound_fingerprint``: a digest of the CRM-owned fields as Partner Center last had
    them from us (or as we first wrote them into the CRM). ``etag``: the referral's last eTag.
    ``crm_id_written``: Partner Center's externalReferenceId holds ``crm_id`` (or the referral
    is closed and takes no more writes, so there is nothing left to write back).
    ``crm_open``: the opportunity was open in the CRM when last written or read (None: not
    known); when Partner Center closes the referral, only an open opportunity is closed too.
    ``updated_at``: when the link was last written; kept as given, or stamped with the store's
    clock when None. ``links_awaiting_crm_id`` orders by it (then by referral id).
    """

    referral_id: str
    crm_id: str | None = None
    engagement_id: str | None = None
    inbound_fingerprint: str | None = None
    outbound_fingerprint: str | None = None
    etag: str | None = None
    crm_id_written: bool = False
    crm_open: bool | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterEntry:
    """A record that could not be synced, as the engine reports it."""

    direction: Direction
    record_id: str | None  # the referral id (inbound) or the CRM id (outbound), when known
    reason: str
    payload: Mapping[str, Any]  # JSON-able: the record as received
    seen_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A dead letter as stored: one row per (connection, direction, record) while unresolved;
    a record that fails again bumps ``attempts`` and ``last_seen`` and takes the new reason
    and payload."""

    id: int
    connection: str
    direction: Direction
    record_id: str | None
    reason: str
    payload: Mapping[str, Any]
    attempts: int
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One cycle of one direction of one connection."""

    id: int
    connection: str
    direction: Direction
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None  # "ok" | "partial" (some records dead-lettered) | "failed"
    counts: Mapping[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()


class StateStore(Protocol):
    """Cursors, links, dead letters, runs and leases, per connection. Every method is atomic; a
    failure to read or write raises :class:`~connector.errors.StateError`.

    Cursors and payloads must be JSON-able (no Decimal, NaN, sets or datetimes); tuples come
    back as lists. Unknown ids in ``resolve_dead_letter``/``finish_run`` raise StateError;
    resolving twice keeps the first time. A negative ``limit`` raises ValueError.
    """

    def get_cursor(self, connection: str, stream: str) -> Mapping[str, Any] | None:
        """The JSON-able cursor last stored for this feed, or None."""
        ...

    def set_cursor(self, connection: str, stream: str, cursor: Mapping[str, Any]) -> None: ...

    def get_link(self, connection: str, referral_id: str) -> Link | None: ...

    def get_links(self, connection: str, referral_ids: Iterable[str]) -> dict[str, Link]:
        """The links of those referrals that have one, keyed by the referral id in lower case
        (``str.lower``, as :meth:`get_link` compares ids); one read for a whole batch."""
        ...

    def get_link_by_crm_id(self, connection: str, crm_id: str) -> Link | None: ...

    def put_link(self, connection: str, link: Link) -> None:
        """Insert or replace the link with this referral id. A ``crm_id`` belongs to at most one
        link per connection: a second referral with it raises StateError and changes nothing."""
        ...

    def links_awaiting_crm_id(self, connection: str, limit: int = 100) -> list[Link]:
        """Links with a ``crm_id`` that Partner Center does not hold yet (oldest first)."""
        ...

    def record_page(
        self,
        connection: str,
        stream: str,
        *,
        links: Sequence[Link],
        dead_letters: Sequence[DeadLetterEntry],
        resolved: Sequence[tuple[Direction, str]] = (),
        cursor: Mapping[str, Any],
    ) -> None:
        """All of one page in one transaction: its links, its dead letters, the dead letters it
        resolved (records that synced this time), then the cursor. All or nothing.
        A resolved dead letter is stamped with the store's clock; a record with no open dead
        letter is ignored. ``resolved`` matches record ids exactly (case-sensitive)."""
        ...

    def add_dead_letter(self, connection: str, entry: DeadLetterEntry) -> DeadLetter: ...

    def dead_letters(
        self, connection: str | None = None, *, include_resolved: bool = False
    ) -> list[DeadLetter]:
        """Oldest first."""
        ...

    def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None: ...

    def resolve_dead_letter(self, dead_letter_id: int, at: datetime) -> None: ...

    def start_run(self, connection: str, direction: Direction, at: datetime) -> int: ...

    def finish_run(
        self,
        run_id: int,
        at: datetime,
        *,
        outcome: str,
        counts: Mapping[str, int],
        errors: Sequence[str] = (),
    ) -> None: ...

    def recent_runs(self, connection: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Newest first."""
        ...

    # -- the leader lease: one holder per connection, so two daemons on one database never
    # sync the same connection at once.
    #
    # "Now" is the lease clock: the database server's on Postgres (every replica reads the same
    # clock, so skew between the replicas' own clocks cannot make two holders), the store's
    # clock on SQLite (its replicas share one host, so one clock) and in memory. A lease is held
    # while now < its expiry. The holder must stop before its lease may have lapsed by its own
    # count: read a monotonic clock *before* calling acquire or renew; a True means the lease is
    # held until at least that reading + ttl (the expiry is stamped later, on the lease clock).
    # Renew well before that (every ttl/3, say); after a False, stop work on the connection.
    # ``holder`` names one daemon process (host, pid and a random part); it must be non-empty
    # and ``ttl`` positive, else ValueError.

    def acquire_lease(self, connection: str, holder: str, ttl: timedelta) -> bool:
        """Take the lease on ``connection`` for ``holder`` until ``ttl`` from now, if it is free,
        expired, or ``holder``'s already (then it is extended, as ``renew_lease`` would). False,
        changing nothing, while another holder's lease has not expired."""
        ...

    def renew_lease(self, connection: str, holder: str, ttl: timedelta) -> bool:
        """Extend ``holder``'s unexpired lease to ``ttl`` from now. False, changing nothing, when
        ``holder`` has no unexpired lease: it expired (even if nobody took it since), was
        released, or another holder has it. The holder learns here that it lost the lease."""
        ...

    def release_lease(self, connection: str, holder: str) -> None:
        """Give the lease up, expired or not, so another holder can take it at once; nothing when
        ``holder`` does not have it (another holder's lease is never touched)."""
        ...

    def lease_holder(self, connection: str) -> str | None:
        """Who holds the unexpired lease on ``connection``, or None."""
        ...

    def leases(self, prefix: str = "") -> dict[str, str]:
        """Every unexpired lease whose name starts with ``prefix``: name → holder."""
        ...

    def close(self) -> None: ...
