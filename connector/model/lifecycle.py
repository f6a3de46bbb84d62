"""A referral's lifecycle (status + substatus) and the one rule for moving it.

Partner Center's table (spec §3.3), with the API's own names::

    status   may become            with substatus
    New      New, Active, Closed   Pending, Received
    Active   Active, Closed        Accepted
    Closed   Closed                Won, Lost, Declined, Expired

read the way Partner Center behaves (spec §3.3 "Interpretation"):

- a referral is accepted New → Active/Accepted and declined New → Closed/Declined;
- it is won or lost only once accepted: Active → Closed/Won|Lost;
- Expired is set by Partner Center itself (``Actor.SYSTEM``) when a *new* referral times out;
- Closed is terminal: nothing moves out of it, not even to another Closed substatus;
- ``None/None`` is the unset lifecycle of a referral being created: it may become New (an
  incoming referral) or Active/Accepted (an outgoing one, auto-accepted); nothing may become it.

:func:`transition_problem` is that rule as one pure function. The model, the Partner Center
client and the sandbox (to answer 400) all ask it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, TypeVar

from connector.errors import MappingError

__all__ = ["ALLOWED_SUBSTATUSES", "Actor", "Lifecycle", "Status", "Substatus", "transition_problem"]


class Status(StrEnum):
    """``status`` of a referral; values are the API's names."""

    NONE = "None"
    NEW = "New"
    ACTIVE = "Active"
    CLOSED = "Closed"


class Substatus(StrEnum):
    """``substatus`` of a referral; values are the API's names."""

    NONE = "None"
    PENDING = "Pending"
    RECEIVED = "Received"
    ACCEPTED = "Accepted"
    WON = "Won"
    LOST = "Lost"
    DECLINED = "Declined"
    EXPIRED = "Expired"


class Actor(StrEnum):
    """Who asks for a transition: the partner (us, through the API) or Partner Center itself."""

    PARTNER = "partner"
    SYSTEM = "system"


ALLOWED_SUBSTATUSES: dict[Status, frozenset[Substatus]] = {
    Status.NONE: frozenset({Substatus.NONE}),
    Status.NEW: frozenset({Substatus.PENDING, Substatus.RECEIVED}),
    Status.ACTIVE: frozenset({Substatus.ACCEPTED}),
    Status.CLOSED: frozenset(
        {Substatus.WON, Substatus.LOST, Substatus.DECLINED, Substatus.EXPIRED}
    ),
}

_ALLOWED_STATUS_MOVES: dict[Status, frozenset[Status]] = {
    Status.NONE: frozenset({Status.NEW, Status.ACTIVE}),
    Status.NEW: frozenset({Status.NEW, Status.ACTIVE, Status.CLOSED}),
    Status.ACTIVE: frozenset({Status.ACTIVE, Status.CLOSED}),
    Status.CLOSED: frozenset({Status.CLOSED}),
}

# Closed substatuses that need a particular starting status (spec §3.3 interpretation).
_CLOSED_FROM: dict[Substatus, frozenset[Status]] = {
    Substatus.WON: frozenset({Status.ACTIVE}),
    Substatus.LOST: frozenset({Status.ACTIVE}),
    Substatus.DECLINED: frozenset({Status.NEW}),
    Substatus.EXPIRED: frozenset({Status.NEW}),
}


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A status with a substatus that belongs to it; other pairs cannot be built."""

    status: Status
    substatus: Substatus

    UNSET: ClassVar[Lifecycle]

    def __post_init__(self) -> None:
        if self.substatus not in ALLOWED_SUBSTATUSES[self.status]:
            allowed = ", ".join(sorted(ALLOWED_SUBSTATUSES[self.status]))
            raise ValueError(
                f"substatus {self.substatus} does not belong to status {self.status}"
                f" (allowed: {allowed})"
            )

    def __str__(self) -> str:
        return f"{self.status}/{self.substatus}"

    @property
    def is_terminal(self) -> bool:
        """Closed, whatever the substatus: no transition leaves it."""
        return self.status is Status.CLOSED

    @classmethod
    def parse(cls, status_raw: object, substatus_raw: object) -> Lifecycle:
        """From the wire strings; unknown or mismatched values raise :class:`MappingError`."""
        status = _parse_enum(Status, status_raw, "status")
        substatus = _parse_enum(Substatus, substatus_raw, "substatus")
        if substatus not in ALLOWED_SUBSTATUSES[status]:
            allowed = ", ".join(sorted(ALLOWED_SUBSTATUSES[status]))
            reason = f"does not belong to status {status} (allowed: {allowed})"
            raise MappingError("substatus", substatus_raw, reason)
        return cls(status, substatus)

    @classmethod
    def all(cls) -> tuple[Lifecycle, ...]:
        """Every valid (status, substatus) pair, in declaration order."""
        return tuple(
            cls(status, substatus)
            for status in Status
            for substatus in Substatus
            if substatus in ALLOWED_SUBSTATUSES[status]
        )


Lifecycle.UNSET = Lifecycle(Status.NONE, Substatus.NONE)


_E = TypeVar("_E", Status, Substatus)


def _parse_enum(kind: type[_E], raw: object, field: str) -> _E:
    if raw is None or raw == "":
        raise MappingError(field, raw, "is required")
    if isinstance(raw, str):
        for member in kind:
            if member.value == raw:
                return member
    known = ", ".join(member.value for member in kind)
    raise MappingError(field, raw, f"unknown {field} (known: {known})")


def transition_problem(
    current: Lifecycle, target: Lifecycle, *, actor: Actor = Actor.PARTNER
) -> str | None:
    """``None`` if ``actor`` may move a referral from ``current`` to ``target``, else why not.

    Staying where you are is always allowed (an idempotent replay changes nothing).
    """
    if target == current:
        return None
    if current.is_terminal:
        return f"{current} is terminal; no transition leaves a closed referral"
    if target == Lifecycle.UNSET:
        return f"cannot move from {current} back to {target}"
    if target.status not in _ALLOWED_STATUS_MOVES[current.status]:
        return f"status {current.status} cannot become {target.status}"
    if target.status is Status.CLOSED:
        return _closing_problem(current, target, actor)
    return None


def _closing_problem(current: Lifecycle, target: Lifecycle, actor: Actor) -> str | None:
    if target.substatus is Substatus.EXPIRED and actor is not Actor.SYSTEM:
        return "only Partner Center expires a referral; a partner cannot set Expired"
    if current.status not in _CLOSED_FROM[target.substatus]:
        needed = " or ".join(sorted(_CLOSED_FROM[target.substatus]))
        return f"{target} needs a referral that is {needed}, but it is {current}"
    return None
