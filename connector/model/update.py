"""What the partner's CRM may change on a referral: its owned fields plus one lifecycle action.

A field left ``None`` means "no opinion, keep what Partner Center has": Partner Center's PATCH
has no ``remove``, so a value can be changed but never cleared.

The referral's name is not here on purpose: ``/name`` is not one of the swagger's patchable
paths, so the deal name needed for accepting must already be on the referral.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from connector.model.lifecycle import Lifecycle, Status, Substatus, transition_problem
from connector.model.referral import Referral
from connector.model.values import check_amount, parse_currency

__all__ = ["Action", "PartnerUpdate", "UpdateProblem", "target_lifecycle"]


class Action(StrEnum):
    """The one lifecycle step an update takes (``EDIT``: none, only fields)."""

    EDIT = "edit"
    ACCEPT = "accept"
    DECLINE = "decline"
    WIN = "win"
    LOSE = "lose"


_TARGETS: dict[Action, Lifecycle | None] = {
    Action.EDIT: None,
    Action.ACCEPT: Lifecycle(Status.ACTIVE, Substatus.ACCEPTED),
    Action.DECLINE: Lifecycle(Status.CLOSED, Substatus.DECLINED),
    Action.WIN: Lifecycle(Status.CLOSED, Substatus.WON),
    Action.LOSE: Lifecycle(Status.CLOSED, Substatus.LOST),
}

_REASONED = frozenset({Action.DECLINE, Action.LOSE})


def target_lifecycle(action: Action) -> Lifecycle | None:
    """Where ``action`` takes a referral; ``None`` for ``EDIT`` (the lifecycle stays)."""
    return _TARGETS[action]


@dataclass(frozen=True, slots=True)
class UpdateProblem:
    """Why an update cannot be sent: the canonical field and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerUpdate:
    """The partner's change to one referral.

    Building one checks the values' shape: an amount that is not finite or is negative, or a
    currency that is not three letters, raises :class:`~connector.errors.MappingError` (the CRM
    record cannot be mapped: dead-letter it); a missing referral id, or a reason with an action
    other than decline or lose, is a programming error (``ValueError``). A lower-case currency
    is upper-cased. :meth:`problems` checks the update against the referral it applies to.
    """

    referral_id: str
    action: Action = Action.EDIT
    deal_value: Decimal | None = None
    currency: str | None = None
    close_date: date | None = None
    partner_notes: str | None = None
    external_reference_id: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.referral_id:
            raise ValueError("a partner update needs the referral id")
        if self.deal_value is not None:
            check_amount(self.deal_value, "deal_value")
        if self.currency is not None:
            object.__setattr__(self, "currency", parse_currency(self.currency, "currency"))
        if self.reason is not None and self.action not in _REASONED:
            raise ValueError(f"a reason only goes with decline or lose, not {self.action}")

    @property
    def target(self) -> Lifecycle | None:
        """Where this update takes the referral's lifecycle; ``None`` if it leaves it alone."""
        return target_lifecycle(self.action)

    def transition_problem(self, current: Lifecycle) -> str | None:
        """Why this update's action cannot start from ``current``; ``None`` if it can."""
        target = self.target
        return None if target is None else transition_problem(current, target)

    def missing(self, current: Referral) -> tuple[UpdateProblem, ...]:
        """What the action needs and neither this update nor ``current`` provides.

        Only asked when the lifecycle really changes: re-sending an accept to a referral that
        is already accepted needs nothing more.
        """
        if self.target is None or self.target == current.lifecycle:
            return ()
        if self.action is Action.ACCEPT:
            return self._missing_for_accept(current)
        if self.action is Action.DECLINE and not (self.reason and self.reason.strip()):
            return (UpdateProblem("reason", "declining a referral needs a reason"),)
        return ()

    def _missing_for_accept(self, current: Referral) -> tuple[UpdateProblem, ...]:
        value = self.deal_value if self.deal_value is not None else current.deal.value
        close = self.close_date or current.deal.close_date
        notes = self.partner_notes if self.partner_notes is not None else current.partner_notes
        problems: list[UpdateProblem] = []
        if not current.name:
            problems.append(UpdateProblem("name", "accepting needs a deal name"))
        # New referrals often arrive with a value of 0: accepting needs a real estimate
        # (DESIGN.md), so 0 counts as missing rather than being sent on as one.
        if value is None or value <= 0:
            problems.append(UpdateProblem("deal_value", "accepting needs an estimated value > 0"))
        if close is None:
            problems.append(UpdateProblem("close_date", "accepting needs a close date"))
        if not (notes and notes.strip()):
            problems.append(UpdateProblem("partner_notes", "accepting needs notes"))
        return tuple(problems)

    def problems(self, current: Referral) -> tuple[UpdateProblem, ...]:
        """Everything that stops this update applying to ``current``: id, transition, missing."""
        found: list[UpdateProblem] = []
        if current.id != self.referral_id:
            found.append(
                UpdateProblem("referral_id", f"update is for {self.referral_id}, not {current.id}")
            )
        reason = self.transition_problem(current.lifecycle)
        if reason is not None:
            found.append(UpdateProblem("lifecycle", reason))
        else:
            found.extend(self.missing(current))
        return tuple(found)
