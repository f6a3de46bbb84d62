"""A salesperson working the referral opportunities in the simulated environment.

Every action is a write as a user makes it in the app (the same rules as the Web API, a new
``versionnumber``/``modifiedon``, ``modifiedby`` = the salesperson); win, lose and decline go
through :func:`~sandbox.dynamics.actions.close_opportunity`, the WinOpportunity /
LoseOpportunity code path. Scripted by a test::

    dv.salesperson.accept(opp_id, value=25_000, close_date="2026-12-31")
    dv.salesperson.win(opp_id)

or at random for the demo (:meth:`SalespersonSimulator.random_step`, seeded by its ``rng``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sandbox.dynamics.actions import LOSE, WIN, close_opportunity
from sandbox.dynamics.refs import EntityRef
from sandbox.dynamics.store import SALES_USER_ID, Lookup, Row, RowStore
from sandbox.dynamics.tables import ALTERNATE_KEY_COLUMN, DECLINE_REASONS

__all__ = ["IN_PROGRESS", "ON_HOLD", "Action", "SalespersonSimulator"]

OPPORTUNITY = "opportunity"
IN_PROGRESS, ON_HOLD, WON, CANCELED, OUT_SOLD = 1, 2, 3, 4, 5
_ROOT = "https://sandbox.invalid/api/data/v9.2"


@dataclass(frozen=True, slots=True)
class Action:
    """What :meth:`SalespersonSimulator.random_step` did (``kind`` is the method's name)."""

    kind: str
    opportunity_id: str
    fields: dict[str, Any]


def _iso(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else value


class SalespersonSimulator:
    """Every method returns the opportunity row after the change."""

    def __init__(self, store: RowStore) -> None:
        self.store = store

    def _edit(self, opportunity_id: str, **fields: object) -> Row:
        self.store.write(OPPORTUNITY, opportunity_id, fields, user_id=SALES_USER_ID)
        return self._row(opportunity_id)

    def _row(self, opportunity_id: str) -> Row:
        row = self.store.get(OPPORTUNITY, opportunity_id)
        if row is None:
            raise KeyError(f"no opportunity {opportunity_id}")
        return row

    def accept(self, opportunity_id: str, value: float, close_date: date | str) -> Row:
        """Take the referral on: On Hold → In Progress, with an estimate and a close date."""
        if self._row(opportunity_id)["statuscode"] != ON_HOLD:
            raise ValueError("accept needs an opportunity that is On Hold (statuscode 2)")
        return self._edit(
            opportunity_id,
            statuscode=IN_PROGRESS,
            estimatedvalue=value,
            estimatedclosedate=_iso(close_date),
        )

    def edit(
        self,
        opportunity_id: str,
        *,
        value: float | None = None,
        close_date: date | str | None = None,
    ) -> Row:
        fields: dict[str, object] = {}
        if value is not None:
            fields["estimatedvalue"] = value
        if close_date is not None:
            fields["estimatedclosedate"] = _iso(close_date)
        return self._edit(opportunity_id, **fields)

    def _close(self, action: str, opportunity_id: str, status: int, revenue: float | None) -> Row:
        close: dict[str, object] = {
            "subject": "Won" if action == WIN else "Lost",
            "opportunityid@odata.bind": f"/opportunities({opportunity_id})",
        }
        if revenue is not None:
            close["actualrevenue"] = revenue
        body = {"Status": status, "OpportunityClose": close}

        def resolve(ref: EntityRef) -> Lookup:
            if ref.entity_set != "opportunities" or ref.row_id is None:
                raise ValueError(ref)
            return Lookup(OPPORTUNITY, ref.row_id)

        close_opportunity(self.store, action, body, resolve, _ROOT, user_id=SALES_USER_ID)
        return self._row(opportunity_id)

    def win(self, opportunity_id: str, revenue: float | None = None) -> Row:
        row = self._row(opportunity_id)
        return self._close(WIN, opportunity_id, WON, revenue or row.get("estimatedvalue"))

    def lose(self, opportunity_id: str, status: int = CANCELED) -> Row:
        return self._close(LOSE, opportunity_id, status, None)

    def decline(self, opportunity_id: str, reason: int = DECLINE_REASONS[0].value) -> Row:
        """Turn the referral down: a decline reason, then LoseOpportunity (Canceled)."""
        self._edit(opportunity_id, rs_declinereason=reason)
        return self.lose(opportunity_id, CANCELED)

    def reopen(self, opportunity_id: str, status: int = IN_PROGRESS) -> Row:
        return self._edit(opportunity_id, statecode=0, statuscode=status)

    def random_step(self, rng: random.Random) -> Action | None:
        """One plausible action on an open referral opportunity, or ``None`` if none is open."""
        open_rows = [
            r
            for r in self.store.rows(OPPORTUNITY)
            if r["statecode"] == 0 and r.get(ALTERNATE_KEY_COLUMN)
        ]
        if not open_rows:
            return None
        row = rng.choice(open_rows)
        opp_id = str(row["opportunityid"])
        base = (
            date.fromisoformat(row["estimatedclosedate"])
            if row.get("estimatedclosedate")
            else (self.store.clock.now().date())
        )
        close = base + timedelta(days=rng.randint(-10, 30))
        value = float(rng.randrange(5_000, 500_000, 500))
        if row["statuscode"] == ON_HOLD:
            kind = rng.choices(["accept", "decline"], weights=[4, 1])[0]
            if kind == "accept":
                after = self.accept(opp_id, value, close)
            else:
                after = self.decline(opp_id, rng.choice(DECLINE_REASONS).value)
        else:
            kind = rng.choices(["edit", "win", "lose"], weights=[4, 2, 1])[0]
            if kind == "edit":
                after = self.edit(opp_id, value=value, close_date=close)
            elif kind == "win":
                after = self.win(opp_id)
            else:
                after = self.lose(opp_id, rng.choice([CANCELED, OUT_SOLD]))
        keys = ("statecode", "statuscode", "estimatedvalue", "estimatedclosedate")
        return Action(kind, opp_id, {k: after.get(k) for k in keys})
