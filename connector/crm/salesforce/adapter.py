"""The Salesforce CRM adapter (``ports.CrmAdapter``): wire ⇄ port values, vendor ⇄ our errors.

**Upsert.** For a batch of writes, in this order, each step batched:

1. Accounts: every distinct (name, postal code) is looked up with as few SOQL queries as the
   URL allows (``Name IN (…) AND BillingPostalCode IN (…)``, literals escaped by
   :func:`soql_quote`, each query's encoded text at most :data:`LOOKUP_URL_BUDGET` characters;
   the rows are matched to the wanted pairs here); the missing ones are created with sObject
   Collections, 200 a call. Several matches: the oldest (lowest Id) wins.
2. Contacts: found by e-mail (``Email IN (…)``, case-insensitive, as Salesforce compares,
   chunked the same way), else created. A contact without an e-mail cannot be found again, so
   it is not created (that would duplicate it on every replay): it is skipped and logged.
3. Opportunities: sObject Collections, ≤ 200 records a call, ``allOrNone: false``: creates
   (``write.create``) with a collections *create* carrying the external id, which is unique, so
   a create is create-only (``DUPLICATE_VALUE`` → ``exists``; Salesforce's upsert has no such
   mode) and safe to repeat after a lost reply; updates with a collections upsert on the
   external id field. A key repeated within a batch starts a new call, so the later write lands
   last. Each record's result becomes ``created``/``updated``/``exists``/``failed`` (with
   ``statusCode: message (fields)``), in input order. The engine hands over up to
   :attr:`SalesforceAdapter.max_batch` (200) writes at a time: one call, two when it mixes
   creates and updates.
4. Contact roles: ``OpportunityContactRole`` rows that do not exist yet are created. Only the
   opportunities that existed before this upsert are looked up: one the upsert has just created
   has no roles yet.

A record-level refusal at any step fails that write only (its outcome says which step and
why); so does a whole collection call that is refused permanently (every write in it fails with
that reason: the daemon dead-letters them and goes on). Transient, rate-limit and auth errors
propagate: every step is an idempotent upsert or find-or-create, so the next cycle simply
repeats the batch.

**Change feed.** ``SELECT … FROM Opportunity WHERE SystemModstamp >= (high water - overlap)
ORDER BY SystemModstamp, Id`` through ``queryAll`` (so deletions arrive, as ``IsDeleted``).
One page of results is one :class:`CrmChangePage`. A change is (Id, SystemModstamp): the cursor
(:class:`ports.ChangeCursor` as JSON: ``high_water`` + ``seen``) remembers every change within
the overlap window, so re-reading the window (to catch late commits, and ties at the boundary)
delivers nothing twice, while a newer change of the same record comes through. Field values
come back typed by the describe metadata: ``Decimal`` for currency/double/percent, ``int``,
``date``, aware UTC ``datetime``, ``bool``, else text.

**Metadata.** :meth:`check_metadata` describes each object once and reports every problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus

import structlog
from structlog.typing import FilteringBoundLogger

from connector.crm.customers import (
    account_ids,
    contact_ids,
    fitted_contact,
    wanted_accounts,
    wanted_contacts,
)
from connector.crm.salesforce import wire
from connector.crm.salesforce.client import COLLECTION_LIMIT, SalesforceClient
from connector.crm.salesforce.metadata import field_problems, with_external_id
from connector.crm.salesforce.soql import soql_datetime, soql_in, soql_quote
from connector.errors import MappingError, PermanentError, RecordRejected, StateError
from connector.model.values import format_datetime, parse_datetime
from connector.ports import (
    AccountRef,
    ChangeCursor,
    ContactRef,
    CrmChangePage,
    FieldRequirement,
    MetadataProblem,
    OpportunityChange,
    OpportunityWrite,
    WriteOutcome,
)

OPPORTUNITY = "Opportunity"
ACCOUNT = "Account"
CONTACT = "Contact"
CONTACT_ROLE = "OpportunityContactRole"
LOOKUP_URL_BUDGET = 12_000
"""Characters of URL-encoded SOQL per lookup query: well under Salesforce's 16,384-byte limit
on a REST request's URI, with room for the instance URL and path."""
DEFAULT_READ_FIELDS: tuple[str, ...] = (
    "Name",
    "StageName",
    "Amount",
    "CloseDate",
    "Probability",
    "IsClosed",
    "IsWon",
    "Description",
    "NextStep",
    "AccountId",
    "CurrencyIsoCode",
    "LastModifiedDate",
)
"""Opportunity fields the change feed reads when they exist in the org (others are skipped)."""
_DECIMAL_TYPES = frozenset({"currency", "double", "percent"})
_DUPLICATE = re.compile(r"duplicate value found: (\S+) duplicates value on record with id: (\w+)")


class SalesforceAdapter:
    """A Salesforce org as the engine sees it (``ports.CrmAdapter``)."""

    max_batch = COLLECTION_LIMIT
    """Writes one :meth:`upsert` sends in one collections call (the engine batches to it)."""

    def __init__(
        self,
        client: SalesforceClient,
        *,
        external_id_field: str,
        read_fields: Sequence[str] = DEFAULT_READ_FIELDS,
        overlap: timedelta = timedelta(minutes=2),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self._now = now
        self._client = client
        self._ext = external_id_field
        self._read_fields = tuple(read_fields)
        self._overlap = overlap
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)
        self._describes: dict[str, dict[str, wire.DescribeField]] = {}

    @property
    def client(self) -> SalesforceClient:
        return self._client

    # -- upsert -------------------------------------------------------------------------------

    def upsert(self, writes: Sequence[OpportunityWrite]) -> list[WriteOutcome]:
        failed: dict[int, str] = {}
        accounts = self._accounts(writes, failed)
        contacts = self._contacts(writes, accounts, failed)
        outcomes: dict[int, WriteOutcome] = {
            i: WriteOutcome(key=w.key, action="failed", reason=failed[i])
            for i, w in enumerate(writes)
            if i in failed
        }
        pending = [i for i in range(len(writes)) if i not in failed]
        for chunk in _chunks(pending, writes):
            creates = [i for i in chunk if writes[i].create]
            updates = [i for i in chunk if not writes[i].create]
            for indexes in (creates, updates):
                if indexes:
                    outcomes.update(self._write_opportunities(writes, indexes, accounts))
        self._contact_roles(writes, outcomes, contacts)
        return [outcomes[i] for i in range(len(writes))]

    def _write_opportunities(
        self, writes: Sequence[OpportunityWrite], indexes: list[int], accounts: Mapping[int, str]
    ) -> dict[int, WriteOutcome]:
        """One collections call: creates (create-only, so safe to repeat: the key is unique) or
        upserts on the external id."""
        create = writes[indexes[0]].create
        records = [_opportunity_record(writes[i], self._ext, accounts.get(i)) for i in indexes]
        results: Sequence[Mapping[str, Any]]  # SaveResult or UpsertResult
        try:
            if create:
                results = self._client.create_collection(
                    [(OPPORTUNITY, record) for record in records], idempotent=True
                )
            else:
                results = self._client.upsert_collection(OPPORTUNITY, self._ext, records)
        except PermanentError as exc:
            self._log.warning("opportunity_batch_refused", count=len(indexes), reason=str(exc))
            return {
                i: WriteOutcome(key=writes[i].key, action="failed", reason=str(exc))
                for i in indexes
            }
        return {
            i: self._outcome(writes[i].key, result, create=create)
            for i, result in zip(indexes, results, strict=True)
        }

    def _outcome(self, key: str, result: Mapping[str, Any], *, create: bool) -> WriteOutcome:
        crm_id = result.get("id") or None
        if result.get("success") is True and crm_id:
            created = create or result.get("created") is True
            action = "created" if created else "updated"
            # the engine logs it at info, once
            self._log.debug("opportunity_upserted", referral_id=key, crm_id=crm_id, action=action)
            return WriteOutcome(key=key, action=action, crm_id=crm_id)
        errors = result.get("errors") or []
        if create and any(e.get("statusCode") == wire.DUPLICATE_VALUE for e in errors):
            # The key is taken (a unique field): the opportunity exists. Another unique field
            # taken would fail the update the engine sends next, naming it.
            return WriteOutcome(key=key, action="exists", crm_id=self._duplicate_of(errors))
        reason = save_errors_text(errors) or "refused without a reason"
        self._log.warning("opportunity_rejected", referral_id=key, reason=reason)
        return WriteOutcome(key=key, action="failed", crm_id=crm_id, reason=reason)

    def _duplicate_of(self, errors: Iterable[wire.SaveError]) -> str | None:
        """The record whose external id a create duplicated, if the message names it."""
        for error in errors:
            found = _DUPLICATE.search(error.get("message") or "")
            if found and found.group(1).casefold() == self._ext.casefold():
                return found.group(2)
        return None

    def _accounts(
        self, writes: Sequence[OpportunityWrite], failed: dict[int, str]
    ) -> dict[int, str]:
        """Index of write → Account Id, finding or creating each distinct account once."""
        wanted = wanted_accounts(writes, failed, _account_key)
        found: dict[Hashable, str] = {}
        refs = list(wanted.values())
        for soql in _account_lookups([r for r in refs if r.postal_code], with_postal=True) + (
            _account_lookups([r for r in refs if not r.postal_code], with_postal=False)
        ):
            for row in self._client.query(soql):
                name, postal, row_id = row.get("Name"), row.get("BillingPostalCode"), row.get("Id")
                key = (name.casefold(), postal or None) if isinstance(name, str) else None
                if key in wanted and isinstance(row_id, str):
                    found.setdefault(key, row_id)
        errors = self._create_missing(
            ACCOUNT,
            {k: (f"account {r.name!r}", _account_record(r)) for k, r in wanted.items()},
            found,
        )
        return account_ids(writes, failed, _account_key, found, errors)

    def _contacts(
        self,
        writes: Sequence[OpportunityWrite],
        accounts: Mapping[int, str],
        failed: dict[int, str],
    ) -> dict[int, list[str]]:
        """Index of write → Contact Ids, found by e-mail or created."""
        wanted = wanted_contacts(
            writes,
            failed,
            lambda contact, i: _contact_record(contact, accounts.get(i)),
            lambda w: self._log.info("contact_skipped_without_email", referral_id=w.key),
        )
        found: dict[Hashable, str] = {}
        head = "SELECT Id, Email FROM Contact WHERE Email IN "
        for chunk in _by_url_length(sorted(str(k) for k in wanted), head):
            soql = f"{head}{soql_in(chunk)} ORDER BY Id"
            for row in self._client.query(soql):
                email, row_id = row.get("Email"), row.get("Id")
                if isinstance(email, str) and isinstance(row_id, str):
                    found.setdefault(email.casefold(), row_id)
        errors = self._create_missing(CONTACT, wanted, found)
        return contact_ids(writes, failed, found, errors)

    def _create_missing(
        self,
        sobject: str,
        wanted: Mapping[Hashable, tuple[str, dict[str, object]]],
        found: dict[Hashable, str],
    ) -> dict[Hashable, str]:
        """Create each wanted record not in ``found`` (adding it there), 200 a call; returns
        key → why it failed."""
        missing = [
            (key, what, record) for key, (what, record) in wanted.items() if key not in found
        ]
        errors: dict[Hashable, str] = {}
        for chunk in _batches(missing, COLLECTION_LIMIT):
            try:
                results = self._client.create_collection([(sobject, r) for _, _, r in chunk])
            except PermanentError as exc:
                for key, what, _ in chunk:
                    errors[key] = f"{what} could not be created: {exc}"
                continue
            for (key, what, _), result in zip(chunk, results, strict=True):
                new_id = result.get("id")
                if result.get("success") is True and isinstance(new_id, str) and new_id:
                    found[key] = new_id
                    self._log.debug("crm_record_created", sobject=sobject, crm_id=new_id)
                else:
                    reason = save_errors_text(result.get("errors") or []) or "refused"
                    errors[key] = f"{what} could not be created: {reason}"
        if missing:
            created = len(missing) - len(errors)
            self._log.info("crm_records_created", sobject=sobject, count=created)
        return errors

    def _contact_roles(
        self,
        writes: Sequence[OpportunityWrite],
        outcomes: dict[int, WriteOutcome],
        contacts: Mapping[int, list[str]],
    ) -> None:
        """Create the OpportunityContactRole rows that are missing (none twice on replay)."""
        wanted = {
            i: (outcomes[i].crm_id, ids)
            for i, ids in contacts.items()
            if outcomes[i].action in ("created", "updated") and outcomes[i].crm_id
        }
        if not wanted:
            return
        existing: set[tuple[str, str]] = set()
        opportunity_ids = sorted(
            {opp for i, (opp, _) in wanted.items() if opp and outcomes[i].action != "created"}
        )
        head = f"SELECT OpportunityId, ContactId FROM {CONTACT_ROLE} WHERE OpportunityId IN "  # noqa: S608 - soql_quote literals follow
        for chunk in _by_url_length(opportunity_ids, head):
            for row in self._client.query(head + soql_in(chunk)):
                existing.add((_id15(row.get("OpportunityId")), _id15(row.get("ContactId"))))
        roles: dict[Hashable, tuple[str, dict[str, object]]] = {}
        owner: dict[Hashable, int] = {}
        for i, (opportunity_id, attached) in wanted.items():
            for contact_id in attached:
                pair = (_id15(opportunity_id), _id15(contact_id))
                if pair in existing or pair in roles:
                    continue
                record: dict[str, object] = {
                    wire.CONTACT_ROLE_OPPORTUNITY: opportunity_id,
                    wire.CONTACT_ROLE_CONTACT: contact_id,
                }
                roles[pair] = ("contact role", record)
                owner[pair] = i
        created: dict[Hashable, str] = {}
        for role, reason in self._create_missing(CONTACT_ROLE, roles, created).items():
            i = owner[role]
            if not outcomes[i].failed:
                outcomes[i] = replace(
                    outcomes[i],
                    action="failed",
                    reason=f"opportunity written, but its contact role was refused: {reason}",
                )

    # -- change feed --------------------------------------------------------------------------

    def changes_since(self, cursor: Mapping[str, Any] | None) -> Iterator[CrmChangePage]:
        start = _read_cursor(cursor)
        fields = self._describe(OPPORTUNITY)
        selected = self._selected_fields(fields)
        soql = f"SELECT {', '.join(selected)} FROM {OPPORTUNITY}"  # noqa: S608 - names from describe
        read_from = start.read_from(self._overlap)
        if read_from is not None:
            soql += f" WHERE {wire.SYSTEM_MODSTAMP} >= {soql_datetime(read_from)}"
        soql += f" ORDER BY {wire.SYSTEM_MODSTAMP}, {wire.ID}"
        feed = _Feed(start, self._overlap, polled_at=self._now())
        for page in self._client.query_pages(soql, include_deleted=True):
            changes = []
            for row in page.get("records", []):
                change = self._change(row, fields)
                if change is not None and feed.deliver(change):
                    changes.append(change)
            yield CrmChangePage(changes=tuple(changes), cursor=feed.cursor().to_json())

    def _selected_fields(self, fields: Mapping[str, wire.DescribeField]) -> list[str]:
        always = [wire.ID, self._ext, wire.SYSTEM_MODSTAMP, wire.IS_DELETED]
        chosen: list[str] = []
        for name in [*always, *self._read_fields]:
            known = fields.get(name.casefold())
            if known is None:
                if name in always and name != self._ext:
                    chosen.append(name)  # system fields exist on every object
                continue
            real = known.get("name", name)
            if real.casefold() not in {c.casefold() for c in chosen}:
                chosen.append(real)
        return chosen

    def _change(
        self, row: Mapping[str, Any], fields: Mapping[str, wire.DescribeField]
    ) -> OpportunityChange | None:
        crm_id = row.get(wire.ID)
        try:
            modified = parse_datetime(row.get(wire.SYSTEM_MODSTAMP), wire.SYSTEM_MODSTAMP)
        except MappingError:
            modified = None
        if not isinstance(crm_id, str) or modified is None:
            self._log.warning("opportunity_change_unreadable", crm_id=crm_id)
            return None
        values: dict[str, object] = {}
        for name, raw in row.items():
            if name == "attributes":
                continue
            described = fields.get(name.casefold())
            values[name] = typed_value(raw, described.get("type", "") if described else "")
        key = row.get(self._ext)
        return OpportunityChange(
            crm_id=crm_id,
            key=key if isinstance(key, str) and key else None,
            fields=values,
            modified_at=modified,
            deleted=row.get(wire.IS_DELETED) is True,
        )

    # -- metadata -----------------------------------------------------------------------------

    def check_metadata(self, required: Sequence[FieldRequirement]) -> list[MetadataProblem]:
        needs = with_external_id(required, self._ext)
        problems: list[MetadataProblem] = []
        described: dict[str, dict[str, wire.DescribeField] | None] = {}
        for need in needs:
            if need.sobject not in described:
                described[need.sobject] = self._describe_or_none(need.sobject)
                if described[need.sobject] is None:
                    problems.append(
                        MetadataProblem(
                            sobject=need.sobject,
                            field=None,
                            message="the object does not exist, or the integration user has "
                            "no access to it (check its profile or permission set)",
                        )
                    )
            fields = described[need.sobject]
            if fields is not None:
                problems.extend(field_problems(need, fields.get(need.name.casefold())))
        return problems

    def _describe_or_none(self, sobject: str) -> dict[str, wire.DescribeField] | None:
        try:
            return self._describe(sobject, fresh=True)
        except RecordRejected as exc:
            if exc.status == 404:
                return None
            raise

    def _describe(self, sobject: str, *, fresh: bool = False) -> dict[str, wire.DescribeField]:
        if fresh or sobject not in self._describes:
            answer = self._client.describe(sobject)
            self._describes[sobject] = {
                f["name"].casefold(): f
                for f in answer.get("fields", [])
                if isinstance(f, dict) and isinstance(f.get("name"), str)
            }
        return self._describes[sobject]


# -- upsert helpers -----------------------------------------------------------------------------


def save_errors_text(errors: Iterable[wire.SaveError]) -> str:
    """``STATUS: message (fields: a, b)`` for each error of a Collections result, joined."""
    parts = []
    for error in errors:
        text = f"{error.get('statusCode') or 'UNKNOWN'}: {error.get('message') or ''}".strip()
        fields = error.get("fields") or []
        if fields:
            text += f" (fields: {', '.join(fields)})"
        parts.append(text)
    return "; ".join(parts)


def _chunks(indexes: list[int], writes: Sequence[OpportunityWrite]) -> Iterator[list[int]]:
    """≤ 200 writes a chunk; a key seen already in the chunk starts the next one."""
    chunk: list[int] = []
    keys: set[str] = set()
    for i in indexes:
        key = writes[i].key.casefold()  # external ids match case-insensitively
        if len(chunk) == COLLECTION_LIMIT or key in keys:
            yield chunk
            chunk, keys = [], set()
        chunk.append(i)
        keys.add(key)
    if chunk:
        yield chunk


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _opportunity_record(
    write: OpportunityWrite, external_id_field: str, account_id: str | None
) -> dict[str, object]:
    record = {k: v for k, v in write.fields.items() if k.casefold() != external_id_field.casefold()}
    record[external_id_field] = write.key
    if account_id is not None:
        record[wire.ACCOUNT_ID] = account_id
    return record


def _account_key(ref: AccountRef) -> tuple[str, str | None]:
    return ref.name.casefold(), ref.postal_code or None


def _encoded_length(text: str) -> int:
    return len(quote_plus(text))


def _by_url_length(values: list[str], head: str) -> Iterator[list[str]]:
    """``values`` in chunks whose query (``head``, the ``IN (…)`` list, an ``ORDER BY``),
    URL-encoded, fits :data:`LOOKUP_URL_BUDGET`."""
    base = _encoded_length(head) + _AROUND
    chunk: list[str] = []
    used = base
    for value in values:
        cost = _encoded_length(soql_quote(value)) + _COMMA
        if chunk and used + cost > LOOKUP_URL_BUDGET:
            yield chunk
            chunk, used = [], base
        chunk.append(value)
        used += cost
    if chunk:
        yield chunk


_AROUND = 60  # the encoded parentheses and " ORDER BY Id" around a list, generously
_COMMA = len(quote_plus(","))
_ACCOUNT_SELECT = "SELECT Id, Name, BillingPostalCode FROM Account WHERE "


def _account_lookups(refs: list[AccountRef], *, with_postal: bool) -> list[str]:
    """Queries finding every account of ``refs`` (and maybe a few more, which the caller
    drops): ``Name IN (…) AND BillingPostalCode IN (…)``, or ``= null`` without postal codes."""
    base = _encoded_length(f"{_ACCOUNT_SELECT}Name IN  AND BillingPostalCode IN ") + 2 * _AROUND
    queries: list[str] = []
    chunk: list[AccountRef] = []
    used = base
    for ref in refs:
        cost = _encoded_length(soql_quote(ref.name)) + _COMMA
        if ref.postal_code:
            cost += _encoded_length(soql_quote(ref.postal_code)) + _COMMA
        if chunk and used + cost > LOOKUP_URL_BUDGET:
            queries.append(_account_lookup(chunk, with_postal=with_postal))
            chunk, used = [], base
        chunk.append(ref)
        used += cost
    if chunk:
        queries.append(_account_lookup(chunk, with_postal=with_postal))
    return queries


def _account_lookup(refs: list[AccountRef], *, with_postal: bool) -> str:
    names = soql_in(sorted({r.name for r in refs}))
    if with_postal:
        postals = soql_in(sorted({r.postal_code for r in refs if r.postal_code}))
        where = f"Name IN {names} AND BillingPostalCode IN {postals}"
    else:
        where = f"Name IN {names} AND BillingPostalCode = null"
    return _ACCOUNT_SELECT + where + " ORDER BY Id"


def _account_record(ref: AccountRef) -> dict[str, object]:
    return {
        name: getattr(ref, attr)
        for attr, name in wire.ACCOUNT_FIELDS.items()
        if getattr(ref, attr) is not None
    }


CONTACT_LIMITS = {"first_name": 40, "last_name": 80, "title": 128, "phone": 40}
"""Salesforce's standard Contact field lengths (FirstName, LastName, Title, Phone)."""


def _contact_record(ref: ContactRef, account_id: str | None) -> dict[str, object]:
    ref = fitted_contact(ref, CONTACT_LIMITS)
    record: dict[str, object] = {
        name: getattr(ref, attr)
        for attr, name in wire.CONTACT_FIELDS.items()
        if getattr(ref, attr) is not None
    }
    if account_id is not None:
        record[wire.ACCOUNT_ID] = account_id
    return record


def _id15(value: object) -> str:
    """Salesforce ids compare by their case-sensitive 15-character form."""
    return str(value)[:15] if value else ""


# -- change feed helpers ------------------------------------------------------------------------


def typed_value(raw: object, field_type: str) -> object:
    """A describe-typed Python value for a Salesforce JSON value (unknown types: as sent)."""
    try:
        if field_type in _DECIMAL_TYPES and isinstance(raw, int | float | Decimal | str):
            return raw if isinstance(raw, Decimal) else Decimal(str(raw))
        if field_type == "int" and isinstance(raw, int | Decimal | str):
            return int(raw)
        if field_type == "date" and isinstance(raw, str):
            return date.fromisoformat(raw[:10])
        if field_type == "datetime" and isinstance(raw, str):
            return parse_datetime(raw, "datetime") or raw
    except (ArithmeticError, ValueError, MappingError):
        return raw
    return raw


@dataclass
class _Feed:
    """One run of the change feed: the high water and the changes seen in the window."""

    start: ChangeCursor
    overlap: timedelta
    polled_at: datetime | None = None
    high_water: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.high_water = self.start.high_water
        self.seen = dict(self.start.seen)

    def deliver(self, change: OpportunityChange) -> bool:
        """Record ``change``; False if it was delivered before (a re-read of the window)."""
        stamp = format_datetime(change.modified_at)
        if self.seen.get(change.crm_id) == stamp:
            return False
        self.seen[change.crm_id] = stamp
        if self.high_water is None or change.modified_at > self.high_water:
            self.high_water = change.modified_at
        return True

    def cursor(self) -> ChangeCursor:
        if self.high_water is None:
            return ChangeCursor(None, dict(self.seen), self.polled_at)
        floor = format_datetime(self.high_water - self.overlap)
        # Stamps are one fixed-width UTC form, so they order like the times they stand for.
        seen = {cid: s for cid, s in self.seen.items() if s >= floor}
        return ChangeCursor(self.high_water, seen, self.polled_at)


def _read_cursor(cursor: Mapping[str, Any] | None) -> ChangeCursor:
    if cursor is None:
        return ChangeCursor()
    try:
        start = ChangeCursor.from_json(cursor)
    except (TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"the stored Salesforce change cursor is unreadable: {exc}") from exc
    if start.high_water is not None and start.high_water.utcoffset() is None:
        raise StateError("the stored Salesforce change cursor has a naive high_water")
    return start
