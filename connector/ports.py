"""The ports: what the engine needs from the outside world, as Protocols.

Real adapters (``connector.partner_center``, later ``connector.crm.*`` and ``connector.state``)
and the fakes in ``tests/fakes.py`` satisfy these without inheriting from them. The CRM adapter
and state store ports arrive with their issues; this module only names what exists.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connector.errors import MappingError
from connector.model import PartnerUpdate, Referral


class Clock(Protocol):
    """Wall-clock time, injectable so tests and the sandbox can move it."""

    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


@dataclass(frozen=True, slots=True)
class ChangeCursor:
    """Where a change feed stopped: a high-water mark plus what was already seen near it.

    ``high_water`` is the newest change time delivered. ``seen`` maps the id of every change
    delivered within the overlap window below ``high_water`` to a stamp of that change (its
    time, then its version), so a re-read of the window (to catch late commits) never delivers
    the same change twice, while a *new* change of the same record still comes through.
    """

    high_water: datetime | None = None
    seen: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "high_water": None if self.high_water is None else self.high_water.isoformat(),
            "seen": dict(self.seen),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChangeCursor:
        raw = data.get("high_water")
        seen = data.get("seen") or {}
        return cls(
            high_water=None if raw is None else datetime.fromisoformat(str(raw)),
            seen={str(k): str(v) for k, v in dict(seen).items()},
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record of a change feed that could not be turned into the canonical model."""

    record_id: str | None
    error: MappingError
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of a change feed: what parsed, what did not, and the cursor after this page.

    The caller stores ``cursor`` only after it has written and recorded everything in the page.
    """

    referrals: tuple[Referral, ...]
    rejected: tuple[Rejected, ...]
    cursor: ChangeCursor


class PartnerCenterSource(Protocol):
    """Partner Center referrals as the engine sees them."""

    def changes_since(self, cursor: ChangeCursor) -> Iterator[ChangePage]:
        """Every referral changed since ``cursor``, page by page, each change exactly once."""
        ...

    def get(self, referral_id: str) -> Referral:
        """The referral as it is now (with its current eTag)."""
        ...

    def update(self, update: PartnerUpdate, current: Referral) -> Referral:
        """Apply the partner's update to ``current`` (whose eTag guards the write).

        On a stale eTag the referral is re-read and the update re-applied once if it is still
        valid; otherwise ``ConflictError``. Returns the referral as written (its new eTag).
        """
        ...
