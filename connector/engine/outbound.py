"""The outbound cycle: CRM → Partner Center, page by page (DESIGN.md "Data flow").

For each page of changed opportunities: read each as the partner's view (CRM-owned fields,
stage, reasons) and skip it when its fingerprint is the one recorded, which is how our own
writes read back are recognised (invariant 3); otherwise read the referral as Partner Center
has it now, decide the updates by the mapping's lifecycle table, and send them, each guarded by
the eTag (the source re-reads and re-applies once on 412). Links and dead letters are recorded
with the page's cursor in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from connector.engine.cycle import Cycle
from connector.engine.report import PlannedChange, RunReport
from connector.errors import MappingError, PermanentError
from connector.mapping import (
    CrmView,
    MappingSpec,
    created_partner_values,
    decide,
    outbound_fingerprint,
    read_change,
)
from connector.mapping.values import retype, wire_value
from connector.model import Referral
from connector.ports import (
    CrmChangePage,
    DeadLetterEntry,
    Direction,
    Link,
    OpportunityChange,
)

__all__ = ["CRM_STREAM", "OutboundCycle"]

CRM_STREAM = "crm"


class OutboundCycle(Cycle):
    direction = Direction.OUTBOUND

    def run(self, report: RunReport) -> RunReport:
        """One cycle, filling ``report`` as it goes: a cycle cut short says what it did."""
        cursor = self._store.get_cursor(self.connection, CRM_STREAM)
        for page in self._crm.changes_since(cursor):
            self._page(page, report)
            if self.stopping.is_set():
                report.count("stopped_early")
                break
        return report

    def replay(self, changes: list[OpportunityChange], report: RunReport) -> RunReport:
        """Decide and send these changes again (``dlq replay``: the change as it was dead-
        lettered, against the referral as Partner Center has it now); the cursor stays."""
        cursor = self._store.get_cursor(self.connection, CRM_STREAM) or {}
        self._page(CrmChangePage(tuple(changes), cursor), report)
        return report

    def _page(self, page: CrmChangePage, report: RunReport) -> None:
        now = self._clock.now()
        links: list[Link] = []
        dead: list[DeadLetterEntry] = []
        resolved: list[tuple[Direction, str]] = []
        report.count("received", len(page.changes))
        for change in page.changes:
            try:
                link = self._one(change, report, now)
            except (MappingError, PermanentError) as exc:
                dead.append(self._dead(change, str(exc), now))
                found = self._found(change, now) if isinstance(exc, MappingError) else None
                if found is not None:
                    links.append(found)
                continue
            if link is not None:
                links.append(link)
            if change.key and not change.deleted:
                # Handled (sent, or already in Partner Center): an open dead letter of it is
                # resolved, also when a stop after the send left the change "unchanged" here.
                resolved.append((Direction.OUTBOUND, change.crm_id))
        if report.plan:
            return
        for entry in dead:
            self._log.warning(
                "record_dead_lettered", record_id=entry.record_id, reason=entry.reason
            )
        report.count("dead_lettered", len(dead))
        self._store.record_page(
            self.connection,
            CRM_STREAM,
            links=links,
            dead_letters=dead,
            resolved=resolved,
            cursor=page.cursor,
        )

    def _one(self, change: OpportunityChange, report: RunReport, now: datetime) -> Link | None:
        """Handle one changed opportunity; the link to record, or None if there is none."""
        if change.deleted or not change.key:
            report.count("deleted" if change.deleted else "not_a_referral")
            return None
        link = self._store.get_link(self.connection, change.key)
        view = read_change(change, self._spec)
        crm_open = not self._spec.lifecycle.is_closed(view.stage)
        if link is not None and link.outbound_fingerprint == view.fingerprint:
            report.count("unchanged")  # our own write read back, or nothing the partner owns
            if link.crm_open is crm_open and link.crm_id == change.crm_id:
                return None
            return replace(link, crm_id=change.crm_id, crm_open=crm_open, updated_at=now)
        current = self._source.get(change.key)
        if (link is None or link.crm_id is None) and view.fingerprint == outbound_fingerprint(
            created_partner_values(current, self._spec), self._spec
        ):
            # Our own create, as we made it, whose record was lost (a stop between the CRM's
            # reply and the state's commit): not the partner's edit. Record it; send nothing.
            report.count("unchanged")
            self._log.info("own_create_recorded", referral_id=current.id, crm_id=change.crm_id)
            return self._link(link, view, current, crm_open, now)
        decision = decide(view, current, self._spec)
        if decision.conflict is not None:
            report.count("conflicts")
            self._log.info(
                "conflict_resolved",
                referral_id=current.id,
                crm_id=change.crm_id,
                rule="terminal_states_win",
                detail=decision.conflict,
            )
        if report.plan:
            self._plan(view, current, decision.updates, report)
            return None
        for update in decision.updates:
            current = self._source.update(update, current)
            self.own_writes.record(current.id, current.updated_at)
            report.count(str(update.action))
            self._log.info(
                "referral_updated_from_crm",
                referral_id=current.id,
                crm_id=change.crm_id,
                action=str(update.action),
                lifecycle=str(current.lifecycle),
            )
        recorded = self._link(link, view, current, crm_open, now)
        if decision.updates:
            # Partner Center has our write now: record at once what the CRM said (closed or open,
            # its fingerprint), not only at the end of the page. If a later record of this page
            # fails the cycle, the inbound half that runs next must not take our own Closed/Won
            # for Microsoft closing the referral and "close" an opportunity already won.
            self._store.put_link(self.connection, recorded)
        return recorded

    def _found(self, change: OpportunityChange, now: datetime) -> Link | None:
        """A change the decision refused (a dead letter) of a referral's opportunity we hold no
        CRM id for, and no other referral does (our create landed, its reply was lost): the id
        alone, so that the inbound half updates the opportunity instead of writing a create's
        values over the salesperson's. No fingerprint: the change is still to send once fixed,
        and its dead letter stays open."""
        if change.deleted or not change.key:
            return None
        link = self._store.get_link(self.connection, change.key)
        if link is not None and link.crm_id is not None:
            return None
        if self._store.get_link_by_crm_id(self.connection, change.crm_id) is not None:
            return None  # the opportunity is another referral's (its key edited): not ours
        try:
            crm_open: bool | None = not self._spec.lifecycle.is_closed(
                read_change(change, self._spec).stage
            )
        except MappingError:
            crm_open = None
        base = link or Link(referral_id=change.key)
        return replace(base, crm_id=change.crm_id, crm_open=crm_open, updated_at=now)

    def _link(
        self, link: Link | None, view: CrmView, current: Referral, crm_open: bool, now: datetime
    ) -> Link:
        base = link or Link(referral_id=current.id, engagement_id=current.engagement_id)
        return replace(
            base,
            crm_id=view.crm_id,
            outbound_fingerprint=view.fingerprint,
            etag=current.etag,
            crm_id_written=current.external_reference_id == view.crm_id
            or current.lifecycle.is_terminal,
            crm_open=crm_open,
            updated_at=now,
        )

    def _plan(
        self, view: CrmView, current: Referral, updates: tuple[Any, ...], report: RunReport
    ) -> None:
        for update in updates:
            values = {
                k: wire_value(v)
                for k, v in (
                    ("deal_value", update.deal_value),
                    ("currency", update.currency),
                    ("close_date", update.close_date),
                    ("partner_notes", update.partner_notes),
                    ("external_reference_id", update.external_reference_id),
                    ("reason", update.reason),
                )
                if v is not None
            }
            report.planned.append(
                PlannedChange(record_id=current.id, action=str(update.action), values=values)
            )
            report.count(f"would_{update.action}")

    def _dead(self, change: OpportunityChange, reason: str, now: datetime) -> DeadLetterEntry:
        payload = change_payload(change)
        return DeadLetterEntry(
            direction=Direction.OUTBOUND,
            record_id=change.crm_id,
            reason=reason,
            payload=payload,
            seen_at=now,
        )


def change_payload(change: OpportunityChange) -> dict[str, Any]:
    """A CRM change as JSON-able data (a dead letter's payload); :func:`change_from_payload`
    reads it back for a replay."""
    return {
        "crm_id": change.crm_id,
        "key": change.key,
        "modified_at": change.modified_at.isoformat(),
        "fields": wire_value(dict(change.fields)),
    }


def change_from_payload(payload: Mapping[str, Any], spec: MappingSpec) -> OpportunityChange:
    """The change a dead letter holds, its values typed again by the mapping's transforms."""
    by_name = {f.crm: f for f in spec.fields}
    fields: dict[str, object] = {}
    for name, raw in dict(payload.get("fields") or {}).items():
        field_map = by_name.get(name)
        fields[name] = raw if field_map is None or raw is None else retype(field_map, raw)
    return OpportunityChange(
        crm_id=str(payload["crm_id"]),
        key=None if payload.get("key") is None else str(payload["key"]),
        fields=fields,
        modified_at=datetime.fromisoformat(str(payload["modified_at"])),
    )
