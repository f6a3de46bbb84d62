"""The CRM id back to Partner Center: one PATCH per referral, several in flight at once.

Partner Center has no batch update, so a backfill of N referrals costs N PATCHes; sent one
after the other they are most of the backfill's time (N round trips). They are
independent (each guarded by its own eTag), so up to ``concurrency`` go out at once from a
bounded pool. Politeness stays with the client: every request is retried by the one retry
layer, and a 429's ``Retry-After`` pauses every thread of the client, not only the one that met
it (:class:`~connector.partner_center.client.PartnerCenterClient`).

The outcome is the same as sending them one by one, in order: a transient fault stops the
write-back (what was not sent waits for the next cycle, the link still says so), a permanent
refusal is logged and the rest go on.

**Not while the feed may page over them.** A write gives a referral a new ``updatedDateTime``,
which moves it to the end of the change feed. Where the feed still reads by position (a run of
referrals all stamped with one instant: only the next link gets past it, see
:mod:`connector.partner_center.adapter`), writing one of that run would shift the rest, and a
page would skip one. So :class:`PendingWriteBacks` holds each write-back until the feed has
delivered a change newer than its referral's; the end of the feed releases the rest. Held
write-backs keep their referral in hand up to :data:`HOLD_LIMIT` (beyond that, the referral is
read again when it is sent, so memory stays bounded however large such a run is).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from structlog.typing import FilteringBoundLogger

from connector.engine.cycle import OwnWrites
from connector.errors import PermanentError, TransientError
from connector.model import PartnerUpdate, Referral
from connector.ports import Link, PartnerCenterSource

__all__ = ["HOLD_LIMIT", "PendingWriteBacks", "WriteBackResult", "source_write_concurrency",
           "write_back"]  # fmt: skip

HOLD_LIMIT = 1_000
"""Held write-backs that keep their referral in hand (the others are read again)."""


def source_write_concurrency(source: object) -> int:
    """How many writes the source takes at once (its ``write_concurrency``; 1 if it says
    nothing, as the fakes do, which keeps them deterministic)."""
    value = getattr(source, "write_concurrency", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


class PendingWriteBacks:
    """Write-backs waiting until the feed has moved past their referral (see the module)."""

    def __init__(self, hold: int = HOLD_LIMIT) -> None:
        self._hold = hold
        self._items: list[tuple[Link, Referral | None, datetime]] = []
        self._frontier: datetime | None = None
        self.postponed = False  # a transient fault met: no more write-backs this cycle

    def add(
        self, waiting: Iterable[tuple[Link, Referral]], delivered: Iterable[Referral]
    ) -> list[tuple[Link, Referral | None]]:
        """Take a batch's write-backs and every referral it delivered; what may go now."""
        for referral in delivered:
            if self._frontier is None or referral.updated_at > self._frontier:
                self._frontier = referral.updated_at
        held = sum(1 for _, referral, _ in self._items if referral is not None)
        for link, referral in waiting:
            keep = referral if held < self._hold else None
            held += keep is not None
            self._items.append((link, keep, referral.updated_at))
        frontier = self._frontier
        ready = [(link, ref) for link, ref, at in self._items if frontier and at < frontier]
        self._items = [item for item in self._items if not (frontier and item[2] < frontier)]
        return ready

    def drain(self) -> list[tuple[Link, Referral | None]]:
        """Everything still held (the feed has ended)."""
        items, self._items = self._items, []
        return [(link, referral) for link, referral, _ in items]


@dataclass
class WriteBackResult:
    """What a write-back did: the links to record, what was written, what went wrong."""

    links: list[Link]
    written: int = 0
    attempted: int = 0
    errors: list[str] | None = None
    postponed: bool = False


@dataclass(frozen=True, slots=True)
class _Done:
    link: Link | None  # the link to record (written, or already carried), None if not
    written: bool = False
    error: str | None = None
    transient: bool = False


def write_back(
    items: Sequence[tuple[Link, Referral | None]],
    *,
    source: PartnerCenterSource,
    own_writes: OwnWrites,
    log: FilteringBoundLogger,
    now: Callable[[], datetime],
    concurrency: int = 1,
) -> WriteBackResult:
    """Give each referral its link's CRM id (``None``: read the referral first)."""
    stop = threading.Event()

    def one(item: tuple[Link, Referral | None]) -> _Done | None:
        if stop.is_set():
            return None
        link, current = item
        try:
            return _one(link, current, source=source, own_writes=own_writes, log=log, now=now)
        except TransientError as exc:
            stop.set()
            log.warning("crm_id_write_back_postponed", referral_id=link.referral_id, error=str(exc))
            reason = f"write-back of {link.referral_id} postponed: {exc}"
            return _Done(None, error=reason, transient=True)
        except PermanentError as exc:
            log.warning("crm_id_write_back_refused", referral_id=link.referral_id, error=str(exc))
            return _Done(None, error=f"write-back of {link.referral_id} refused: {exc}")

    if concurrency > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="write-back") as pool:
            done = list(pool.map(one, items))
    else:
        done = []
        for item in items:
            done.append(one(item))
            if stop.is_set():
                break
    result = WriteBackResult(links=[], errors=[])
    for outcome in done:
        if outcome is None:
            continue
        result.attempted += 1
        if outcome.link is not None:
            result.links.append(outcome.link)
        result.written += outcome.written
        if outcome.error is not None and result.errors is not None:
            result.errors.append(outcome.error)
        result.postponed = result.postponed or outcome.transient
    return result


def _one(
    link: Link,
    current: Referral | None,
    *,
    source: PartnerCenterSource,
    own_writes: OwnWrites,
    log: FilteringBoundLogger,
    now: Callable[[], datetime],
) -> _Done:
    if link.crm_id is None:
        return _Done(None)
    referral = current if current is not None else source.get(link.referral_id)
    written = False
    if referral.external_reference_id != link.crm_id:
        update = PartnerUpdate(referral_id=referral.id, external_reference_id=link.crm_id)
        referral = source.update(update, referral)
        own_writes.record(referral.id, referral.updated_at)
        written = True
        log.info("crm_id_written_back", referral_id=referral.id, crm_id=link.crm_id)
    return _Done(
        replace(link, crm_id_written=True, etag=referral.etag, updated_at=now()), written=written
    )
