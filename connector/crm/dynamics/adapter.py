"""The Dynamics 365 CRM adapter (``ports.CrmAdapter``): port values ⇄ Web API, errors ⇄ ours.

**Upsert.** For a batch of writes, in this order:

1. Each write is checked against the opportunity's metadata (read once, then cached): an
   unknown column, a status reason or choice label the column does not have, an ISO currency
   code the environment has no currency row for, fails that write alone, naming the column.
   A choice column takes its option's label (the value also works); the currency column takes
   the ISO code and is bound as ``transactioncurrencyid@odata.bind`` (the currencies are read
   once per adapter).
2. Accounts and contacts are looked up together, in one ``$batch`` of ``GET`` parts (each
   ``$filter`` of up to :data:`LOOKUP_CHUNK` OData string literals, a quote doubled; a part's
   further pages are followed by plain GET requests): every distinct account by (name,
   postal code), oldest first, every contact by e-mail (``emailaddress1``).
3. The missing accounts are created in one ``$batch``; then the missing contacts, with their
   company (``parentcustomerid_account``), in another. A contact without an e-mail could never
   be found again, so it is skipped and logged. The opportunity's ``parentcontactid`` is its
   first contact.
4. Opportunities: one ``$batch`` per 1000 writes, ``Prefer: odata.continue-on-error``, one
   ``PATCH opportunities(<key>='…')`` each (upsert by alternate key) with
   ``Prefer: return=representation``: 201 is ``created``, 200 ``updated``, a refused part
   ``failed`` with Dataverse's reason. A create (``write.create``) is create-only,
   ``If-None-Match: *``: a row with the key answers 412, ``exists``, and is left as it is (so a
   batch of creates is safe to repeat after a lost reply). The account is bound as
   ``customerid_account`` and ``parentaccountid``.
5. Closing: a status reason of the Won or Lost state is never PATCHed (Dataverse refuses it).
   The row is upserted without it, then ``WinOpportunity`` / ``LoseOpportunity`` closes it,
   in a second ``$batch``, only for rows that came back open. A row that is already closed is
   read-only in Dataverse: its PATCH is refused, so the same second batch reads its id and
   state, and the row is left alone (``updated``; a close into another state is logged as a
   conflict: terminal states stay as the CRM has them).

Transient, rate-limit and auth errors propagate: every step is an idempotent upsert or
find-or-create, so the next cycle simply repeats the batch.

**Change feed.** Change tracking (crm-apis §C4): the first call asks for every row with
``Prefer: odata.track-changes``, later calls follow the stored ``@odata.deltaLink``; both follow
``@odata.nextLink`` pages. The cursor is ``{"delta_link": …}``: pages before the last carry the
cursor the feed started from (a crash re-reads from there, which the engine's fingerprints make
harmless), the last page the new delta link. ``$deletedEntity`` rows are deletions. An expired
delta token (``0x80044352``) re-baselines: a full read, logged as
``change_tracking_rebaselined``. Only the key, the id, ``modifiedon`` and ``read_fields`` are
selected. Values come back typed by the metadata (see :mod:`~connector.crm.dynamics.values`);
a choice column as its label, the currency as its ISO code.

**Metadata.** :meth:`check_metadata` reads ``EntityDefinitions`` afresh and reports every
problem (see :mod:`~connector.crm.dynamics.metadata`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from structlog.typing import FilteringBoundLogger

from connector.crm.customers import (
    account_ids,
    contact_ids,
    fitted_contact,
    wanted_accounts,
    wanted_contacts,
)
from connector.crm.dynamics import wire
from connector.crm.dynamics.batch import MAX_PARTS, Part, PartResponse
from connector.crm.dynamics.client import DynamicsClient, error_for
from connector.crm.dynamics.metadata import (
    Table,
    change_tracking_problem,
    column_problems,
    load_table,
    table_missing,
    with_key,
)
from connector.crm.dynamics.values import from_json, odata_string, parse_modified, to_json
from connector.errors import (
    AuthError,
    PermanentError,
    StateError,
    TransientError,
)
from connector.ports import (
    AccountRef,
    ContactRef,
    CrmChangePage,
    FieldRequirement,
    MetadataProblem,
    OpportunityChange,
    OpportunityWrite,
    WriteOutcome,
)

KEY_COLUMN = "rs_partnercenterreferralid"
DEFAULT_READ_FIELDS: tuple[str, ...] = (
    "name",
    "statecode",
    "statuscode",
    "estimatedvalue",
    "estimatedclosedate",
    "transactioncurrencyid",
    "description",
    "actualvalue",
    "actualclosedate",
    "rs_declinereason",
)
"""Opportunity columns the change feed reads when they exist in the environment."""
DEFAULT_PAGE_SIZE = 1000
LOOKUP_CHUNK = 25
"""Literals per lookup ``$filter``: keeps the GET URL well under the 32 KB limit."""
OPEN_STATE = 0
_ESTIMATED_VALUE = "estimatedvalue"
_CREATE_ONLY = {"If-None-Match": "*"}
"""A create's condition: 412 if a row with the key exists (crm-apis §C2)."""
_STATE_SELECT = (
    f"$select={wire.OPPORTUNITY_ID},{wire.STATECODE},{wire.STATUSCODE},{_ESTIMATED_VALUE}"
)


class _Refused(Exception):
    """One write cannot be sent as it is (never leaves this module)."""


@dataclass(frozen=True, slots=True)
class _Row:
    """One opportunity write as the Web API takes it, and the state it is to be closed in."""

    body: dict[str, object]
    close: int | None = None  # a Won/Lost status reason, reached through the actions
    close_state: int | None = None


class DynamicsAdapter:
    """A Dataverse environment as the engine sees it (``ports.CrmAdapter``)."""

    max_batch = MAX_PARTS
    """Writes one :meth:`upsert` sends in one ``$batch`` (the engine batches to it)."""

    def __init__(
        self,
        client: DynamicsClient,
        *,
        key_column: str = KEY_COLUMN,
        read_fields: Sequence[str] = DEFAULT_READ_FIELDS,
        page_size: int = DEFAULT_PAGE_SIZE,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        if not 1 <= page_size <= 5000:
            raise ValueError(f"page_size must be 1..5000, got {page_size}")
        self._client = client
        self._key = key_column
        self._read_fields = tuple(read_fields)
        self._page_size = page_size
        self._now = now
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)
        self._table: Table | None = None
        self._currency_ids: dict[str, str] | None = None  # ISO code → transactioncurrencyid

    @property
    def client(self) -> DynamicsClient:
        return self._client

    # -- upsert -------------------------------------------------------------------------------

    def upsert(self, writes: Sequence[OpportunityWrite]) -> list[WriteOutcome]:
        failed: dict[int, str] = {}
        rows: dict[int, _Row] = {}
        for i, write in enumerate(writes):
            try:
                rows[i] = self._row(write)
            except _Refused as exc:
                failed[i] = str(exc)
        wanted = wanted_accounts(writes, failed, _account_key)
        emails = sorted(
            {
                c.email.casefold()
                for i, w in enumerate(writes)
                if i not in failed
                for c in w.contacts
                if c.email
            }
        )
        found_accounts, found_contacts = self._lookup(list(wanted.values()), emails)
        accounts = self._accounts(writes, failed, wanted, found_accounts)
        contacts = self._contacts(writes, accounts, failed, found_contacts)
        outcomes = {
            i: WriteOutcome(key=writes[i].key, action="failed", reason=reason)
            for i, reason in failed.items()
        }
        pending = [i for i in range(len(writes)) if i not in failed]
        for start in range(0, len(pending), MAX_PARTS):
            chunk = pending[start : start + MAX_PARTS]
            for i in chunk:
                body = rows[i].body
                if i in accounts:
                    bind = f"/{wire.ACCOUNTS}({accounts[i]})"
                    body[f"{wire.CUSTOMER_BIND}{wire.BIND}"] = bind
                    body[f"{wire.PARENT_ACCOUNT_BIND}{wire.BIND}"] = bind
                if contacts.get(i):
                    body[f"{wire.PARENT_CONTACT_BIND}{wire.BIND}"] = (
                        f"/{wire.CONTACTS}({contacts[i][0]})"
                    )
            outcomes.update(self._write_chunk([(i, writes[i], rows[i]) for i in chunk]))
        return [outcomes[i] for i in range(len(writes))]

    def _row(self, write: OpportunityWrite) -> _Row:
        table = self._opportunity()
        body: dict[str, object] = {}
        close: int | None = None
        close_state: int | None = None
        for name, value in write.fields.items():
            if name in (self._key, wire.STATECODE):
                continue  # the key is in the URL; the state follows the status reason
            column = table.columns.get(name)
            if column is None:
                raise _Refused(f"{name}: the opportunity table has no such column")
            if name == wire.STATUSCODE and value is not None:
                option = column.option(value) if isinstance(value, int) else None
                if option is None or isinstance(value, bool):
                    known = ", ".join(f"{o.value} {o.label}" for o in column.options)
                    raise _Refused(f"{name}: {value!r} is not a status reason ({known})")
                if option.state not in (None, OPEN_STATE):
                    close, close_state = option.value, option.state
                else:
                    body[name] = option.value
            elif column.type == wire.CHOICE:
                body[name] = _choice(column.name, column.options, value, column.value_of)
            elif name == wire.CURRENCY_ID:
                body[f"{name}{wire.BIND}"] = self._currency_bind(value)
            elif column.type in wire.LOOKUP_TYPES:
                raise _Refused(f"{name}: a lookup column cannot be mapped (only the currency)")
            else:
                try:
                    body[name] = to_json(value)
                except ValueError as exc:
                    raise _Refused(f"{name}: {exc}") from None
        return _Row(body, close, close_state)

    def _write_chunk(
        self, chunk: list[tuple[int, OpportunityWrite, _Row]]
    ) -> dict[int, WriteOutcome]:
        parts = [
            Part(
                "PATCH",
                f"{self._row_url(write.key)}?{_STATE_SELECT}",
                row.body,
                {"Prefer": "return=representation", **(_CREATE_ONLY if write.create else {})},
            )
            for _, write, row in chunk
        ]
        outcomes: dict[int, WriteOutcome] = {}
        closing: list[tuple[int, OpportunityWrite, _Row, str]] = []
        revenue: dict[int, object] = {}  # a won row's actual revenue: its estimated value
        closed: list[tuple[int, OpportunityWrite, _Row, str]] = []
        answers = self._client.batch("upsert", parts)  # creates are create-only: repeatable
        for (i, write, row), answer in zip(chunk, answers, strict=True):
            if write.create and answer.status == 412:
                outcomes[i] = WriteOutcome(key=write.key, action="exists")
            elif answer.status in (200, 201) and isinstance(answer.body, dict):
                crm_id = str(answer.body.get(wire.OPPORTUNITY_ID) or "")
                action = "created" if answer.status == 201 else "updated"
                outcomes[i] = WriteOutcome(key=write.key, action=action, crm_id=crm_id or None)
                state = answer.body.get(wire.STATECODE)
                if row.close is not None and crm_id:
                    if state == OPEN_STATE:
                        closing.append((i, write, row, crm_id))
                        value = answer.body.get(_ESTIMATED_VALUE)  # a Decimal, as read
                        revenue[i] = row.body.get(_ESTIMATED_VALUE, to_json(value))
                    else:
                        self._already_closed(write.key, crm_id, answer.body, row.close)
                self._log.debug(  # the engine logs it at info, once
                    "opportunity_upserted", referral_id=write.key, crm_id=crm_id, action=action
                )
            elif _maybe_closed(answer, row):
                closed.append((i, write, row, self._refusal(answer)))
            else:
                reason = self._refusal(answer)
                self._log.warning("opportunity_rejected", referral_id=write.key, reason=reason)
                outcomes[i] = WriteOutcome(key=write.key, action="failed", reason=reason)
        if closing or closed:
            outcomes.update(self._close_and_read(closing, closed, outcomes, revenue))
        return outcomes

    def _close_and_read(
        self,
        closing: list[tuple[int, OpportunityWrite, _Row, str]],
        closed: list[tuple[int, OpportunityWrite, _Row, str]],
        written: Mapping[int, WriteOutcome],
        revenue: Mapping[int, object],
    ) -> dict[int, WriteOutcome]:
        """One ``$batch``: the actions closing open rows, and a read of each row whose PATCH
        was refused as a closed row's would be (with the reason, if it turns out open)."""
        parts = [
            self._close_part(row, crm_id, revenue.get(i)) for i, _write, row, crm_id in closing
        ]
        parts += [Part("GET", f"{self._row_url(w.key)}?{_STATE_SELECT}") for _, w, _, _ in closed]
        answers = self._client.batch("close", parts)
        outcomes: dict[int, WriteOutcome] = {}
        for (i, write, row, crm_id), answer in zip(closing, answers[: len(closing)], strict=True):
            action = wire.WIN if row.close_state == 1 else wire.LOSE
            if answer.status < 300:
                self._log.info(
                    "opportunity_closed", referral_id=write.key, crm_id=crm_id, status=row.close
                )
                continue
            reason = f"opportunity written, but {action} was refused: {self._refusal(answer)}"
            self._log.warning("opportunity_close_refused", referral_id=write.key, reason=reason)
            outcomes[i] = replace(written[i], action="failed", reason=reason)
        for (i, write, row, refusal), answer in zip(closed, answers[len(closing) :], strict=True):
            body = answer.body if answer.status == 200 else None
            if isinstance(body, dict) and body.get(wire.STATECODE) == OPEN_STATE:
                self._log.warning("opportunity_rejected", referral_id=write.key, reason=refusal)
                outcomes[i] = WriteOutcome(key=write.key, action="failed", reason=refusal)
            elif isinstance(body, dict):
                crm_id = str(body.get(wire.OPPORTUNITY_ID) or "")
                self._already_closed(write.key, crm_id, body, row.close)
                outcomes[i] = WriteOutcome(
                    key=write.key,
                    action="updated",
                    crm_id=crm_id or None,
                    reason="left alone: the opportunity is closed, and closed rows are "
                    "read-only in Dataverse",
                )
            else:
                reason = self._refusal(answer)
                outcomes[i] = WriteOutcome(key=write.key, action="failed", reason=reason)
        return outcomes

    def _close_part(self, row: _Row, crm_id: str, revenue: object) -> Part:
        """The Win/Lose action; a win's actual revenue is the estimated value the row has
        (written now, or already there when only Partner Center's fields were written)."""
        won = row.close_state == 1
        close: dict[str, object] = {
            "subject": "Won (Referral Sync)" if won else "Lost (Referral Sync)",
            f"{wire.OPPORTUNITY_ID}{wire.BIND}": f"/{wire.OPPORTUNITIES}({crm_id})",
        }
        if won and revenue is not None:
            close["actualrevenue"] = revenue
        body = {"Status": row.close, "OpportunityClose": close}
        return Part("POST", self._client.url(wire.WIN if won else wire.LOSE), body)

    def _already_closed(
        self, key: str, crm_id: str, current: Mapping[str, Any], wanted: int | None
    ) -> None:
        status = current.get(wire.STATUSCODE)
        if wanted is not None and status != wanted:
            self._log.warning(
                "conflict_resolved",
                referral_id=key,
                crm_id=crm_id,
                rule="terminal_states_win",
                detail=f"the opportunity is already closed (status reason {status}); "
                f"it is left so, not moved to {wanted}",
            )
        else:
            self._log.info("opportunity_closed_left_alone", referral_id=key, crm_id=crm_id)

    def _refusal(self, answer: PartResponse) -> str:
        error = error_for(answer.status, answer.body, answer.headers)
        if isinstance(error, TransientError | AuthError):
            raise error  # the whole batch is repeated next cycle (every step is idempotent)
        return str(error)

    def _row_url(self, key: str) -> str:
        literal = quote(odata_string(key), safe="'")
        return self._client.url(f"{wire.OPPORTUNITIES}({self._key}={literal})")

    def _currency_bind(self, code: object) -> str | None:
        if code is None:
            return None
        if not isinstance(code, str):
            raise _Refused(f"{wire.CURRENCY_ID}: expected an ISO currency code, got {code!r}")
        ids = self._currencies()
        if code.upper() not in ids:
            ids = self._currencies(fresh=True)
        if code.upper() not in ids:
            raise _Refused(
                f"{wire.CURRENCY_ID}: the environment has no currency {code!r} "
                f"(it has {', '.join(sorted(ids)) or 'none'})"
            )
        return f"/{wire.CURRENCIES}({ids[code.upper()]})"

    def _currencies(self, *, fresh: bool = False) -> dict[str, str]:
        if self._currency_ids is None or fresh:
            select = f"{wire.CURRENCY_ID},{wire.ISO_CODE}"
            found: dict[str, str] = {}
            for row in self._query("currencies", wire.CURRENCIES, {"$select": select}):
                code, row_id = row.get(wire.ISO_CODE), row.get(wire.CURRENCY_ID)
                if isinstance(code, str) and isinstance(row_id, str):
                    found.setdefault(code.upper(), row_id)
            self._currency_ids = found
        return self._currency_ids

    # -- accounts and contacts ----------------------------------------------------------------

    def _lookup(
        self, refs: list[AccountRef], emails: list[str]
    ) -> tuple[dict[Hashable, str], dict[Hashable, str]]:
        """Every account of ``refs`` and contact of ``emails`` that exists: one ``$batch``."""
        queries: list[tuple[str, str, dict[str, str]]] = []
        for start in range(0, len(refs), LOOKUP_CHUNK):
            terms = [_account_term(r) for r in refs[start : start + LOOKUP_CHUNK]]
            params = {
                "$select": f"{wire.ACCOUNT_ID},name,address1_postalcode",
                "$filter": " or ".join(terms),
                "$orderby": f"{wire.CREATED_ON} asc",
            }
            queries.append(("account_lookup", wire.ACCOUNTS, params))
        for start in range(0, len(emails), LOOKUP_CHUNK):
            chunk = emails[start : start + LOOKUP_CHUNK]
            params = {
                "$select": f"{wire.CONTACT_ID},emailaddress1",
                "$filter": " or ".join(f"emailaddress1 eq {odata_string(e)}" for e in chunk),
                "$orderby": f"{wire.CREATED_ON} asc",
            }
            queries.append(("contact_lookup", wire.CONTACTS, params))
        accounts: dict[Hashable, str] = {}
        contacts: dict[Hashable, str] = {}
        for (name, _, _), rows in zip(queries, self._queries(queries), strict=True):
            for row in rows:
                if name == "account_lookup":
                    label, postal = row.get("name"), row.get("address1_postalcode")
                    if isinstance(label, str) and isinstance(row.get(wire.ACCOUNT_ID), str):
                        key = (
                            label.casefold(),
                            postal.casefold() if isinstance(postal, str) else None,
                        )
                        accounts.setdefault(key, row[wire.ACCOUNT_ID])
                else:
                    email, row_id = row.get("emailaddress1"), row.get(wire.CONTACT_ID)
                    if isinstance(email, str) and isinstance(row_id, str):
                        contacts.setdefault(email.casefold(), row_id)
        return accounts, contacts

    def _queries(
        self, queries: Sequence[tuple[str, str, Mapping[str, str]]]
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows of each query, in order: the first pages in one ``$batch`` of ``GET``
        parts (1000 a batch), any further page by its ``@odata.nextLink``."""
        prefer = {"Prefer": "odata.maxpagesize=5000"}
        for start in range(0, len(queries), MAX_PARTS):
            chunk = queries[start : start + MAX_PARTS]
            parts = [
                Part(
                    "GET",
                    f"{self._client.url(entity)}?{urlencode(params, quote_via=quote)}",
                    headers=prefer,
                )
                for _, entity, params in chunk
            ]
            for (name, _, _), answer in zip(
                chunk, self._client.batch("lookup", parts), strict=True
            ):
                if answer.status != 200 or not isinstance(answer.body, dict):
                    raise error_for(answer.status, answer.body, answer.headers) or PermanentError(
                        f"Dataverse answered {name} with no JSON object"
                    )
                rows = [r for r in answer.body.get("value") or [] if isinstance(r, dict)]
                link = answer.body.get(wire.NEXT_LINK)
                if isinstance(link, str) and link:
                    rows.extend(self._query(name, link, {}))
                yield rows

    def _accounts(
        self,
        writes: Sequence[OpportunityWrite],
        failed: dict[int, str],
        wanted: Mapping[Hashable, AccountRef],
        found: dict[Hashable, str],
    ) -> dict[int, str]:
        """Index of write → accountid, creating each distinct missing account once."""
        missing = {
            k: (f"account {r.name!r}", _account_body(r))
            for k, r in wanted.items()
            if k not in found
        }
        errors = self._create(wire.ACCOUNTS, missing, found)
        return account_ids(writes, failed, _account_key, found, errors)

    def _contacts(
        self,
        writes: Sequence[OpportunityWrite],
        accounts: Mapping[int, str],
        failed: dict[int, str],
        found: dict[Hashable, str],
    ) -> dict[int, list[str]]:
        """Index of write → contactids, found by e-mail or created with their company."""
        wanted = wanted_contacts(
            writes,
            failed,
            lambda contact, i: _contact_body(contact, accounts.get(i)),
            lambda w: self._log.info("contact_skipped_without_email", referral_id=w.key),
        )
        errors = self._create(
            wire.CONTACTS, {k: v for k, v in wanted.items() if k not in found}, found
        )
        return contact_ids(writes, failed, found, errors)

    def _create(
        self,
        entity_set: str,
        missing: Mapping[Hashable, tuple[str, dict[str, object]]],
        found: dict[Hashable, str],
    ) -> dict[Hashable, str]:
        """Create each missing row (adding its id to ``found``), 1000 a ``$batch``; returns
        key → why it could not be created."""
        items = list(missing.items())
        errors: dict[Hashable, str] = {}
        for start in range(0, len(items), MAX_PARTS):
            chunk = items[start : start + MAX_PARTS]
            parts = [Part("POST", self._client.url(entity_set), body) for _, (_, body) in chunk]
            for (key, (what, _)), answer in zip(
                chunk, self._client.batch(f"create_{entity_set}", parts), strict=True
            ):
                new_id = _entity_id(answer.headers.get("odata-entityid"))
                if answer.status < 300 and new_id:
                    found[key] = new_id
                    self._log.debug("crm_record_created", table=entity_set, crm_id=new_id)
                else:
                    errors[key] = f"{what} could not be created: {self._refusal(answer)}"
        if items:
            created = len(items) - len(errors)
            self._log.info("crm_records_created", table=entity_set, count=created)
        return errors

    # -- change feed --------------------------------------------------------------------------

    def changes_since(self, cursor: Mapping[str, Any] | None) -> Iterator[CrmChangePage]:
        start = _read_cursor(cursor)
        table = self._opportunity()
        select = self._select(table)
        baseline: tuple[str, Mapping[str, str] | None] = (wire.OPPORTUNITIES, {"$select": select})
        url, params = (start, None) if start else baseline
        following_delta = start is not None
        prefer = ("odata.track-changes", f"odata.maxpagesize={self._page_size}")
        seen: set[tuple[str, str]] = set()
        while True:
            try:
                page = self._client.get("changes", url, params=params, prefer=prefer)
            except PermanentError as exc:
                if not following_delta or (exc.code or "").lower() != wire.EXPIRED_VERSION_STAMP:
                    raise
                self._log.warning("change_tracking_rebaselined", reason=str(exc))
                url, params = baseline
                following_delta = False
                continue
            following_delta = False
            changes = []
            for row in page.get("value") or []:
                change = self._change(row, table) if isinstance(row, dict) else None
                stamp = (
                    (change.crm_id, str(row.get(wire.ETAG) or row.get(wire.MODIFIED_ON)))
                    if change
                    else None
                )
                if change is not None and stamp is not None and stamp not in seen:
                    seen.add(stamp)
                    changes.append(change)
            next_link, delta_link = page.get(wire.NEXT_LINK), page.get(wire.DELTA_LINK)
            if isinstance(next_link, str) and next_link:
                yield CrmChangePage(changes=tuple(changes), cursor={"delta_link": start})
                url, params = next_link, None
                continue
            if not isinstance(delta_link, str) or not delta_link:
                raise PermanentError("Dataverse's change tracking answer has no delta link")
            yield CrmChangePage(changes=tuple(changes), cursor={"delta_link": delta_link})
            return

    def _select(self, table: Table) -> str:
        names = [wire.OPPORTUNITY_ID, self._key, wire.MODIFIED_ON, *self._read_fields]
        chosen = [table.columns[n].value_name for n in names if n in table.columns]
        return ",".join(dict.fromkeys(chosen))

    def _change(self, row: Mapping[str, Any], table: Table) -> OpportunityChange | None:
        context = str(row.get(wire.CONTEXT) or "")
        if context.endswith(wire.DELETED_ENTITY) or row.get("reason") == "deleted":
            row_id = row.get("id")
            if not isinstance(row_id, str):
                return None
            return OpportunityChange(
                crm_id=row_id, key=None, fields={}, modified_at=self._now(), deleted=True
            )
        crm_id = row.get(wire.OPPORTUNITY_ID)
        modified = parse_modified(row.get(wire.MODIFIED_ON))
        if not isinstance(crm_id, str) or modified is None:
            self._log.warning("opportunity_change_unreadable", crm_id=crm_id)
            return None
        fields: dict[str, object] = {}
        for name, raw in row.items():
            column = table.by_value_name(name)
            if column is None or name.startswith("@"):
                continue
            fields[column.name] = self._read_value(column.name, raw, table)
        key = row.get(self._key)
        return OpportunityChange(
            crm_id=crm_id,
            key=key if isinstance(key, str) and key else None,
            fields=fields,
            modified_at=modified,
        )

    def _read_value(self, name: str, raw: object, table: Table) -> object:
        column = table.columns[name]
        if raw is None:
            return None
        if name == wire.CURRENCY_ID:
            codes = {v: k for k, v in self._currencies().items()}
            if raw not in codes:
                codes = {v: k for k, v in self._currencies(fresh=True).items()}
            return codes.get(str(raw), raw)
        if column.type == wire.CHOICE:
            option = column.option(raw)
            return option.label if option is not None else raw
        return from_json(raw, column)

    # -- metadata -----------------------------------------------------------------------------

    def check_metadata(self, required: Sequence[FieldRequirement]) -> list[MetadataProblem]:
        problems: list[MetadataProblem] = []
        tables: dict[str, Table | None] = {}
        for need in with_key(required, self._key):
            if need.sobject not in tables:
                table = load_table(self._client, need.sobject)
                tables[need.sobject] = table
                if table is None:
                    problems.append(table_missing(need.sobject))
                elif need.sobject == wire.OPPORTUNITY:
                    self._table = table
                    problems.extend(change_tracking_problem(table))
            found = tables[need.sobject]
            if found is not None:
                problems.extend(column_problems(need, found))
        return problems

    def _opportunity(self) -> Table:
        if self._table is None:
            table = load_table(self._client, wire.OPPORTUNITY)
            if table is None:
                raise PermanentError(
                    "the environment has no opportunity table the adapter can read"
                )
            self._table = table
        return self._table

    def _query(
        self, name: str, entity_set: str, params: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        """Every row of a query, following ``@odata.nextLink``."""
        url: str = entity_set
        query: Mapping[str, str] | None = params
        while True:
            page = self._client.get(name, url, params=query, prefer=("odata.maxpagesize=5000",))
            yield from (r for r in page.get("value") or [] if isinstance(r, dict))
            link = page.get(wire.NEXT_LINK)
            if not isinstance(link, str) or not link:
                return
            url, query = link, None


# -- helpers ------------------------------------------------------------------------------------


def _choice(
    name: str, options: Sequence[Any], value: object, value_of: Callable[[str], int | None]
) -> object:
    """A choice column's value from its label (or the value itself)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if any(o.value == value for o in options):
            return value
    elif isinstance(value, str):
        found = value_of(value)
        if found is not None:
            return found
    labels = ", ".join(repr(o.label) for o in options)
    raise _Refused(f"{name}: {value!r} is not one of the column's choices ({labels})")


def _maybe_closed(answer: PartResponse, row: _Row) -> bool:
    """Refused as a closed opportunity's PATCH is: read-only, or (an open status reason sent)
    not a status of its closed state."""
    code = _code(answer)
    return code == wire.READ_ONLY or (code == wire.INVALID_ARGUMENT and wire.STATUSCODE in row.body)


def _code(answer: PartResponse) -> str:
    body = answer.body
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code.lower() if isinstance(code, str) else ""


def _entity_id(url: str | None) -> str | None:
    """The guid of ``…/accounts(<guid>)`` (an ``OData-EntityId`` header)."""
    if not url or not url.endswith(")") or "(" not in url:
        return None
    return url[url.rindex("(") + 1 : -1] or None


def _account_key(ref: AccountRef) -> tuple[str, str | None]:
    return ref.name.casefold(), ref.postal_code.casefold() if ref.postal_code else None


def _account_term(ref: AccountRef) -> str:
    postal = odata_string(ref.postal_code) if ref.postal_code else "null"
    return f"(name eq {odata_string(ref.name)} and address1_postalcode eq {postal})"


def _account_body(ref: AccountRef) -> dict[str, object]:
    return {
        column: getattr(ref, attr)
        for attr, column in wire.ACCOUNT_FIELDS.items()
        if getattr(ref, attr) is not None
    }


CONTACT_LIMITS = {"first_name": 50, "last_name": 50, "title": 100, "phone": 50}
"""Dataverse's contact column lengths (firstname, lastname, jobtitle, telephone1)."""


def _contact_body(ref: ContactRef, account_id: str | None) -> dict[str, object]:
    ref = fitted_contact(ref, CONTACT_LIMITS)
    body: dict[str, object] = {
        column: getattr(ref, attr)
        for attr, column in wire.CONTACT_FIELDS.items()
        if getattr(ref, attr) is not None
    }
    if account_id is not None:
        body[f"{wire.CONTACT_ACCOUNT_BIND}{wire.BIND}"] = f"/{wire.ACCOUNTS}({account_id})"
    return body


def _read_cursor(cursor: Mapping[str, Any] | None) -> str | None:
    if cursor is None:
        return None
    link = cursor.get("delta_link") if isinstance(cursor, Mapping) else None
    if link is not None and (not isinstance(link, str) or not link.startswith("https://")):
        raise StateError("the stored Dataverse change cursor has no usable delta_link")
    return link
