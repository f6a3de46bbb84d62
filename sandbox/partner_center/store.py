"""The simulator's referrals: raw wire dicts, thread-safe, with Partner Center's bookkeeping.

Seeded referrals are stored exactly as given, without validation, so a test can reproduce
anything the real API might return. Every write (the API's, :meth:`ReferralStore.edit`'s, the
expiry's) stores a new dict with a new ``eTag`` (quoted, Cosmos-DB style: ``"\\"<uuid>\\""``)
and ``updatedDateTime`` (sandbox time, seven fractional digits). Stored dicts are never changed
in place, so a snapshot can be read and serialized outside the lock.

Observers (:meth:`ReferralStore.add_observer`) hear of every API write, ``edit`` and expiry
as ``(kind, referral_id, moment)`` with ``kind`` ``"created"`` or ``"updated"``; seeding
(``put_raw``/``seed_raw``) and ``stamp_updated`` store "exactly as given" and tell no one. They
are called under the store's lock, so they must only hand the news on (enqueue), never block or
call back into the store; one that raises is logged and ignored (a write never fails for it).

Expiry: a New referral whose ``expirationDateTime`` (else ``createdDateTime`` + 14 days) has
passed in sandbox time becomes Closed/Expired. It happens lazily, on every read or write, so a
test that advances the clock sees it at once; its ``updatedDateTime`` is the moment it was
noticed (never in the past, so a changes-since cursor sees it) and so is ``closedDateTime``.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from sandbox.partner_center import writes
from sandbox.partner_center.errors import ApiError
from sandbox.partner_center.order import Span, UpdatedOrder
from sandbox.partner_center.wiretime import format_wire, moment_ticks, ticks

__all__ = [
    "EXPIRY",
    "Clock",
    "ReferralStore",
    "WriteKind",
    "WriteObserver",
    "load_seed_file",
    "new_etag",
]

logger = logging.getLogger("sandbox.partner_center.store")

WriteKind = Literal["created", "updated"]
WriteObserver = Callable[[WriteKind, str, datetime], None]
"""``(kind, referral_id, moment)``: told of each write, under the store's lock (must not block)."""

EXPIRY = timedelta(days=14)
_TICKS_PER_SECOND = 10_000_000


class Clock(Protocol):
    def now(self) -> datetime: ...


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


def load_seed_file(path: Path) -> list[dict[str, Any]]:
    """Referrals from a JSON file: an array, or an OData envelope with ``value``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    items = data.get("value") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(
            f"{path}: expected a JSON array of referral objects (or {{'value': [...]}})"
        )
    return items


class ReferralStore:
    """Referrals by id, in insertion order."""

    def __init__(
        self,
        clock: Clock,
        *,
        partner: writes.Partner | None = None,
        expiry: timedelta = EXPIRY,
    ) -> None:
        self._clock = clock
        self.partner = partner or writes.Partner()
        self._expiry_ticks = int(expiry.total_seconds()) * _TICKS_PER_SECOND
        self._lock = threading.RLock()
        self._items: dict[str, dict[str, Any]] = {}
        self._order = UpdatedOrder()  # every write to _items goes through _put, which keeps it
        # the earliest expiry among New referrals, or lower (a write may have removed it):
        # a sweep scans only once sandbox time reaches it
        self._next_expiry: int | None = None
        self._observers: list[WriteObserver] = []

    def add_observer(self, observer: WriteObserver) -> None:
        """Tell ``observer`` of every later write (see the module docstring)."""
        with self._lock:
            self._observers.append(observer)

    # -- seeding and inspection (tests, the sandbox) -----------------------------------

    def seed_raw(self, referrals: Iterable[Mapping[str, Any]]) -> int:
        """Store each referral exactly as given (a copy); returns how many."""
        count = 0
        for raw in referrals:
            self.put_raw(raw)
            count += 1
        return count

    def put_raw(self, raw: Mapping[str, Any]) -> None:
        """Store (or overwrite) one referral exactly as given; only ``id`` is required."""
        referral_id = raw.get("id")
        if not isinstance(referral_id, str) or not referral_id:
            raise ValueError("a seeded referral needs a string 'id'")
        with self._lock:
            self._put(copy.deepcopy(dict(raw)))

    def get_raw(self, referral_id: str) -> dict[str, Any] | None:
        with self._lock:
            self._sweep_locked()
            raw = self._items.get(referral_id)
            return copy.deepcopy(raw) if raw is not None else None

    def all_raw(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(dict(raw)) for raw in self.snapshot()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._order.clear()
            self._next_expiry = None

    def edit(self, referral_id: str, **changes: object) -> dict[str, Any]:
        """A change made on Microsoft's side: new ``eTag`` and ``updatedDateTime``.

        Dict values are merged into the stored dicts (``details={"notes": "x"}`` keeps the other
        details); anything else replaces. ``eTag`` or ``updatedDateTime`` in ``changes`` win
        over the stamps. Returns a copy of the new referral.
        """

        def change(current: Mapping[str, Any], _now: datetime) -> dict[str, Any]:
            result = copy.deepcopy(dict(current))
            _merge(result, changes)
            return result

        updated = self._write(referral_id, change, if_match=None)
        pinned: dict[str, object] = {
            key: changes[key] for key in ("eTag", "updatedDateTime") if key in changes
        }
        if pinned:
            with self._lock:
                updated = {**self._items[referral_id], **pinned}
                self._put(updated)
        return copy.deepcopy(updated)

    def stamp_updated(self, referral_ids: Iterable[str], updated: datetime | str) -> None:
        """Give each referral exactly this ``updatedDateTime`` (and a new eTag): ties on demand."""
        stamp = updated if isinstance(updated, str) else format_wire(updated)
        with self._lock:
            for referral_id in referral_ids:
                current = self._require(referral_id)
                self._put({**current, "eTag": new_etag(), "updatedDateTime": stamp})

    # -- the API's operations ------------------------------------------------------------

    def snapshot(self) -> list[Mapping[str, Any]]:
        """Every referral, in insertion order (read-only views: do not change them)."""
        with self._lock:
            self._sweep_locked()
            return list(self._items.values())

    def in_updated_order(
        self, span: Span, start: int, stop: int
    ) -> tuple[int, list[Mapping[str, Any]]]:
        """``(how many, those at [start, stop))`` of the referrals in ``span``, ordered by
        ``updatedDateTime`` then ``id`` (read-only views), from the index: O(log N + page)."""
        with self._lock:
            self._sweep_locked()
            first, end = self._order.bounds(span)
            window = self._order.ids(first + start, min(first + stop, end))
            return end - first, [self._items[referral_id] for referral_id in window]

    def get(self, referral_id: str) -> Mapping[str, Any]:
        """One referral (read-only view) or 404."""
        with self._lock:
            self._sweep_locked()
            return self._require(referral_id)

    def create(self, body: object) -> Mapping[str, Any]:
        with self._lock:
            now = self._clock.now()
            self._sweep_locked(now)
            created = writes.build_created(body, now, self.partner)
            return self._commit(created, now, "created")

    def patch(self, referral_id: str, document: object, if_match: str | None) -> Mapping[str, Any]:
        """Apply a JSON Patch; ``if_match=None`` means no concurrency check (documented)."""

        def change(current: Mapping[str, Any], now: datetime) -> dict[str, Any]:
            return writes.apply_patch(current, document, now)

        return self._write(referral_id, change, if_match)

    def replace(self, referral_id: str, body: object, if_match: str) -> Mapping[str, Any]:
        def change(current: Mapping[str, Any], now: datetime) -> dict[str, Any]:
            return writes.apply_put(current, body, now)

        return self._write(referral_id, change, if_match)

    def expire_due(self) -> None:
        """Close as Expired every New referral past its expiration (also done on every call)."""
        with self._lock:
            self._sweep_locked()

    # -- internals -----------------------------------------------------------------------

    def _require(self, referral_id: str) -> dict[str, Any]:
        raw = self._items.get(referral_id)
        if raw is None:
            raise ApiError.not_found(referral_id)
        return raw

    def _write(
        self,
        referral_id: str,
        change: Callable[[Mapping[str, Any], datetime], dict[str, Any]],
        if_match: str | None,
    ) -> dict[str, Any]:
        with self._lock:
            now = self._clock.now()
            self._sweep_locked(now)
            current = self._require(referral_id)
            if if_match is not None and if_match.strip() != current.get("eTag"):
                raise ApiError(
                    412,
                    "preconditionFailed",
                    "The If-Match eTag does not match the referral's current eTag; "
                    "GET the latest and try again.",
                )
            return self._commit(change(current, now), now)

    def _commit(
        self, raw: dict[str, Any], now: datetime, kind: WriteKind = "updated"
    ) -> dict[str, Any]:
        raw["eTag"] = new_etag()
        raw["updatedDateTime"] = format_wire(now)
        self._put(raw)
        self._notify(kind, raw["id"], now)
        return raw

    def _put(self, raw: dict[str, Any]) -> None:
        self._items[raw["id"]] = raw
        self._order.put(raw["id"], raw)
        self._note_expiry(raw)

    def _notify(self, kind: WriteKind, referral_id: str, now: datetime) -> None:
        for observer in self._observers:
            try:
                observer(kind, referral_id, now)
            except Exception:
                logger.exception("store_observer_failed kind=%s referral_id=%s", kind, referral_id)

    def _expires_at(self, raw: Mapping[str, Any]) -> int | None:
        if raw.get("status") != "New":
            return None
        explicit = ticks(raw.get("expirationDateTime"))
        if explicit is not None:
            return explicit
        created = ticks(raw.get("createdDateTime"))
        return None if created is None else created + self._expiry_ticks

    def _note_expiry(self, raw: Mapping[str, Any]) -> None:
        expires_at = self._expires_at(raw)
        if expires_at is not None and (self._next_expiry is None or expires_at < self._next_expiry):
            self._next_expiry = expires_at

    def _sweep_locked(self, now: datetime | None = None) -> None:
        moment = now or self._clock.now()
        now_ticks = moment_ticks(moment)
        if self._next_expiry is None or now_ticks < self._next_expiry:
            return
        self._next_expiry = None
        for raw in list(self._items.values()):
            expires_at = self._expires_at(raw)
            if expires_at is not None and expires_at <= now_ticks:
                self._commit(writes.expired(raw, moment), moment)
            else:
                self._note_expiry(raw)


def _merge(target: dict[str, Any], changes: Mapping[str, object]) -> None:
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
