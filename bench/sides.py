"""What the benchmark does to each side directly, in the simulators (no HTTP): Microsoft editing
referrals, a salesperson working opportunities, and reading back what the engine wrote."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bench.world import Crm
from sandbox.app import Sandbox
from sandbox.dynamics import ALTERNATE_KEY_COLUMN
from sandbox.salesforce import EXTERNAL_ID_FIELD

__all__ = ["CrmSide", "Opportunity", "PartnerCenterSide"]

SF_NOTES = "Microsoft_Notes__c"
DV_NOTES = "rs_microsoftnotes"
DV_ON_HOLD = 2  # not accepted yet (mappings/dynamics.yaml)
SF_NOT_ACCEPTED = "Prospecting"


@dataclass(frozen=True, slots=True)
class Opportunity:
    referral_id: str
    crm_id: str
    accepted: bool


class PartnerCenterSide:
    """Microsoft's side: edits (a new eTag and ``updatedDateTime``) and what a referral holds."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._store = sandbox.partner_center.store

    def open_referral_ids(self) -> list[str]:
        return sorted(r["id"] for r in self._store.snapshot() if r.get("status") != "Closed")

    def edit_notes(self, referral_id: str, text: str) -> None:
        self._store.edit(referral_id, inviteContext={"notes": text})

    def deal_value(self, referral_id: str) -> float | None:
        raw = self._store.get_raw(referral_id) or {}
        value = (raw.get("details") or {}).get("dealValue")
        return float(value) if isinstance(value, int | float) else None

    def linked(self) -> int:
        """How many referrals hold a CRM id (``externalReferenceId``)."""
        return sum(1 for r in self._store.snapshot() if r.get("externalReferenceId"))

    def open_count(self) -> int:
        return sum(1 for r in self._store.snapshot() if r.get("status") != "Closed")


class CrmSide:
    """The salesperson's side, in Salesforce or Dataverse."""

    def __init__(self, sandbox: Sandbox, crm: Crm) -> None:
        self.crm = crm
        self._sandbox = sandbox

    def open_opportunities(self) -> list[Opportunity]:
        """Every open opportunity that came from a referral, oldest first."""
        found: list[Opportunity] = []
        if self.crm == "salesforce":
            for record in self._sandbox.salesforce.store.records("Opportunity"):
                key = record.get(EXTERNAL_ID_FIELD)
                if key and not record.get("IsClosed"):
                    accepted = record.get("StageName") != SF_NOT_ACCEPTED
                    found.append(Opportunity(str(key), str(record["Id"]), accepted))
        else:
            for row in self._sandbox.dataverse.store.rows("opportunity"):
                key = row.get(ALTERNATE_KEY_COLUMN)
                if key and row.get("statecode") == 0:
                    accepted = row.get("statuscode") != DV_ON_HOLD
                    found.append(Opportunity(str(key), str(row["opportunityid"]), accepted))
        return found

    def count(self) -> int:
        if self.crm == "salesforce":
            return len(self._sandbox.salesforce.store.records("Opportunity"))
        return len(self._sandbox.dataverse.store.rows("opportunity"))

    def notes(self, crm_id: str) -> object:
        return self._record(crm_id).get(SF_NOTES if self.crm == "salesforce" else DV_NOTES)

    def accept(self, crm_id: str, value: float) -> None:
        close = date.today() + timedelta(days=60)  # noqa: DTZ011 - a date in the sandbox's future
        if self.crm == "salesforce":
            self._sandbox.salesforce.salesperson.accept(crm_id, value, close)
        else:
            self._sandbox.dataverse.salesperson.accept(crm_id, value, close)

    def edit_value(self, crm_id: str, value: float) -> None:
        if self.crm == "salesforce":
            self._sandbox.salesforce.salesperson.edit(crm_id, amount=value)
        else:
            self._sandbox.dataverse.salesperson.edit(crm_id, value=value)

    def _record(self, crm_id: str) -> dict[str, Any]:
        if self.crm == "salesforce":
            return self._sandbox.salesforce.store.get("Opportunity", crm_id) or {}
        return self._sandbox.dataverse.store.get("opportunity", crm_id) or {}
