"""A whole sync world in memory: Partner Center, a CRM, the state store and one connection.

The engine tests and the property test drive it: seed referrals, let Microsoft or a salesperson
change things, run cycles, restart the engine from its state, and look at both sides.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from builders import referral
from fakes import FakeCrm, FakePartnerCenter, TickingClock

from connector.engine import ConnectionSync, CycleResult
from connector.mapping_file import default_mapping_path, load_mapping_file
from connector.model import Referral
from connector.state import MemoryStateStore

SF_MAPPING = load_mapping_file(default_mapping_path("salesforce"))
CONNECTION = "contoso"


def referrals(n: int, **changes: Any) -> list[Referral]:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    return [
        referral(
            **{
                "id": f"00000000-0000-4000-8000-{i:012d}",
                "name": f"Deal {i}",
                "created_at": start + timedelta(minutes=i),
                "updated_at": start + timedelta(minutes=i),
                **changes,
            }
        )
        for i in range(n)
    ]


class World:
    def __init__(self, *, page_size: int = 100, crm_page_size: int = 100) -> None:
        self.clock = TickingClock(datetime(2026, 5, 10, 8, 0, tzinfo=UTC))
        self.pc = FakePartnerCenter(clock=self.clock, page_size=page_size)
        self.crm = FakeCrm(clock=self.clock, page_size=crm_page_size)
        self.store = MemoryStateStore(clock=self.clock)
        self.sync = self.engine()

    def engine(self) -> ConnectionSync:
        """A fresh engine on the same state: what a restarted daemon is."""
        return ConnectionSync(
            CONNECTION,
            source=self.pc,
            crm=self.crm,
            store=self.store,
            spec=SF_MAPPING,
            clock=self.clock,
        )

    def restart(self) -> None:
        self.sync = self.engine()

    def cycle(self, *, plan: bool = False) -> CycleResult:
        return self.sync.run_cycle(plan=plan)

    def settle(self, limit: int = 6) -> int:
        """Cycles until one writes nothing on either side; how many it took."""
        for n in range(1, limit + 1):
            writes = self.writes()
            self.cycle()
            if self.writes() == writes:
                return n
        raise AssertionError(f"no quiet cycle in {limit}: the two sides keep writing")

    def writes(self) -> tuple[int, int]:
        return self.pc.requests["update"], len(self.crm_stamps())

    def crm_stamps(self) -> list[object]:
        return sorted(str(r["SystemModstamp"]) for r in self.crm.records("Opportunity"))

    def opportunities(self) -> dict[str, dict[str, Any]]:
        return {r["Partner_Center_Referral_Id__c"]: r for r in self.crm.records("Opportunity")}

    def opportunity(self, referral_id: str) -> dict[str, Any]:
        return self.opportunities()[referral_id]

    def salesperson(self, referral_id: str, **fields: object) -> None:
        opp = self.opportunity(referral_id)
        typed = {
            k: Decimal(v) if k == "Amount" and isinstance(v, int) else v for k, v in fields.items()
        }
        self.crm.edit("Opportunity", opp["Id"], **typed)
        stage = typed.get("StageName")
        if stage is not None:
            record = self.crm.tables["Opportunity"][opp["Id"]]
            record["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            record["IsWon"] = stage == "Closed Won"

    def end_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Both sides, without stamps and eTags: what convergence compares."""
        pc = {
            rid: replace(r, etag=None, updated_at=r.created_at, accepted_at=None, closed_at=None)
            for rid, r in self.pc.referrals.items()
        }
        crm = {
            key: {k: v for k, v in r.items() if k not in ("SystemModstamp", "Id", "AccountId")}
            for key, r in self.opportunities().items()
        }
        return pc, crm
