"""The Partner Center source: the change feed and partner updates, on the client and convert.

The change feed asks for ``updatedDateTime ge (high water - overlap)`` ordered by
``updatedDateTime`` and delivers each change once:

- **Keyset paging.** When a page says more follow, the feed asks again from the newest time on
  that page instead of following the next link. The list's paging is positional (``$skip``-like,
  as far as the docs tell), so a referral changed between two pages moves to the end and shifts
  the rest: following the link would skip one. A re-query cannot skip anything; it re-reads the
  few referrals stamped with the boundary time, which are recognised and not delivered twice.
  Only a page made entirely of one timestamp is followed by its next link (there is no newer
  time to ask from).
- **Overlap.** A run re-reads a window below the high-water mark, so a change committed late
  (stamped just below what we already saw) is still caught; only until a poll has run that
  long after the change, so an idle feed costs one request (``ChangeCursor.read_from``).
- **Identity.** A change is (referral id, updatedDateTime, eTag): the eTag changes on every
  write, so even two writes stamped with the same time are told apart. The cursor remembers the
  changes it delivered within the overlap window, so re-reads deliver none twice, while a newer
  change of the same referral still comes through. Equal timestamps need no special case.

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
from connector.partner_center.convert import patch_for_update, referral_from_wire
from connector.ports import ChangeCursor, ChangePage, Rejected

ORDER = "updatedDateTime asc"
DEFAULT_WRITE_CONCURRENCY = 8


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
    ) -> None:
        if write_concurrency < 1:
            raise ValueError(f"write_concurrency must be at least 1, got {write_concurrency}")
        self.write_concurrency = write_concurrency
        self._client = client
        self._overlap = overlap
        self._now = now
        self._log: FilteringBoundLogger = logger or structlog.get_logger(__name__)

    # -- change feed --------------------------------------------------------------------------

    def changes_since(self, cursor: ChangeCursor) -> Iterator[ChangePage]:
        bound = cursor.read_from(self._overlap)
        feed = _Feed(cursor, self._now())
        while True:
            requery = None
            pages = self._client.iter_pages(_query(bound))
            for page in pages:
                yield feed.page(page.items, self._log, self._overlap)
                if not page.has_more:
                    return
                newest = _newest(page.items)
                if newest is not None and (bound is None or newest > bound):
                    requery = newest
                    break  # keyset paging: ask again from the newest time on this page
                # A whole page of one timestamp: only the next link can get past it.
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
            result = referral_from_wire(written) if written else self.get(current.id)
            self._log.debug(  # the engine logs what the update was for, at info
                "referral_updated",
                referral_id=current.id,
                action=update.action,
                fields=[op["path"] for op in ops],
            )
            return result
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class _Feed:
    """The state of one run of the change feed: what was delivered, and the high water."""

    def __init__(self, cursor: ChangeCursor, polled_at: datetime) -> None:
        self.high_water = cursor.high_water
        self.seen = dict(cursor.seen)
        self.polled_at = polled_at

    def page(self, items: list[Any], log: FilteringBoundLogger, overlap: timedelta) -> ChangePage:
        referrals: list[Referral] = []
        rejected: list[Rejected] = []
        for raw in items:
            record_id, stamp, moment = _identity(raw)
            if record_id is not None and stamp is not None and self.seen.get(record_id) == stamp:
                continue  # delivered already: a re-read of the overlap or of a page boundary
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
            if record_id is not None and stamp is not None:
                self.seen[record_id] = stamp
            if moment is not None and (self.high_water is None or moment > self.high_water):
                self.high_water = moment
        self.seen = _within_window(self.seen, self.high_water, overlap)
        cursor = ChangeCursor(self.high_water, dict(self.seen), self.polled_at)
        return ChangePage(tuple(referrals), tuple(rejected), cursor)


def _content_id(raw: object) -> str:
    text = json.dumps(raw, sort_keys=True, default=str, ensure_ascii=True)
    return "unidentified-" + hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def _query(bound: datetime | None) -> dict[str, str]:
    params = {"$orderby": ORDER}
    if bound is not None:
        params["$filter"] = f"updatedDateTime ge {format_datetime(bound)}"
    return params


def _newest(items: list[Any]) -> datetime | None:
    moments = [moment for _, _, moment in map(_identity, items) if moment is not None]
    return max(moments, default=None)


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


def _within_window(
    seen: Mapping[str, str], high_water: datetime | None, overlap: timedelta
) -> dict[str, str]:
    if high_water is None:
        return dict(seen)
    floor = format_datetime(high_water - overlap)
    # Stamps start with one fixed-width UTC form of the time, so they order like the times.
    return {rid: stamp for rid, stamp in seen.items() if stamp >= floor}
