"""The state store in memory: real behaviour, nothing on disk; the tests' state store.

It keeps exactly what the SQL store keeps and fails where it fails: JSON goes through the same
encoder (so what cannot be stored in SQL cannot be stored here either, and a caller mutating a
mapping afterwards changes nothing stored), datetimes are normalised to UTC, a ``crm_id`` belongs
to one link per connection, and :meth:`record_page` is all or nothing (a snapshot is restored when
any part of the page fails). One lock makes every method atomic across threads. Leases run on
the store's clock; two daemons cannot share this store, so its lease only matters within one
process (and to the contract suite).

What it stores is never mutated in place, only replaced, so a snapshot is a shallow copy.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from connector.clock import SystemClock
from connector.errors import StateError
from connector.ports import Clock, DeadLetter, DeadLetterEntry, Direction, Link, RunRecord
from connector.state._codec import (
    check_limit,
    copy_errors,
    copy_mapping,
    lease_micros,
    referral_key,
    utc,
)

_Key = tuple[str, str]
_Lease = tuple[str, datetime]  # holder, expires at (on the store's clock)


@dataclasses.dataclass(slots=True)
class _Tables:
    cursors: dict[_Key, dict[str, Any]] = dataclasses.field(default_factory=dict)
    links: dict[_Key, Link] = dataclasses.field(default_factory=dict)
    dead_letters: dict[int, DeadLetter] = dataclasses.field(default_factory=dict)
    runs: dict[int, RunRecord] = dataclasses.field(default_factory=dict)
    leases: dict[str, _Lease] = dataclasses.field(default_factory=dict)
    last_dead_letter_id: int = 0
    last_run_id: int = 0

    def snapshot(self) -> _Tables:
        return _Tables(
            cursors=dict(self.cursors),
            links=dict(self.links),
            dead_letters=dict(self.dead_letters),
            runs=dict(self.runs),
            leases=dict(self.leases),
            last_dead_letter_id=self.last_dead_letter_id,
            last_run_id=self.last_run_id,
        )


class MemoryStateStore:
    """A :class:`~connector.ports.StateStore` held in dictionaries behind one lock."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._tables = _Tables()
        self._closed = False

    @contextmanager
    def _open(self) -> Iterator[_Tables]:
        with self._lock:
            if self._closed:
                raise StateError("the state store is closed")
            yield self._tables

    @contextmanager
    def _transaction(self) -> Iterator[_Tables]:
        """All or nothing: on any failure the tables are put back as they were."""
        with self._open() as tables:
            before = tables.snapshot()
            try:
                yield tables
            except BaseException:
                self._tables = before
                raise

    # -- cursors ---------------------------------------------------------------------------

    def get_cursor(self, connection: str, stream: str) -> Mapping[str, Any] | None:
        with self._open() as t:
            cursor = t.cursors.get((connection, stream))
            return None if cursor is None else copy_mapping(cursor, "cursor")

    def set_cursor(self, connection: str, stream: str, cursor: Mapping[str, Any]) -> None:
        with self._transaction() as t:
            self._set_cursor(t, connection, stream, cursor)

    @staticmethod
    def _set_cursor(t: _Tables, connection: str, stream: str, cursor: Mapping[str, Any]) -> None:
        t.cursors[(connection, stream)] = copy_mapping(cursor, f"cursor {connection}/{stream}")

    # -- links -----------------------------------------------------------------------------

    def get_link(self, connection: str, referral_id: str) -> Link | None:
        with self._open() as t:
            return t.links.get((connection, referral_key(referral_id)))

    def get_links(self, connection: str, referral_ids: Iterable[str]) -> dict[str, Link]:
        keys = {referral_key(i) for i in referral_ids}
        with self._open() as t:
            found = {k: t.links.get((connection, k)) for k in keys}
        return {k: link for k, link in found.items() if link is not None}

    def get_link_by_crm_id(self, connection: str, crm_id: str) -> Link | None:
        with self._open() as t:
            return next(
                (
                    link
                    for (conn, _), link in t.links.items()
                    if conn == connection and link.crm_id == crm_id
                ),
                None,
            )

    def put_link(self, connection: str, link: Link) -> None:
        with self._transaction() as t:
            self._put_link(t, connection, link)

    def _put_link(self, t: _Tables, connection: str, link: Link) -> None:
        key = (connection, referral_key(link.referral_id))
        if link.crm_id is not None:
            for other_key, other in t.links.items():
                if other_key != key and other_key[0] == connection and other.crm_id == link.crm_id:
                    raise StateError(
                        f"crm id {link.crm_id!r} is already linked to referral "
                        f"{other.referral_id!r} in connection {connection!r}"
                    )
        updated_at = utc(link.updated_at or self._clock.now(), "link updated_at")
        t.links[key] = dataclasses.replace(link, updated_at=updated_at)

    def links_awaiting_crm_id(self, connection: str, limit: int = 100) -> list[Link]:
        check_limit(limit)
        with self._open() as t:
            waiting = [
                (link.updated_at, key, link)
                for (conn, key), link in t.links.items()
                if conn == connection and link.crm_id is not None and not link.crm_id_written
            ]
        waiting.sort(key=lambda row: (row[0], row[1]))
        return [link for _, _, link in waiting[:limit]]

    # -- pages -----------------------------------------------------------------------------

    def record_page(
        self,
        connection: str,
        stream: str,
        *,
        links: Sequence[Link],
        dead_letters: Sequence[DeadLetterEntry],
        resolved: Sequence[tuple[Direction, str]] = (),
        cursor: Mapping[str, Any],
    ) -> None:
        with self._transaction() as t:
            for link in links:
                self._put_link(t, connection, link)
            for entry in dead_letters:
                self._add_dead_letter(t, connection, entry)
            now = utc(self._clock.now(), "now")
            for direction, record_id in resolved:
                found = self._unresolved(t, connection, direction, record_id)
                if found is not None:
                    t.dead_letters[found.id] = dataclasses.replace(found, resolved_at=now)
            self._set_cursor(t, connection, stream, cursor)

    # -- dead letters ----------------------------------------------------------------------

    def add_dead_letter(self, connection: str, entry: DeadLetterEntry) -> DeadLetter:
        with self._transaction() as t:
            return self._copy(self._add_dead_letter(t, connection, entry))

    @staticmethod
    def _unresolved(
        t: _Tables, connection: str, direction: Direction, record_id: str
    ) -> DeadLetter | None:
        return next(
            (
                dl
                for dl in t.dead_letters.values()
                if dl.resolved_at is None
                and (dl.connection, dl.direction, dl.record_id)
                == (connection, direction, record_id)
            ),
            None,
        )

    def _add_dead_letter(self, t: _Tables, connection: str, entry: DeadLetterEntry) -> DeadLetter:
        seen = utc(entry.seen_at, "dead letter seen_at")
        payload = copy_mapping(entry.payload, f"dead letter payload for {entry.record_id!r}")
        direction = Direction(entry.direction)
        existing = (
            None
            if entry.record_id is None
            else self._unresolved(t, connection, direction, entry.record_id)
        )
        if existing is not None:
            stored = dataclasses.replace(
                existing,
                reason=entry.reason,
                payload=payload,
                attempts=existing.attempts + 1,
                last_seen=max(existing.last_seen, seen),
            )
        else:
            t.last_dead_letter_id += 1
            stored = DeadLetter(
                id=t.last_dead_letter_id,
                connection=connection,
                direction=direction,
                record_id=entry.record_id,
                reason=entry.reason,
                payload=payload,
                attempts=1,
                first_seen=seen,
                last_seen=seen,
            )
        t.dead_letters[stored.id] = stored
        return stored

    @staticmethod
    def _copy(dead_letter: DeadLetter) -> DeadLetter:
        return dataclasses.replace(
            dead_letter, payload=copy_mapping(dead_letter.payload, "dead letter payload")
        )

    def dead_letters(
        self, connection: str | None = None, *, include_resolved: bool = False
    ) -> list[DeadLetter]:
        with self._open() as t:
            found = [
                dl
                for dl in t.dead_letters.values()
                if (connection is None or dl.connection == connection)
                and (include_resolved or dl.resolved_at is None)
            ]
            found.sort(key=lambda dl: (dl.first_seen, dl.id))
            return [self._copy(dl) for dl in found]

    def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        with self._open() as t:
            found = t.dead_letters.get(dead_letter_id)
            return None if found is None else self._copy(found)

    def resolve_dead_letter(self, dead_letter_id: int, at: datetime) -> None:
        with self._transaction() as t:
            found = t.dead_letters.get(dead_letter_id)
            if found is None:
                raise StateError(f"there is no dead letter {dead_letter_id}")
            if found.resolved_at is None:
                resolved_at = utc(at, "resolved_at")
                t.dead_letters[found.id] = dataclasses.replace(found, resolved_at=resolved_at)

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, connection: str, direction: Direction, at: datetime) -> int:
        with self._transaction() as t:
            started = utc(at, "run started_at")
            t.last_run_id += 1
            t.runs[t.last_run_id] = RunRecord(
                id=t.last_run_id,
                connection=connection,
                direction=Direction(direction),
                started_at=started,
            )
            return t.last_run_id

    def finish_run(
        self,
        run_id: int,
        at: datetime,
        *,
        outcome: str,
        counts: Mapping[str, int],
        errors: Sequence[str] = (),
    ) -> None:
        with self._transaction() as t:
            run = t.runs.get(run_id)
            if run is None:
                raise StateError(f"there is no run {run_id}")
            t.runs[run_id] = dataclasses.replace(
                run,
                finished_at=utc(at, "run finished_at"),
                outcome=outcome,
                counts=copy_mapping(counts, f"counts of run {run_id}"),
                errors=copy_errors(errors, f"errors of run {run_id}"),
            )

    def recent_runs(self, connection: str | None = None, limit: int = 20) -> list[RunRecord]:
        check_limit(limit)
        with self._open() as t:
            runs = [r for r in t.runs.values() if connection is None or r.connection == connection]
        runs.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        return [
            dataclasses.replace(r, counts=copy_mapping(r.counts, "run counts"))
            for r in runs[:limit]
        ]

    # -- leases --------------------------------------------------------------------------------

    def acquire_lease(self, connection: str, holder: str, ttl: timedelta) -> bool:
        lease_micros(holder, ttl)
        with self._transaction() as t:
            now = utc(self._clock.now(), "now")
            current = t.leases.get(connection)
            if current is not None and current[0] != holder and now < current[1]:
                return False
            t.leases[connection] = (holder, now + ttl)
            return True

    def renew_lease(self, connection: str, holder: str, ttl: timedelta) -> bool:
        lease_micros(holder, ttl)
        with self._transaction() as t:
            now = utc(self._clock.now(), "now")
            current = t.leases.get(connection)
            if current is None or current[0] != holder or now >= current[1]:
                return False
            t.leases[connection] = (holder, now + ttl)
            return True

    def release_lease(self, connection: str, holder: str) -> None:
        with self._transaction() as t:
            current = t.leases.get(connection)
            if current is not None and current[0] == holder:
                del t.leases[connection]

    def lease_holder(self, connection: str) -> str | None:
        with self._open() as t:
            current = t.leases.get(connection)
            if current is None or utc(self._clock.now(), "now") >= current[1]:
                return None
            return current[0]

    def leases(self, prefix: str = "") -> dict[str, str]:
        with self._open() as t:
            now = utc(self._clock.now(), "now")
            return {
                name: holder
                for name, (holder, expires) in sorted(t.leases.items())
                if name.startswith(prefix) and now < expires
            }

    def close(self) -> None:
        with self._lock:
            self._closed = True
