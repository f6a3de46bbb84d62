"""Real-behaviour fakes shared by the tests (no Mock): they do what the real thing does."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connector.crm.customers import fitted_contact
from connector.crm.salesforce.adapter import CONTACT_LIMITS as SF_CONTACT_LIMITS
from connector.errors import ConflictError, PermanentError, RateLimited, RecordRejected
from connector.model import Deal, Lifecycle, PartnerUpdate, Referral, Status, Substatus
from connector.ports import (
    AccountRef,
    ChangeCursor,
    ChangePage,
    ContactRef,
    CrmChangePage,
    FieldRequirement,
    MetadataProblem,
    OpportunityChange,
    OpportunityWrite,
    WriteOutcome,
)


class FakeClock:
    """A monotonic clock that moves only when something sleeps on it; records every sleep.

    Pass ``clock`` (the object itself, callable) and ``sleep`` to the code under test: retries
    then wait on this, never for real, and a test can read how long they would have waited.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- the CRM ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeField:
    """One field of the fake org: how the CRM validates what is written to it."""

    kind: str = "string"  # string | date | datetime | number | boolean | picklist | reference
    required: bool = False
    length: int | None = None
    values: tuple[str, ...] = ()  # a restricted picklist's values
    external_id: bool = False  # also unique and case-insensitive
    updateable: bool = True


STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
CURRENCIES = ("USD", "EUR", "BRL", "GBP", "JPY", "AUD", "CAD", "INR")
DECLINE_REASONS = ("Not a fit", "No capacity", "Duplicate", "Customer not interested", "Other")
LOSS_REASONS = ("Price", "Competitor", "No budget", "No decision", "Timing", "Other")


def default_org() -> dict[str, dict[str, FakeField]]:
    """The objects and fields of a freshly set-up org, as the Salesforce simulator has them."""
    text = FakeField(length=255)
    return {
        "Opportunity": {
            "Name": FakeField(required=True, length=120),
            "StageName": FakeField(kind="picklist", required=True, values=STAGES),
            "CloseDate": FakeField(kind="date", required=True),
            "Amount": FakeField(kind="number"),
            "CurrencyIsoCode": FakeField(kind="picklist", values=CURRENCIES),
            "Description": FakeField(length=32_000),
            "AccountId": FakeField(kind="reference"),
            "IsClosed": FakeField(kind="boolean", updateable=False),
            "IsWon": FakeField(kind="boolean", updateable=False),
            "Partner_Center_Referral_Id__c": FakeField(length=100, external_id=True),
            "Partner_Center_Engagement_Id__c": FakeField(length=100),
            "Partner_Center_Status__c": FakeField(length=40),
            "Partner_Center_Link__c": text,
            "Partner_Center_Hot__c": FakeField(kind="boolean"),
            "Partner_Center_Expires__c": FakeField(kind="datetime"),
            "Microsoft_Notes__c": FakeField(length=32_768),
            "Decline_Reason__c": FakeField(kind="picklist", values=DECLINE_REASONS),
            "Loss_Reason__c": FakeField(kind="picklist", values=LOSS_REASONS),
        },
        "Account": {
            "Name": FakeField(required=True, length=255),
            "BillingStreet": text,
            "BillingCity": text,
            "BillingState": text,
            "BillingPostalCode": text,
            "BillingCountry": text,
        },
        "Contact": {
            "LastName": FakeField(required=True, length=80),
            "FirstName": FakeField(length=40),
            "Email": text,
            "Phone": text,
            "Title": text,
            "AccountId": FakeField(kind="reference"),
        },
        "OpportunityContactRole": {
            "OpportunityId": FakeField(kind="reference", required=True),
            "ContactId": FakeField(kind="reference", required=True),
        },
    }


ID_PREFIXES = {"Opportunity": "006", "Account": "001", "Contact": "003"}
KEY_FIELD = "Partner_Center_Referral_Id__c"


class TickingClock:
    """CRM time that moves one millisecond every time it is read, unless frozen.

    So two records share a modification stamp only when a test freezes the clock on purpose.
    """

    def __init__(self, start: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)) -> None:
        self.current = start
        self.frozen = False

    def __call__(self) -> datetime:
        if not self.frozen:
            self.current += timedelta(milliseconds=1)
        return self.current

    def now(self) -> datetime:
        """The same, as a ``ports.Clock``."""
        return self()

    @contextmanager
    def freeze(self) -> Iterator[None]:
        """Everything stamped inside the block gets the same time."""
        self()
        self.frozen = True
        try:
            yield
        finally:
            self.frozen = False


class FakeCrm:
    """An in-memory CRM that behaves like the CRM adapter port says: a ``CrmAdapter``.

    It validates writes the way the org would (required, length, restricted picklists, unknown
    and read-only fields) and reports a refused row as a ``failed`` outcome; upserts by a
    case-insensitive external id; finds or creates accounts (name + postal code) and contacts
    (e-mail); stamps every change with ``clock`` and reads changes back once each, ties
    included. Faults: :meth:`rate_limit_next` and :meth:`expire_token`; ``auth_count`` counts
    authentications (the first request authenticates).
    """

    def __init__(
        self, *, clock: Callable[[], datetime] | None = None, page_size: int = 100
    ) -> None:
        self.clock = clock or TickingClock()
        self.page_size = page_size
        self.org = default_org()
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.org}
        self.auth_count = 0
        self.request_count = 0
        self._token_valid = False
        self._rate_limited_calls = 0
        self._retry_after = 0.0
        self._ids = itertools.count(1)

    # -- faults ---------------------------------------------------------------------------

    def rate_limit_next(self, calls: int = 1, *, retry_after: float = 30.0) -> None:
        """The next ``calls`` requests raise ``RateLimited`` before doing anything."""
        self._rate_limited_calls = calls
        self._retry_after = retry_after

    def expire_token(self) -> None:
        """The next request finds its token expired and authenticates again (once)."""
        self._token_valid = False

    def _request(self) -> None:
        self.request_count += 1
        if not self._token_valid:
            self.auth_count += 1
            self._token_valid = True
        if self._rate_limited_calls > 0:
            self._rate_limited_calls -= 1
            raise RateLimited("fake CRM: request limit exceeded", retry_after=self._retry_after)

    # -- the port -------------------------------------------------------------------------

    def upsert(self, writes: Sequence[OpportunityWrite]) -> list[WriteOutcome]:
        self._request()
        return [self._upsert_one(write) for write in writes]

    def changes_since(self, cursor: Mapping[str, Any] | None) -> Iterator[CrmChangePage]:
        high_water = None if not cursor else datetime.fromisoformat(cursor["high_water"])
        seen: dict[str, str] = {} if not cursor else dict(cursor["seen"])
        while True:
            self._request()
            rows = sorted(
                (r for r in self.tables["Opportunity"].values() if _unseen(r, high_water, seen)),
                key=lambda r: (r["SystemModstamp"], r["Id"]),
            )
            page = rows[: self.page_size]
            if not page:
                return
            for row in page:
                if high_water is None or row["SystemModstamp"] > high_water:
                    high_water, seen = row["SystemModstamp"], {}
                seen[row["Id"]] = row["SystemModstamp"].isoformat()
            changes = tuple(_change(row) for row in page)
            assert high_water is not None
            yield CrmChangePage(changes, {"high_water": high_water.isoformat(), "seen": seen})
            if len(page) < self.page_size:
                return

    def check_metadata(self, required: Sequence[FieldRequirement]) -> list[MetadataProblem]:
        self._request()
        return [problem for need in required for problem in self._lacks(need)]

    def _lacks(self, need: FieldRequirement) -> Iterator[MetadataProblem]:
        def problem(message: str, field: str | None = need.name) -> MetadataProblem:
            return MetadataProblem(sobject=need.sobject, field=field, message=message)

        fields = self.org.get(need.sobject)
        have = None if fields is None else fields.get(need.name)
        if fields is None:
            yield problem("object does not exist", field=None)
        elif have is None:
            yield problem("field does not exist")
        else:
            if need.writable and not have.updateable:
                yield problem("field is read-only")
            if need.external_id and not have.external_id:
                yield problem("field is not an External ID")
            for value in need.picklist_values:
                if value not in have.values:
                    yield problem(f"picklist value {value!r} is missing")

    # -- what a salesperson or an admin does ----------------------------------------------

    def edit(self, sobject: str, crm_id: str, **fields: object) -> None:
        """A salesperson's change in the CRM's own screens: new values, a new stamp."""
        record = self.tables[sobject][crm_id]
        record.update(self._typed(sobject, fields))
        record["SystemModstamp"] = self.clock()

    def records(self, sobject: str) -> list[dict[str, Any]]:
        return [dict(record) for record in self.tables[sobject].values()]

    def remove_field(self, sobject: str, name: str) -> None:
        del self.org[sobject][name]

    def remove_picklist_value(self, sobject: str, field: str, value: str) -> None:
        have = self.org[sobject][field]
        values = tuple(v for v in have.values if v != value)
        self.org[sobject][field] = replace(have, values=values)

    # -- inside ---------------------------------------------------------------------------

    def _upsert_one(self, write: OpportunityWrite) -> WriteOutcome:
        fields = {**write.fields, KEY_FIELD: write.key}
        existing = self._find("Opportunity", KEY_FIELD, write.key)
        if write.create and existing is not None:  # create-only: the record is left as it is
            return WriteOutcome(key=write.key, action="exists", crm_id=existing["Id"])
        problem = self._invalid("Opportunity", fields, existing)
        if problem is None and write.account is not None:
            problem = self._invalid("Account", _account_fields(write.account), None)
        if problem is None:
            problem = next(
                (
                    p
                    for c in write.contacts
                    if (p := self._invalid("Contact", _contact_fields(c), None))
                ),
                None,
            )
        if problem is not None:
            return WriteOutcome(key=write.key, action="failed", reason=problem)
        fields = self._typed("Opportunity", fields)
        if write.account is not None:
            fields["AccountId"] = self._account(write.account)
        stage = fields.get("StageName", existing and existing.get("StageName"))
        fields["IsClosed"] = stage in ("Closed Won", "Closed Lost")
        fields["IsWon"] = stage == "Closed Won"
        if existing is None:
            crm_id = self._insert("Opportunity", fields)
        else:
            crm_id = existing["Id"]
            self.edit("Opportunity", crm_id, **fields)
        for contact in (c for c in write.contacts if c.email):  # no e-mail: cannot be found again
            self._attach(crm_id, self._contact(contact, fields.get("AccountId")))
        action = "created" if existing is None else "updated"
        return WriteOutcome(key=write.key, action=action, crm_id=crm_id)

    def _typed(self, sobject: str, fields: Mapping[str, object]) -> dict[str, object]:
        """Values as the CRM reads them back: dates as ``date``, numbers as ``Decimal``."""
        org = self.org[sobject]
        return {name: _typed_value(org.get(name), value) for name, value in fields.items()}

    def _invalid(
        self, sobject: str, fields: Mapping[str, object], existing: Mapping[str, Any] | None
    ) -> str | None:
        """Why the org refuses these values (the first reason), or None."""
        org = self.org[sobject]
        for name, value in fields.items():
            problem = _field_problem(sobject, name, org.get(name), value)
            if problem is not None:
                return problem
        merged = {**(existing or {}), **fields}
        missing = [n for n, f in org.items() if f.required and merged.get(n) in (None, "")]
        if missing:
            return f"REQUIRED_FIELD_MISSING: Required fields are missing: [{', '.join(missing)}]"
        return None

    def _find(self, sobject: str, field: str, value: object) -> dict[str, Any] | None:
        folded = str(value).casefold()
        return next(
            (
                record
                for record in self.tables[sobject].values()
                if record.get(field) is not None and str(record[field]).casefold() == folded
            ),
            None,
        )

    def _insert(self, sobject: str, fields: Mapping[str, object]) -> str:
        crm_id = f"{ID_PREFIXES.get(sobject, '00K')}{next(self._ids):015d}"
        self.tables[sobject][crm_id] = {**fields, "Id": crm_id, "SystemModstamp": self.clock()}
        return crm_id

    def _account(self, account: AccountRef) -> str:
        postal = (account.postal_code or "").casefold()
        for record in self.tables["Account"].values():
            if (
                record["Name"].casefold() == account.name.casefold()
                and (record.get("BillingPostalCode") or "").casefold() == postal
            ):
                return str(record["Id"])
        return self._insert("Account", _account_fields(account))

    def _contact(self, contact: ContactRef, account_id: object) -> str:
        found = self._find("Contact", "Email", contact.email)
        if found is not None:
            return str(found["Id"])
        return self._insert("Contact", {**_contact_fields(contact), "AccountId": account_id})

    def _attach(self, opportunity_id: str, contact_id: str) -> None:
        roles = self.tables["OpportunityContactRole"].values()
        if not any(
            r["OpportunityId"] == opportunity_id and r["ContactId"] == contact_id for r in roles
        ):
            self._insert(
                "OpportunityContactRole", {"OpportunityId": opportunity_id, "ContactId": contact_id}
            )


def _unseen(
    record: Mapping[str, Any], high_water: datetime | None, seen: Mapping[str, str]
) -> bool:
    stamp: datetime = record["SystemModstamp"]
    if high_water is None or stamp > high_water:
        return True
    return stamp == high_water and seen.get(record["Id"]) != stamp.isoformat()


def _field_problem(sobject: str, name: str, have: FakeField | None, value: object) -> str | None:
    if have is None:
        return f"INVALID_FIELD: No such column '{name}' on entity '{sobject}'"
    if not have.updateable:
        return f"INVALID_FIELD_FOR_INSERT_UPDATE: {sobject}.{name} is not writable"
    if value is None or value == "":
        return None
    return _value_problem(name, have, value)


def _value_problem(name: str, have: FakeField, value: object) -> str | None:
    if have.kind == "picklist" and value not in have.values:
        return (
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: "
            f"{name}: bad value for restricted picklist field: {value}"
        )
    if have.kind == "date" and not _is_date(value):
        return f"INVALID_TYPE: {name}: not a date: {value!r}"
    if have.kind == "number" and not _is_number(value):
        return f"INVALID_TYPE: {name}: not a number: {value!r}"
    if have.length is not None and len(str(value)) > have.length:
        return f"STRING_TOO_LONG: {name}: data value too large (max length={have.length})"
    return None


def _change(record: Mapping[str, Any]) -> OpportunityChange:
    fields = {k: v for k, v in record.items() if k not in ("Id", "SystemModstamp")}
    return OpportunityChange(
        crm_id=record["Id"],
        key=record.get(KEY_FIELD),
        fields=fields,
        modified_at=record["SystemModstamp"],
    )


def _typed_value(have: FakeField | None, value: object) -> object:
    if have is None or value is None or value == "":
        return value
    if have.kind == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if have.kind == "number" and not isinstance(value, Decimal):
        return Decimal(str(value))
    return value


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        return True
    try:
        Decimal(str(value))
    except ArithmeticError:
        return False
    return True


def _is_date(value: object) -> bool:
    if isinstance(value, date) and not isinstance(value, datetime):
        return True
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return len(str(value)) == 10


def _account_fields(account: AccountRef) -> dict[str, object]:
    values = {
        "Name": account.name,
        "BillingStreet": account.street,
        "BillingCity": account.city,
        "BillingState": account.state,
        "BillingPostalCode": account.postal_code,
        "BillingCountry": account.country,
    }
    return {k: v for k, v in values.items() if v is not None}


def _contact_fields(contact: ContactRef) -> dict[str, object]:
    # As the Salesforce adapter writes it: fields made to fit the org's Contact columns.
    contact = fitted_contact(contact, SF_CONTACT_LIMITS)
    values = {
        "LastName": contact.last_name,
        "FirstName": contact.first_name,
        "Email": contact.email,
        "Phone": contact.phone,
        "Title": contact.title,
    }
    return {k: v for k, v in values.items() if v is not None}


# -- Partner Center -----------------------------------------------------------------------------


class FakePartnerCenter:
    """Partner Center referrals in memory, as the ``PartnerCenterSource`` port promises.

    The change feed delivers each change once (ties and re-reads included) in pages of
    ``page_size``; ``get`` and ``update`` behave like the real source: the eTag guards a write, a
    stale one is re-read and the update re-applied once if still valid (else ``ConflictError``),
    an update the lifecycle forbids is ``RecordRejected``. Microsoft's side edits with
    :meth:`microsoft_edit` and :meth:`expire`. ``requests`` counts calls by kind; ``fail_next``
    raises queued errors from the next calls.
    """

    def __init__(self, *, clock: TickingClock | None = None, page_size: int = 100) -> None:
        self.clock = clock or TickingClock()
        self.page_size = page_size
        self.referrals: dict[str, Referral] = {}
        self.requests: Counter[str] = Counter()
        self.fail_next: list[Exception] = []
        self.history: list[tuple[str, str]] = []  # (referral id, lifecycle) per lifecycle change
        self._etags = itertools.count(1)

    def seed(self, *referrals: Referral) -> None:
        for referral in referrals:
            self.referrals[referral.id] = replace(referral, etag=self._etag())

    def microsoft_edit(self, referral_id: str, **changes: Any) -> Referral:
        """Microsoft (or Partner Center itself) changes a referral: new eTag and time."""
        changed = replace(
            self.referrals[referral_id], **changes, etag=self._etag(), updated_at=self.clock()
        )
        self.referrals[referral_id] = changed
        return changed

    def expire(self, referral_id: str) -> Referral:
        return self.microsoft_edit(
            referral_id,
            lifecycle=Lifecycle(Status.CLOSED, Substatus.EXPIRED),
            closed_at=self.clock(),
        )

    def _call(self, kind: str) -> None:
        self.requests[kind] += 1
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _etag(self) -> str:
        return f'"{next(self._etags):08x}"'

    # -- the port -------------------------------------------------------------------------

    def changes_since(self, cursor: ChangeCursor) -> Iterator[ChangePage]:
        high_water, seen = cursor.high_water, dict(cursor.seen)
        while True:
            self._call("list")
            rows = sorted(
                (r for r in self.referrals.values() if _pc_unseen(r, high_water, seen)),
                key=lambda r: (r.updated_at, r.id),
            )
            page = rows[: self.page_size]
            if not page:
                return
            for row in page:
                if high_water is None or row.updated_at > high_water:
                    high_water, seen = row.updated_at, {}
                seen[row.id] = _pc_stamp(row)
            yield ChangePage(tuple(page), (), ChangeCursor(high_water=high_water, seen=dict(seen)))
            if len(page) < self.page_size:
                return

    def get(self, referral_id: str) -> Referral:
        self._call("get")
        try:
            return self.referrals[referral_id]
        except KeyError:
            raise PermanentError(f"referral {referral_id} not found", status=404) from None

    def update(self, update: PartnerUpdate, current: Referral) -> Referral:
        self._call("update")
        stored = self.referrals[update.referral_id]
        if stored.etag != current.etag:
            problems = update.problems(stored)
            if problems:
                raise ConflictError(f"stale eTag and the update no longer applies: {problems[0]}")
        problems = update.problems(stored)
        if problems:
            raise RecordRejected(f"Partner Center refused: {problems[0]}", status=400)
        target = update.target or stored.lifecycle
        now = self.clock()
        deal = Deal(
            value=update.deal_value if update.deal_value is not None else stored.deal.value,
            currency=update.currency or stored.deal.currency,
            close_date=update.close_date or stored.deal.close_date,
        )
        written = replace(
            stored,
            lifecycle=target,
            deal=deal,
            partner_notes=update.partner_notes or stored.partner_notes,
            external_reference_id=update.external_reference_id or stored.external_reference_id,
            status_reason=update.reason or stored.status_reason,
            accepted_at=now
            if target.status is Status.ACTIVE and stored.accepted_at is None
            else stored.accepted_at,
            closed_at=now
            if target.is_terminal and not stored.lifecycle.is_terminal
            else stored.closed_at,
            updated_at=now,
            etag=self._etag(),
        )
        if target != stored.lifecycle:
            self.history.append((stored.id, str(target)))
        self.referrals[stored.id] = written
        return written


def _pc_stamp(referral: Referral) -> str:
    return f"{referral.updated_at.isoformat()}|{referral.etag}"


def _pc_unseen(referral: Referral, high_water: datetime | None, seen: Mapping[str, str]) -> bool:
    if high_water is None or referral.updated_at > high_water:
        return True
    return referral.updated_at == high_water and seen.get(referral.id) != _pc_stamp(referral)
