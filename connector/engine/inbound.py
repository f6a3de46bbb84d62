"""The inbound cycle: Partner Center → CRM, page by page (DESIGN.md "Data flow").

Pages of changed referrals are gathered into batches of the CRM's batch size (its
``max_batch``: 200 for Salesforce's collections, 1000 for a Dataverse ``$batch``; one page a
batch for an adapter that names none). For each batch: skip what the Partner-Center-owned
fingerprint says is unchanged, map the rest, upsert them in one batch, then record links,
fingerprints and dead letters together with the batch's cursor (one transaction: the cursor
never runs ahead of what was written). Then the CRM id is written back to the batch's referrals
that lack it (several PATCHes at once: :mod:`connector.engine.writeback`), and those links are
recorded in one more transaction. Nothing is kept from one batch to the next, so memory does
not grow with the backfill. Last, any older link still waiting for its write-back is retried.

A transient or rate-limit error ends the cycle where it is: nothing of the unfinished page is
recorded, so the next cycle reads it again, and the upsert by referral id makes that harmless.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from connector.engine.cycle import Cycle, crm_max_batch
from connector.engine.report import PlannedChange, RunReport, referral_payload
from connector.engine.writeback import (
    PendingWriteBacks,
    WriteBackResult,
    source_write_concurrency,
    write_back,
)
from connector.errors import MappingError
from connector.mapping import (
    MappedWrite,
    StageValue,
    created_partner_values,
    inbound_fingerprint,
    map_referral,
    outbound_fingerprint,
)
from connector.mapping.values import wire_value
from connector.model import Referral, Substatus
from connector.ports import (
    ChangeCursor,
    ChangePage,
    DeadLetterEntry,
    Direction,
    Link,
    WriteOutcome,
)

__all__ = ["PC_STREAM", "InboundCycle"]

PC_STREAM = "partner_center"
WAITING_LIMIT = 500
"""Older links waiting for their write-back that one cycle retries, at most."""


@dataclass(frozen=True, slots=True)
class _Pending:
    referral: Referral
    link: Link | None
    mapped: MappedWrite
    fingerprint: str


class InboundCycle(Cycle):
    direction = Direction.INBOUND

    def run(self, report: RunReport) -> RunReport:
        """One cycle, filling ``report`` as it goes: a cycle cut short says what it did."""
        raw = self._store.get_cursor(self.connection, PC_STREAM)
        cursor = ChangeCursor() if raw is None else ChangeCursor.from_json(raw)
        batches = _Batcher(crm_max_batch(self._crm))
        pending = PendingWriteBacks()
        attempted: set[str] = set()
        last: ChangePage | None = None
        for page in self._source.changes_since(cursor):
            for batch in batches.add(page):
                attempted |= self._batch(batch, pending, report)
                last = batch
            if self.stopping.is_set():
                report.count("stopped_early")
                break
        for batch in batches.drain():
            attempted |= self._batch(batch, pending, report)
            last = batch
        if not report.plan and last is not None:
            attempted |= self._write_back(pending.drain(), last, pending, report)
        if not report.plan and not pending.postponed:
            self._write_back_waiting(attempted, report)
        return report

    # -- one batch ----------------------------------------------------------------------

    def replay(self, referral_ids: list[str], report: RunReport) -> RunReport:
        """Sync these referrals now, read afresh from Partner Center, whatever the feed says
        (``dlq replay``); the feed's cursor is left where it is."""
        referrals = tuple(self._source.get(rid) for rid in referral_ids)
        cursor = self._store.get_cursor(self.connection, PC_STREAM) or ChangeCursor().to_json()
        page = ChangePage(referrals, (), ChangeCursor.from_json(cursor))
        pending = PendingWriteBacks()
        attempted = self._batch(page, pending, report)
        if not report.plan:
            attempted |= self._write_back(pending.drain(), page, pending, report)
            if not pending.postponed:
                self._write_back_waiting(attempted, report)
        return report

    def _batch(self, page: ChangePage, pending: PendingWriteBacks, report: RunReport) -> set[str]:
        """Upsert and record one batch, then write back the CRM ids the feed has moved past
        (``pending`` holds the rest); the referral ids (case-folded) whose write-back was
        tried and did not succeed."""
        waiting = self._page(page, report)
        if report.plan:
            return set()
        return self._write_back(pending.add(waiting, page.referrals), page, pending, report)

    def _write_back(
        self,
        items: list[tuple[Link, Referral | None]],
        page: ChangePage,
        pending: PendingWriteBacks,
        report: RunReport,
    ) -> set[str]:
        """Send these write-backs, several at once, and record their links in one go; after a
        transient fault, none (their links say so: the next cycle sends them)."""
        if not items or pending.postponed:
            return set()
        result = self._send_write_backs(items, report)
        pending.postponed = result.postponed
        if result.links:
            self._store.record_page(
                self.connection,
                PC_STREAM,
                links=result.links,
                dead_letters=(),
                cursor=page.cursor.to_json(),
            )
        done = {link.referral_id.casefold() for link in result.links}
        return {link.referral_id.casefold() for link, _ in items} - done

    def _page(self, page: ChangePage, report: RunReport) -> list[tuple[Link, Referral]]:
        """Upsert one batch and record it; the links (with their referral) that still need
        the CRM id written back."""
        now = self._clock.now()
        report.count("received", len(page.referrals) + len(page.rejected))
        dead = [
            DeadLetterEntry(
                direction=Direction.INBOUND,
                record_id=r.record_id,
                reason=str(r.error),
                payload=r.payload,
                seen_at=now,
            )
            for r in page.rejected
        ]
        links: list[Link] = []
        pending: list[_Pending] = []
        known = self._store.get_links(self.connection, [r.id for r in page.referrals])
        for referral in page.referrals:
            link = known.get(referral.id.lower())
            try:
                item = self._prepare(referral, link)
            except MappingError as exc:
                dead.append(self._dead(referral, str(exc), now))
                continue
            if item is None:
                report.count("unchanged")
                if link is not None and link.etag != referral.etag:
                    links.append(replace(link, etag=referral.etag, updated_at=now))
                continue
            pending.append(item)
        if report.plan:
            self._plan(pending, report)
            return []
        waiting, resolved = self._upsert(pending, links, dead, report, now)
        for entry in dead:
            self._log.warning(
                "record_dead_lettered", record_id=entry.record_id, reason=entry.reason
            )
        report.count("dead_lettered", len(dead))
        self._store.record_page(
            self.connection,
            PC_STREAM,
            links=links,
            dead_letters=dead,
            resolved=resolved,
            cursor=page.cursor.to_json(),
        )
        return waiting

    def _prepare(self, referral: Referral, link: Link | None) -> _Pending | None:
        fingerprint = inbound_fingerprint(referral, self._spec)
        create = link is None or link.crm_id is None
        if not create and link is not None and link.inbound_fingerprint == fingerprint:
            return None
        stage = None
        if not create and link is not None and referral.lifecycle.is_terminal:
            stage = self._closing_stage(referral, link)
        mapped = map_referral(referral, self._spec, create=create, stage=stage)
        for warning in mapped.warnings:
            self._log.warning("value_truncated", referral_id=referral.id, detail=warning)
        return _Pending(referral=referral, link=link, mapped=mapped, fingerprint=fingerprint)

    def _closing_stage(self, referral: Referral, link: Link) -> StageValue | None:
        """Partner Center closed the referral: close an open opportunity, else log a conflict.

        Won only ever comes from the partner, so it is never answered with Closed Lost: a Won
        referral closes an opportunity known to be open as won (one shared already Won whose
        create landed without its close: Dataverse closes in a second call), and is otherwise
        taken for the CRM's own win."""
        won = referral.lifecycle.substatus is Substatus.WON
        if won and link.crm_open is True:
            return self._spec.lifecycle.stage_on_create(referral.lifecycle)
        if link.crm_open is False or won:
            self._log.info(
                "conflict_resolved",
                referral_id=referral.id,
                crm_id=link.crm_id,
                rule="terminal_states_win",
                detail=f"Partner Center has {referral.lifecycle}; the opportunity is already "
                "closed in the CRM, so only its Partner Center status is updated",
            )
            return None
        return self._spec.lifecycle.closed_by_partner_center

    def _upsert(
        self,
        pending: list[_Pending],
        links: list[Link],
        dead: list[DeadLetterEntry],
        report: RunReport,
        now: datetime,
    ) -> tuple[list[tuple[Link, Referral]], list[tuple[Direction, str]]]:
        if not pending:
            return [], []
        outcomes = self._crm.upsert([p.mapped.write for p in pending])
        pending, outcomes = self._update_existing(pending, outcomes, report)
        waiting: list[tuple[Link, Referral]] = []
        resolved: list[tuple[Direction, str]] = []
        for item, outcome in zip(pending, outcomes, strict=True):
            referral = item.referral
            if outcome.failed or outcome.crm_id is None:
                dead.append(self._dead(referral, outcome.reason or "refused by the CRM", now))
                continue
            report.count(outcome.action)
            self._log.info(
                "opportunity_upserted",
                referral_id=referral.id,
                crm_id=outcome.crm_id,
                action=outcome.action,
            )
            link = self._link(item, outcome.crm_id)
            links.append(link)
            resolved.append((Direction.INBOUND, referral.id))
            if not link.crm_id_written:
                waiting.append((link, referral))
        return waiting, resolved

    def _update_existing(
        self, pending: list[_Pending], outcomes: list[WriteOutcome], report: RunReport
    ) -> tuple[list[_Pending], list[WriteOutcome]]:
        """Creates that found their opportunity there already (a create landed whose reply was
        lost, or whose link a crash kept from the state): written again, in one more call, as
        updates of Partner Center's fields, so the salesperson's stage and amount stay. A
        closed referral closes it, taken for open: Dataverse leaves a row closed meanwhile as
        it is; Salesforce would take Partner Center's closing stage over the salesperson's."""
        found = [n for n, outcome in enumerate(outcomes) if outcome.action == "exists"]
        if not found:
            return pending, outcomes
        pending, outcomes = list(pending), list(outcomes)
        for n in found:
            referral = pending[n].referral
            self._log.info(
                "opportunity_found_existing", referral_id=referral.id, crm_id=outcomes[n].crm_id
            )
            stage = None
            if referral.lifecycle.is_terminal:
                stage = self._closing_stage(referral, Link(referral_id=referral.id, crm_open=True))
            mapped = map_referral(referral, self._spec, create=False, stage=stage)
            pending[n] = replace(pending[n], mapped=mapped)
        report.count("found_existing", len(found))
        again = self._crm.upsert([pending[n].mapped.write for n in found])
        for n, outcome in zip(found, again, strict=True):
            outcomes[n] = outcome
        return pending, outcomes

    def _link(self, item: _Pending, crm_id: str) -> Link:
        referral, link, fields = item.referral, item.link, item.mapped.write.fields
        stage_field = self._spec.lifecycle.field
        outbound: str | None
        if link is None or link.crm_id is None:
            created = created_partner_values(referral, self._spec)
            outbound = outbound_fingerprint(created, self._spec)
        else:
            outbound = link.outbound_fingerprint
        crm_open = link.crm_open if link else None
        if stage_field in fields:
            crm_open = not self._spec.lifecycle.is_closed(fields[stage_field])
        return Link(
            referral_id=referral.id,
            crm_id=crm_id,
            engagement_id=referral.engagement_id,
            inbound_fingerprint=item.fingerprint,
            outbound_fingerprint=outbound,
            etag=referral.etag,
            # A closed referral takes no write: there is nothing to write back to it.
            crm_id_written=referral.external_reference_id == crm_id
            or referral.lifecycle.is_terminal,
            crm_open=crm_open,
            updated_at=self._clock.now(),
        )

    def _plan(self, pending: list[_Pending], report: RunReport) -> None:
        for item in pending:
            action = "create" if item.link is None or item.link.crm_id is None else "update"
            values = {k: wire_value(v) for k, v in item.mapped.write.fields.items()}
            report.planned.append(
                PlannedChange(record_id=item.referral.id, action=action, values=values)
            )
            report.count(f"would_{action}")

    def _dead(self, referral: Referral, reason: str, now: datetime) -> DeadLetterEntry:
        return DeadLetterEntry(
            direction=Direction.INBOUND,
            record_id=referral.id,
            reason=reason,
            payload=referral_payload(referral),
            seen_at=now,
        )

    # -- the CRM id back to Partner Center ---------------------------------------------

    def _write_back_waiting(self, attempted: set[str], report: RunReport) -> None:
        """Links still waiting for their CRM id from an earlier cycle (a write-back postponed
        or refused then), oldest first; not those this cycle tried already."""
        waiting = [
            (link, None)
            for link in self._store.links_awaiting_crm_id(self.connection, limit=WAITING_LIMIT)
            if link.crm_id is not None and link.referral_id.casefold() not in attempted
        ]
        if not waiting:
            return
        result = self._send_write_backs(waiting, report)
        for link in result.links:
            self._store.put_link(self.connection, link)

    def _send_write_backs(
        self, items: Sequence[tuple[Link, Referral | None]], report: RunReport
    ) -> WriteBackResult:
        """Write these CRM ids back, several at once; counted and their errors reported."""
        result = write_back(
            items,
            source=self._source,
            own_writes=self.own_writes,
            log=self._log,
            now=self._clock.now,
            concurrency=source_write_concurrency(self._source),
        )
        report.count("crm_id_written_back", result.written)
        report.errors.extend(result.errors or ())
        return result


class _Batcher:
    """Pages gathered into batches of up to ``size`` referrals (0: each page is a batch).

    A batch is one page: its referrals (a referral met twice keeps its later version only),
    its rejects, and the cursor of its last page, which covers every page before it.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._pages: list[ChangePage] = []
        self._count = 0

    def add(self, page: ChangePage) -> Iterator[ChangePage]:
        if self._pages and self._count + len(page.referrals) > self._size:
            yield from self.drain()
        self._pages.append(page)
        self._count += len(page.referrals)
        if self._count >= self._size:
            yield from self.drain()

    def drain(self) -> Iterator[ChangePage]:
        if not self._pages:
            return
        pages, self._pages, self._count = self._pages, [], 0
        if len(pages) == 1:
            yield pages[0]
            return
        latest: dict[str, Referral] = {}
        for page in pages:
            for referral in page.referrals:
                key = referral.id.casefold()
                latest.pop(key, None)  # a later version goes to the end, in feed order
                latest[key] = referral
        rejected = tuple(r for page in pages for r in page.rejected)
        yield ChangePage(tuple(latest.values()), rejected, pages[-1].cursor)
