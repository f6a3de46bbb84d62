"""A salesperson working the referral opportunities in the simulated org.

Every action is an edit as a user makes it in the UI (:meth:`RecordStore.edit`: the org's
rules, a new ``SystemModstamp``, ``LastModifiedById`` = the salesperson), scripted by a test::

    sf.salesperson.accept(opp_id, amount=25_000, close_date="2026-12-31")
    sf.salesperson.win(opp_id)

or at random for the demo (:meth:`SalespersonSimulator.random_step`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sandbox.salesforce.schema import DECLINE_REASONS, EXTERNAL_ID_FIELD, LOSS_REASONS
from sandbox.salesforce.store import RecordStore

__all__ = ["ACCEPTED_STAGE", "Action", "SalespersonSimulator"]

OPPORTUNITY = "Opportunity"
FIRST_STAGE = "Prospecting"
ACCEPTED_STAGE = "Qualification"
WON = "Closed Won"
LOST = "Closed Lost"
_ADVANCE = ("Needs Analysis", "Value Proposition", "Proposal/Price Quote", "Negotiation/Review")


@dataclass(frozen=True, slots=True)
class Action:
    """What :meth:`SalespersonSimulator.random_step` did (``kind`` is the method's name)."""

    kind: str
    opportunity_id: str
    fields: dict[str, Any]


def _iso(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else value


class SalespersonSimulator:
    """Moves opportunities through stages; every method returns the record after the edit."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def accept(
        self,
        opportunity_id: str,
        amount: float,
        close_date: date | str,
        *,
        stage: str = ACCEPTED_STAGE,
    ) -> dict[str, Any]:
        """Take the referral on: an open stage past Prospecting, with Amount and CloseDate."""
        found = self.store.org.stage(stage)
        if found is None or found.is_closed or stage == FIRST_STAGE:
            raise ValueError(f"accept needs an open stage other than {FIRST_STAGE}, not {stage!r}")
        return self.store.edit(
            OPPORTUNITY, opportunity_id, StageName=stage, Amount=amount, CloseDate=_iso(close_date)
        )

    def advance(self, opportunity_id: str, stage: str) -> dict[str, Any]:
        return self.store.edit(OPPORTUNITY, opportunity_id, StageName=stage)

    def win(self, opportunity_id: str) -> dict[str, Any]:
        return self.store.edit(OPPORTUNITY, opportunity_id, StageName=WON)

    def lose(self, opportunity_id: str, reason: str = "Other") -> dict[str, Any]:
        return self.store.edit(OPPORTUNITY, opportunity_id, StageName=LOST, Loss_Reason__c=reason)

    def decline(self, opportunity_id: str, reason: str = "Not a fit") -> dict[str, Any]:
        """Turn the referral down: Closed Lost with a ``Decline_Reason__c``."""
        return self.store.edit(
            OPPORTUNITY, opportunity_id, StageName=LOST, Decline_Reason__c=reason
        )

    def edit(
        self,
        opportunity_id: str,
        *,
        amount: float | None = None,
        close_date: date | str | None = None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if amount is not None:
            fields["Amount"] = amount
        if close_date is not None:
            fields["CloseDate"] = _iso(close_date)
        return self.store.edit(OPPORTUNITY, opportunity_id, **fields)

    def random_step(self, rng: random.Random) -> Action | None:
        """One plausible action on an open referral opportunity, or ``None`` if none is open."""
        open_opps = [
            r
            for r in self.store.records(OPPORTUNITY)
            if not r["IsClosed"] and r.get(EXTERNAL_ID_FIELD)
        ]
        if not open_opps:
            return None
        opp = rng.choice(open_opps)
        opp_id = str(opp["Id"])
        close = date.fromisoformat(opp["CloseDate"]) + timedelta(days=rng.randint(-10, 30))
        amount = float(rng.randrange(5_000, 500_000, 500))
        if opp["StageName"] == FIRST_STAGE:
            kind = rng.choices(["accept", "decline"], weights=[4, 1])[0]
            if kind == "accept":
                record = self.accept(opp_id, amount, close)
            else:
                record = self.decline(opp_id, rng.choice(DECLINE_REASONS))
        else:
            kind = rng.choices(["advance", "edit", "win", "lose"], weights=[3, 3, 2, 1])[0]
            if kind == "advance":
                record = self.advance(opp_id, rng.choice(_ADVANCE))
            elif kind == "edit":
                record = self.edit(opp_id, amount=amount, close_date=close)
            elif kind == "win":
                record = self.win(opp_id)
            else:
                record = self.lose(opp_id, rng.choice(LOSS_REASONS))
        fields = {k: record[k] for k in ("StageName", "Amount", "CloseDate", "IsClosed", "IsWon")}
        return Action(kind, opp_id, fields)
