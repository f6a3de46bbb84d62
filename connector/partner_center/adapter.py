"""The Partner Center source: the change feed and partner updates, on the client and convert.

The change feed asks for ``updatedDateTime ge (high water - overlap)`` ordered by
``updatedDateTime`` and delivers each change once:

- **Keyset paging.** When a page says more follow, the feed asks again from the newest time on
  that page instead of following the next link. The list's paging is positional (``$skip``-like,
  as far as the docs tell), so a referral changed between two pages moves to the end and shifts
  the rest: following the link would skip one. A re-query cannot skip anything; it re-reads the
  few referrals stamped with the boundary time, which are recognised and not delivered twice.
  Only a page made entirely of one timestamp is followed by its next link (there is no newer
  time to ask from). Such a chain of pages is positional, so a referral of an earlier page
  changed meanwhile shifts the rest and one may be skipped: when a referral read on an earlier
  page of the chain comes back with a new change, the feed asks again from the block's time
  (what it had delivered is recognised). A change moves a referral to the end of the order,
  where the same run reads it, so a skip cannot pass unnoticed unless the change was committed
  late, below a newer page's time; at most ``MAX_BLOCK_REREADS`` re-reads a run, against a
  server that never settles.
- **Overlap.** A run re-reads a window below the high-water mark, so a change committed late
  (stamped just below what we already saw) is still caught; only until a poll has run that
  long after the change, so an idle feed costs one request (``ChangeCursor.read_from``).
- **Identity.** A change is (referral id, updatedDateTime, eTag): the eTag changes on every
  write, so even two writes stamped with the same time are told apart. The cursor remembers the
  changes it delivered within the overlap window, so re-reads deliver none twice, while a newer
  change of the same referral still comes through. Equal timestamps need no special case.
- **A bounded memory.** The cursor keeps at most ``seen_limit`` of those changes: the newest,
  and always every change at the high-water instant (which every poll re-reads, idle ones
  too). A burst of more changes than that inside one overlap window (a backfill's own CRM-id
  write-backs: one per referral, all within minutes) would otherwise make the cursor, which is
  copied and stored with every page, grow with the backfill. A change forgotten that way and
  re-read in a later poll's overlap is delivered once more; the engine recognises an unchanged
  referral by its fingerprint and writes nothing for it. The API calls are the same either
  way: what the feed asks for depends on the times it reads, not on what it remembers.

Updates are JSON Patches guarded by the eTag of the referral they were computed from. A 412
re-reads the referral and, if the update still applies, patches again once; a second 412 or an
update that no longer applies is a :class:`ConflictError`.

**Concurrency.** The API has no batch update, so the engine sends up to ``write_concurrency``
updates at once (a backfill's CRM ids: one PATCH per referral). Referral-specific rate limits
are undocumented; the default of 8 stays under the session's connection pool (10 per host, so
every request reuses a warm TLS connection) and a 429 pauses every thread of the client for
its ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

from connector.errors import ConflictError, MappingError, PreconditionFailed
from connector.model import PartnerUpdate, Referral
from connector.model.values import format_datetime, parse_datetime
from connector.partner_center.client import PartnerCenterClient
from connector.partner_center.convert import (
    patch_for_update,
    referral_after_patch,
    referral_from_wire,
)
from connector.ports import ChangeCursor, ChangePage, Rejected

ORDER = "updatedDateTime asc"
DEFAULT_WRITE_CONCURRENCY = 8
DEFAULT_SEEN_LIMIT = 2_000
"""Changes the cursor remembers at most (besides those at the high-water instant)."""
MAX_BLOCK_REREADS = 100
"""Re-reads of a one-timestamp block a run makes at most (see "Keyset paging")."""


class PartnerCenterSource:
    """Partner Center referrals as the engine sees them (the ``ports.PartnerCenterSource``)."""

    def __init__(
        self,
        client: PartnerCenterClient,
        *,
        overlap: timedelta = timedelta(minutes=5),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: FilteringBoundLogger | None = None,
        write_concurrency: int = DEFAULT_WRITE_CONCURRENCY,
        seen_limit: int = DEFAULT_SEEN_LIMIT,
    ) -> None:
        if write_concurrency < 1:
            raise ValueError(f"write_concurrency must be at least 1, got {write_concurrency}")
        if seen_limit < 1:
            raise ValueError(f"seen_limit must be at least 1, got {seen_limit}")
        self.write_concurrency = write_concurrency
        self._seen_limit = seen_limit
        self._client = client
        self._overlap = overlap
        self._now = now
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)

    # -- change feed --------------------------------------------------------------------------

    def changes_since(self, cursor: ChangeCursor) -> Iterator[ChangePage]:
        bound = cursor.read_from(self._overlap)
        feed = _Feed(cursor, self._now(), self._overlap, self._seen_limit)
        rereads = 0
        while True:
            requery = None
            chain: dict[str, str] = {}  # changes read on this query's pages before the last
            pages = self._client.iter_pages(_query(bound))
            for page in pages:
                moved = _moved(chain, page.items)
                yield feed.page(page.items, self._log)
                if moved is not None and bound is not None:
                    at = format_datetime(bound)
                    if rereads < MAX_BLOCK_REREADS:
                        rereads += 1
                        self._log.info("referral_feed_block_reread", moved=moved, at=at)
                        requery = bound
                        break  # a referral of an earlier page moved: one may have been skipped
                    self._log.warning(
                        "referral_feed_block_unsettled", moved=moved, rereads=rereads, at=at
                    )
                if not page.has_more:
                    return
                newest = feed.newest  # the newest time on the page just read
                if newest is not None and (bound is None or newest > bound):
                    requery = newest
                    break  # keyset paging: ask again from the newest time on this page
                # A whole page of one timestamp: only the next link can get past it.
                chain.update(_stamps(page.items))
            pages.close()
            if requery is None:
                return
            bound = requery

    # -- single referrals ---------------------------------------------------------------------

    def get(self, referral_id: str) -> Referral:
        return referral_from_wire(self._client.get(referral_id))

    def update(self, update: PartnerUpdate, current: Referral) -> Referral:
        for attempt in (1, 2):
            ops = patch_for_update(current, update)
            if not ops:
                return current
            try:
                written = self._client.patch(current.id, ops, if_match=current.etag)
            except PreconditionFailed as exc:
                if attempt == 2:
                    raise ConflictError(
                        f"referral {current.id} changed again while we re-applied the update",
                        status=exc.status,
                        code="precondition_failed_twice",
                    ) from exc
                self._log.info("referral_etag_stale", referral_id=current.id, action=update.action)
                current = self.get(current.id)
                continue
            result = (
                referral_after_patch(current, ops, written) if written else self.get(current.id)
            )
            self._log.debug(  # the engine logs what the update was for, at info
                "referral_updated",
                referral_id=current.id,
                action=update.action,
                fields=[op["path"] for op in ops],
            )
            return result
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class _Feed:
    """The state of one run of the change feed: what was delivered, and the high water.

    ``seen`` is never changed in place once a page's cursor holds it: a page that delivers
    something, or moves the read position, builds the next one (see :func:`_remembered`)."""

    def __init__(
        self, cursor: ChangeCursor, polled_at: datetime, overlap: timedelta, limit: int
    ) -> None:
        self.high_water = cursor.high_water
        self.seen: Mapping[str, str] = cursor.seen
        self.polled_at = polled_at
        self._overlap = overlap
        self._limit = limit
        self._pruned_at: datetime | None = None  # the read position ``seen`` was pruned at
        self.newest: datetime | None = None  # the newest change time on the last page

    def page(self, items: list[Any], log: FilteringBoundLogger) -> ChangePage:
        referrals: list[Referral] = []
        rejected: list[Rejected] = []
        fresh: dict[str, str] = {}
        newest: datetime | None = None
        for raw in items:
            record_id, stamp, moment = _identity(raw)
            if moment is not None and (newest is None or moment > newest):
                newest = moment
            if record_id is not None and stamp is not None:
                if fresh.get(record_id, self.seen.get(record_id)) == stamp:
                    continue  # delivered already: a re-read of the overlap or of a page boundary
                fresh[record_id] = stamp
            try:
                referrals.append(referral_from_wire(raw))
            except MappingError as exc:
                # An item without a usable id is named by its content, so re-reading the page
                # (the overlap, a restart) updates one dead letter instead of adding another.
                payload = raw if isinstance(raw, dict) else {}
                rejected.append(Rejected(record_id or _content_id(raw), exc, payload))
                log.warning(
                    "referral_rejected", referral_id=record_id, field=exc.field, reason=exc.reason
                )
        self.newest = newest
        if newest is not None and (self.high_water is None or newest > self.high_water):
            self.high_water = newest
        position = newest or self.high_water
        if fresh or position != self._pruned_at:
            self.seen = _remembered(
                self.seen, fresh, self.high_water, self._overlap, self._limit, position
            )
            self._pruned_at = position
        cursor = ChangeCursor(self.high_water, self.seen, self.polled_at)
        return ChangePage(tuple(referrals), tuple(rejected), cursor)


def _stamps(items: list[Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in items:
        record_id, stamp, _moment = _identity(raw)
        if record_id is not None and stamp is not None:
            found[record_id] = stamp
    return found


def _moved(chain: Mapping[str, str], items: list[Any]) -> str | None:
    """A referral of ``items`` read earlier in ``chain`` with another change, if any."""
    if not chain:
        return None
    for record_id, stamp in _stamps(items).items():
        if chain.get(record_id, stamp) != stamp:
            return record_id
    return None


def _content_id(raw: object) -> str:
    text = json.dumps(raw, sort_keys=True, default=str, ensure_ascii=True)
    return "unidentified-" + hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def _query(bound: datetime | None) -> dict[str, str]:
    params = {"$orderby": ORDER}
    if bound is not None:
        params["$filter"] = f"updatedDateTime ge {format_datetime(bound)}"
    return params


def _identity(raw: Any) -> tuple[str | None, str | None, datetime | None]:  # noqa: ANN401 - raw wire item
    """(id, stamp, change time) of one change, read leniently: parsing judges the rest later.

    The stamp is the change time in its fixed-width form, then the eTag: it orders like the time
    (for pruning the window) and differs for every write (for recognising a re-read).
    """
    if not isinstance(raw, Mapping):
        return None, None, None
    record_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    try:
        moment = parse_datetime(raw.get("updatedDateTime"), "updatedDateTime")
    except MappingError:
        moment = None
    if moment is None:
        return record_id, None, None
    etag = raw.get("eTag")
    return record_id, f"{format_datetime(moment)} {etag if isinstance(etag, str) else ''}", moment


def _remembered(  # noqa: PLR0917 - private; one pruning, its inputs
    seen: Mapping[str, str],
    fresh: Mapping[str, str],
    high_water: datetime | None,
    overlap: timedelta,
    limit: int,
    position: datetime | None,
) -> dict[str, str]:
    """``seen`` updated with ``fresh``: the changes within ``overlap`` below the high water, at
    most ``limit`` of them, the newest first, and every one stamped at or after ``position``
    (the newest time of the page just read) however many: this run still reads those again
    (the next query starts at that time; a stored cursor's changes above it are yet to come),
    and the high water's instant is among them, which every later poll re-reads.
    """
    merged = {**seen, **fresh}
    if high_water is None:
        return merged
    floor = format_datetime(high_water - overlap)
    # Stamps start with one fixed-width UTC form of the time, so they order like the times.
    kept = {rid: stamp for rid, stamp in merged.items() if stamp >= floor}
    if len(kept) <= limit or position is None:
        return kept
    mark = format_datetime(position)
    ahead = {rid: stamp for rid, stamp in kept.items() if stamp >= mark}
    behind = sorted((item for item in kept.items() if item[1] < mark), key=lambda i: i[1])
    room = max(0, limit - len(ahead))
    return {**dict(behind[len(behind) - room :]), **ahead}
