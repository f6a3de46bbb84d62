"""The inbound cycle: Partner Center → CRM, page by page (DESIGN.md "Data flow").

For each page of changed referrals: skip what the Partner-Center-owned fingerprint says is
unchanged, map the rest, upsert them in one batch, then record links, fingerprints and dead
letters together with the page's cursor (one transaction: the cursor never runs ahead of what
was written). Last, the CRM id is written back to every referral that lacks it.

A transient or rate-limit error ends the cycle where it is: nothing of the unfinished page is
recorded, so the next cycle reads it again, and the upsert by referral id makes that harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from connector.engine.cycle import Cycle
from connector.engine.report import PlannedChange, RunReport, referral_payload
from connector.errors import MappingError, PermanentError, TransientError
from connector.mapping import (
    MappedWrite,
    StageValue,
    inbound_fingerprint,
    map_referral,
    outbound_fingerprint,
    seeded_partner_values,
)
from connector.mapping.values import wire_value
from connector.model import PartnerUpdate, Referral
from connector.ports import (
    ChangeCursor,
    ChangePage,
    DeadLetterEntry,
    Direction,
    Link,
)

__all__ = ["PC_STREAM", "InboundCycle"]

PC_STREAM = "partner_center"


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
        written: list[Referral] = []
        for page in self._source.changes_since(cursor):
            written.extend(self._page(page, report))
            if self.stopping.is_set():
                report.count("stopped_early")
                break
        if not report.plan:
            self._write_back(written, report)
        return report

    # -- one page -----------------------------------------------------------------------

    def replay(self, referral_ids: list[str], report: RunReport) -> RunReport:
        """Sync these referrals now, read afresh from Partner Center, whatever the feed says
        (``dlq replay``); the feed's cursor is left where it is."""
        referrals = tuple(self._source.get(rid) for rid in referral_ids)
        cursor = self._store.get_cursor(self.connection, PC_STREAM) or ChangeCursor().to_json()
        written = self._page(ChangePage(referrals, (), ChangeCursor.from_json(cursor)), report)
        if not report.plan:
            self._write_back(written, report)
        return report

    def _page(self, page: ChangePage, report: RunReport) -> list[Referral]:
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
        for referral in page.referrals:
            link = self._store.get_link(self.connection, referral.id)
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
        written, resolved = self._upsert(pending, links, dead, report, now)
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
        return written

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
        """Partner Center closed the referral: close an open opportunity, else log a conflict."""
        if link.crm_open is False:
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
    ) -> tuple[list[Referral], list[tuple[Direction, str]]]:
        if not pending:
            return [], []
        outcomes = self._crm.upsert([p.mapped.write for p in pending])
        written: list[Referral] = []
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
            links.append(self._link(item, outcome.crm_id))
            resolved.append((Direction.INBOUND, referral.id))
            written.append(referral)
        return written, resolved

    def _link(self, item: _Pending, crm_id: str) -> Link:
        referral, link, fields = item.referral, item.link, item.mapped.write.fields
        stage_field = self._spec.lifecycle.field
        outbound: str | None
        if link is None or link.crm_id is None:
            seeded = {
                **seeded_partner_values(referral, self._spec),
                stage_field: fields[stage_field],
            }
            outbound = outbound_fingerprint(seeded, self._spec)
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

    def _write_back(self, written: list[Referral], report: RunReport) -> None:
        in_hand = {r.id.casefold(): r for r in written}
        for link in self._store.links_awaiting_crm_id(self.connection, limit=500):
            if link.crm_id is None:
                continue
            try:
                current = in_hand.get(link.referral_id.casefold()) or self._source.get(
                    link.referral_id
                )
                if current.external_reference_id != link.crm_id:
                    update = PartnerUpdate(
                        referral_id=current.id, external_reference_id=link.crm_id
                    )
                    current = self._source.update(update, current)
                    self.own_writes.record(current.id, current.updated_at)
                    report.count("crm_id_written_back")
                    self._log.info(
                        "crm_id_written_back", referral_id=current.id, crm_id=link.crm_id
                    )
            except TransientError as exc:
                report.errors.append(f"write-back of {link.referral_id} postponed: {exc}")
                self._log.warning(
                    "crm_id_write_back_postponed", referral_id=link.referral_id, error=str(exc)
                )
                return
            except PermanentError as exc:
                self._log.warning(
                    "crm_id_write_back_refused", referral_id=link.referral_id, error=str(exc)
                )
                report.errors.append(f"write-back of {link.referral_id} refused: {exc}")
                continue
            self._store.put_link(
                self.connection,
                replace(link, crm_id_written=True, etag=current.etag, updated_at=self._clock.now()),
            )
