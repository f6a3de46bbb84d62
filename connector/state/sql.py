"""The state store in a SQL database, on SQLAlchemy Core: SQLite by default, Postgres for HA.

The same code runs on both (``sqlite.py`` and ``postgres.py`` set each one's engine up); any other
database is refused at open. Every method is one transaction. Whatever goes wrong underneath (a
driver error, a constraint, a full disk, a file that is not a database, a server gone away) comes
out as :class:`~connector.errors.StateError` naming the database (a URL without its password),
with the driver's message but never the statement's parameters (they may hold customer data;
both engines are made with ``hide_parameters``, so not even SQLAlchemy's wrapper, left as the
error's context, shows them).

Concurrency: every write that another writer could race is one ``INSERT ... ON CONFLICT DO
UPDATE`` (cursors, links, dead letters, leases) or one conditional ``UPDATE``, which both
databases make atomic; counters are bumped in SQL (``attempts + 1``), never read and written
back. On SQLite writes also take the lock first (``BEGIN IMMEDIATE``); on Postgres they run at
READ COMMITTED, where those statements need nothing stronger. Leases are stamped by the lease
clock: the server's on Postgres, the store's on SQLite (see ``StateStore.acquire_lease``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from connector.clock import SystemClock
from connector.errors import StateError
from connector.ports import Clock, DeadLetter, DeadLetterEntry, Direction, Link, RunRecord
from connector.state import migrations, postgres, sqlite
from connector.state import schema as db
from connector.state._codec import (
    check_limit,
    copy_errors,
    dump_json,
    from_micros,
    lease_micros,
    load_json,
    referral_key,
    to_micros,
)

IN_LIST_CHUNK = 500
"""Ids per ``IN (…)`` of a batch read: under SQLite's 999 bound parameters (before 3.32)."""


def _without_password(url: str) -> str:
    """A URL that could not be parsed, with anything between ``:`` and ``@`` blanked out."""
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not separator or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def _cause(exc: BaseException) -> BaseException:
    """The driver's own exception where there is one: SQLAlchemy's wrapper prints the statement's
    parameters (customer data, perhaps) in every traceback that shows it."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def _describe(exc: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's statement and parameters."""
    shown = _cause(exc)
    return f"{type(shown).__name__}: {shown}"


# the databases the store runs on, and the INSERT of each that speaks ON CONFLICT
_Insert = sqlite_dialect.Insert | postgresql_dialect.Insert
_INSERTS: dict[str, Callable[[sa.Table], _Insert]] = {
    "sqlite": sqlite_dialect.insert,
    "postgresql": postgresql_dialect.insert,
}


def _insert(conn: sa.Connection, table: sa.Table) -> _Insert:
    return _INSERTS[conn.dialect.name](table)


class SqlStateStore:
    """A :class:`~connector.ports.StateStore` in the database behind ``engine``.

    Build it with :meth:`open` (or ``connector.state.open_state_store``), which prepares the
    file, sets SQLite or Postgres up and migrates the schema; the store owns the engine and
    disposes of it in :meth:`close`.
    """

    def __init__(self, engine: sa.Engine, *, where: str, clock: Clock | None = None) -> None:
        self._engine: sa.Engine | None = engine
        self.where = where  # the database file, or the URL without its password
        self._clock: Clock = clock or SystemClock()

    @classmethod
    def open(
        cls,
        url: str | sa.URL,
        *,
        create_dirs: bool = True,
        clock: Clock | None = None,
        password: str | None = None,
    ) -> SqlStateStore:
        """Open (creating and migrating as needed) the database at ``url``.

        ``password``, when given, replaces the URL's own (so it can come from a secret, not
        from the configuration's text).
        """
        try:
            parsed = sa.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
            shown = "(hidden)" if isinstance(url, sa.URL) else _without_password(url)
            # not {exc}: SQLAlchemy's message repeats the whole URL, password included
            detail = "a port must be a number" if isinstance(exc, ValueError) else "cannot parse it"
            raise StateError(f"state URL {shown!r} is not a database URL ({detail})") from None
        if password is not None:
            parsed = parsed.set(password=password)
        where = parsed.render_as_string(hide_password=True)
        backend = parsed.get_backend_name()
        if backend not in _INSERTS:
            raise StateError(
                f"state URL {where!r}: unknown database scheme {backend!r}; the state store runs "
                "on SQLite (sqlite:///path/to/state.db) or PostgreSQL "
                "(postgresql://user@host/database)"
            )
        try:
            if backend == "sqlite":
                path = sqlite.database_path(parsed)
                where = str(path)
                sqlite.create_private_file(path, create_dirs=create_dirs)
                engine = sqlite.sqlite_engine(parsed, path)
            else:
                engine = postgres.postgres_engine(postgres.postgres_url(parsed))
        except sa.exc.NoSuchModuleError as exc:
            raise StateError(f"state URL {where!r}: unknown database scheme ({exc})") from exc
        except ImportError as exc:
            raise StateError(f"state URL {where!r}: its driver is not installed ({exc})") from exc
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise StateError(f"cannot open state database {where}: {_describe(exc)}") from _cause(
                exc
            )
        store = cls(engine, where=where, clock=clock)
        try:
            store._migrate()
        except BaseException:
            store.close()
            raise
        return store

    def _migrate(self) -> None:
        now = to_micros(self._clock.now(), "now")
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                postgres.lock_for_migration(conn)
            migrations.migrate(conn, now_micros=now, where=self.where)

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[sa.Engine]:
        if self._engine is None:
            raise StateError(f"the state store {self.where} is closed")
        try:
            yield self._engine
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise StateError(f"state database {self.where}: {_describe(exc)}") from _cause(exc)

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._guard() as engine, engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._guard() as engine, engine.connect() as conn:
            conn.execution_options(**{sqlite.WRITE: True})
            with conn.begin():
                yield conn

    def _now(self) -> int:
        return to_micros(self._clock.now(), "now")

    def _lease_now(self, conn: sa.Connection) -> int:
        """The lease clock: the server's on Postgres (one clock for every replica), else ours."""
        if conn.dialect.name == "postgresql":
            return postgres.now_micros(conn)
        return self._now()

    # -- cursors ---------------------------------------------------------------------------

    def get_cursor(self, connection: str, stream: str) -> Mapping[str, Any] | None:
        with self._read() as conn:
            value = conn.scalar(
                sa.select(db.cursors.c.value).where(
                    db.cursors.c.connection == connection, db.cursors.c.stream == stream
                )
            )
        if value is None:
            return None
        loaded: dict[str, Any] = load_json(value, f"cursor {connection}/{stream}")
        return loaded

    def set_cursor(self, connection: str, stream: str, cursor: Mapping[str, Any]) -> None:
        with self._write() as conn:
            self._set_cursor(conn, connection, stream, cursor)

    def _set_cursor(
        self, conn: sa.Connection, connection: str, stream: str, cursor: Mapping[str, Any]
    ) -> None:
        if not isinstance(cursor, Mapping):
            raise StateError(f"cursor {connection}/{stream} must be a mapping")
        values = {
            "value": dump_json(dict(cursor), f"cursor {connection}/{stream}"),
            "updated_at": self._now(),
        }
        upsert = _insert(conn, db.cursors).values(connection=connection, stream=stream, **values)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[db.cursors.c.connection, db.cursors.c.stream], set_=values
            )
        )

    # -- links -----------------------------------------------------------------------------

    def get_link(self, connection: str, referral_id: str) -> Link | None:
        query = sa.select(db.links).where(
            db.links.c.connection == connection,
            db.links.c.referral_key == referral_key(referral_id),
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _link(row)

    def get_links(self, connection: str, referral_ids: Iterable[str]) -> dict[str, Link]:
        keys = sorted({referral_key(i) for i in referral_ids})
        found: dict[str, Link] = {}
        with self._read() as conn:
            for start in range(0, len(keys), IN_LIST_CHUNK):
                query = sa.select(db.links).where(
                    db.links.c.connection == connection,
                    db.links.c.referral_key.in_(keys[start : start + IN_LIST_CHUNK]),
                )
                for row in conn.execute(query):
                    found[row.referral_key] = _link(row)
        return found

    def get_link_by_crm_id(self, connection: str, crm_id: str) -> Link | None:
        query = sa.select(db.links).where(
            db.links.c.connection == connection, db.links.c.crm_id == crm_id
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _link(row)

    def put_link(self, connection: str, link: Link) -> None:
        with self._write() as conn:
            self._put_links(conn, connection, [link])

    def _put_links(self, conn: sa.Connection, connection: str, links: Sequence[Link]) -> None:
        """Insert or replace each link, in order, through one statement run for every row
        (``executemany``): compiled once, not once per link."""
        if not links:
            return
        rows = [self._link_values(connection, link) for link in links]
        # a crm_id linked to another referral violates the other unique index: an error, as it
        # should be (ON CONFLICT names only the key it resolves)
        conn.execute(_link_upsert(conn), rows)

    def _link_values(self, connection: str, link: Link) -> dict[str, Any]:
        return {
            "connection": connection,
            "referral_key": referral_key(link.referral_id),
            "referral_id": link.referral_id,
            "crm_id": link.crm_id,
            "engagement_id": link.engagement_id,
            "inbound_fingerprint": link.inbound_fingerprint,
            "outbound_fingerprint": link.outbound_fingerprint,
            "etag": link.etag,
            "crm_id_written": bool(link.crm_id_written),
            "crm_open": None if link.crm_open is None else bool(link.crm_open),
            "updated_at": to_micros(link.updated_at or self._clock.now(), "link updated_at"),
        }

    def links_awaiting_crm_id(self, connection: str, limit: int = 100) -> list[Link]:
        check_limit(limit)
        query = (
            sa.select(db.links)
            .where(
                db.links.c.connection == connection,
                db.links.c.crm_id.is_not(None),
                db.links.c.crm_id_written.is_(False),
            )
            .order_by(db.links.c.updated_at, db.links.c.referral_key)
            .limit(limit)
        )
        with self._read() as conn:
            return [_link(row) for row in conn.execute(query)]

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
        with self._write() as conn:
            self._put_links(conn, connection, links)
            for entry in dead_letters:
                self._add_dead_letter(conn, connection, entry)
            self._resolve(conn, connection, resolved)
            self._set_cursor(conn, connection, stream, cursor)

    def _resolve(
        self, conn: sa.Connection, connection: str, resolved: Sequence[tuple[Direction, str]]
    ) -> None:
        """Resolve the open dead letters of these records: one statement per direction and
        chunk (a page resolves every record it handled, most of them with none open)."""
        now = self._now()
        by_direction: dict[Direction, list[str]] = {}
        for direction, record_id in resolved:
            by_direction.setdefault(Direction(direction), []).append(record_id)
        table = db.dead_letters
        for direction, ids in by_direction.items():
            for start in range(0, len(ids), IN_LIST_CHUNK):
                chunk = ids[start : start + IN_LIST_CHUNK]
                conn.execute(
                    table.update()
                    .where(
                        table.c.connection == connection,
                        table.c.direction == direction.value,
                        table.c.record_id.in_(chunk),
                        table.c.resolved_at.is_(None),
                    )
                    .values(resolved_at=now)
                )

    # -- dead letters ----------------------------------------------------------------------

    def add_dead_letter(self, connection: str, entry: DeadLetterEntry) -> DeadLetter:
        with self._write() as conn:
            return self._add_dead_letter(conn, connection, entry)

    def _add_dead_letter(
        self, conn: sa.Connection, connection: str, entry: DeadLetterEntry
    ) -> DeadLetter:
        seen = to_micros(entry.seen_at, "dead letter seen_at")
        payload = dump_json(
            _as_dict(entry.payload, "dead letter payload"),
            f"dead letter payload for {entry.record_id!r}",
        )
        table = db.dead_letters
        upsert = _insert(conn, table).values(
            connection=connection,
            direction=Direction(entry.direction).value,
            record_id=entry.record_id,
            reason=entry.reason,
            payload=payload,
            attempts=1,
            first_seen=seen,
            last_seen=seen,
        )
        # the record's open row, if it has one (the partial unique index), takes the new reason
        # and payload and one more attempt; a row without record_id never conflicts
        new = upsert.excluded
        upsert = upsert.on_conflict_do_update(
            index_elements=[table.c.connection, table.c.direction, table.c.record_id],
            index_where=db.open_dead_letter,
            set_={
                "reason": new.reason,
                "payload": new.payload,
                "attempts": table.c.attempts + 1,
                "last_seen": sa.case(
                    (new.last_seen > table.c.last_seen, new.last_seen), else_=table.c.last_seen
                ),
            },
        )
        return _dead_letter(conn.execute(upsert.returning(*table.c)).one())

    def dead_letters(
        self, connection: str | None = None, *, include_resolved: bool = False
    ) -> list[DeadLetter]:
        query = sa.select(db.dead_letters).order_by(
            db.dead_letters.c.first_seen, db.dead_letters.c.id
        )
        if connection is not None:
            query = query.where(db.dead_letters.c.connection == connection)
        if not include_resolved:
            query = query.where(db.dead_letters.c.resolved_at.is_(None))
        with self._read() as conn:
            return [_dead_letter(row) for row in conn.execute(query)]

    def get_dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        query = sa.select(db.dead_letters).where(db.dead_letters.c.id == dead_letter_id)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _dead_letter(row)

    def resolve_dead_letter(self, dead_letter_id: int, at: datetime) -> None:
        resolved_at = to_micros(at, "resolved_at")
        with self._write() as conn:
            found = conn.scalar(
                sa.select(db.dead_letters.c.id).where(db.dead_letters.c.id == dead_letter_id)
            )
            if found is None:
                raise StateError(f"there is no dead letter {dead_letter_id}")
            conn.execute(
                db.dead_letters.update()
                .where(
                    db.dead_letters.c.id == dead_letter_id, db.dead_letters.c.resolved_at.is_(None)
                )
                .values(resolved_at=resolved_at)
            )

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, connection: str, direction: Direction, at: datetime) -> int:
        started = to_micros(at, "run started_at")
        with self._write() as conn:
            inserted = conn.execute(
                db.runs.insert().values(
                    connection=connection,
                    direction=Direction(direction).value,
                    started_at=started,
                    counts="{}",
                    errors="[]",
                )
            )
            return _inserted_id(inserted)

    def finish_run(
        self,
        run_id: int,
        at: datetime,
        *,
        outcome: str,
        counts: Mapping[str, int],
        errors: Sequence[str] = (),
    ) -> None:
        values = {
            "finished_at": to_micros(at, "run finished_at"),
            "outcome": outcome,
            "counts": dump_json(_as_dict(counts, "run counts"), f"counts of run {run_id}"),
            "errors": dump_json(list(copy_errors(errors, f"errors of run {run_id}")), "errors"),
        }
        with self._write() as conn:
            if (
                conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(values)).rowcount
                == 0
            ):
                raise StateError(f"there is no run {run_id}")

    def recent_runs(self, connection: str | None = None, limit: int = 20) -> list[RunRecord]:
        check_limit(limit)
        query = (
            sa.select(db.runs)
            .order_by(db.runs.c.started_at.desc(), db.runs.c.id.desc())
            .limit(limit)
        )
        if connection is not None:
            query = query.where(db.runs.c.connection == connection)
        with self._read() as conn:
            return [_run(row) for row in conn.execute(query)]

    # -- leases ----------------------------------------------------------------------------

    def acquire_lease(self, connection: str, holder: str, ttl: timedelta) -> bool:
        ttl_micros = lease_micros(holder, ttl)
        table = db.leases
        with self._write() as conn:
            now = self._lease_now(conn)
            values = {"holder": holder, "expires_at": now + ttl_micros}
            upsert = _insert(conn, table).values(connection=connection, **values)
            upsert = upsert.on_conflict_do_update(
                index_elements=[table.c.connection],
                set_=values,
                where=sa.or_(table.c.holder == holder, table.c.expires_at <= now),
            )
            # no row comes back when the lease stands and is another's: nothing was written
            return conn.execute(upsert.returning(table.c.holder)).first() is not None

    def renew_lease(self, connection: str, holder: str, ttl: timedelta) -> bool:
        ttl_micros = lease_micros(holder, ttl)
        table = db.leases
        with self._write() as conn:
            now = self._lease_now(conn)
            renewed = conn.execute(
                table.update()
                .where(
                    table.c.connection == connection,
                    table.c.holder == holder,
                    table.c.expires_at > now,
                )
                .values(expires_at=now + ttl_micros)
            )
            return renewed.rowcount == 1

    def release_lease(self, connection: str, holder: str) -> None:
        table = db.leases
        with self._write() as conn:
            conn.execute(
                table.delete().where(table.c.connection == connection, table.c.holder == holder)
            )

    def lease_holder(self, connection: str) -> str | None:
        table = db.leases
        with self._read() as conn:
            now = self._lease_now(conn)
            holder: str | None = conn.scalar(
                sa.select(table.c.holder).where(
                    table.c.connection == connection, table.c.expires_at > now
                )
            )
            return holder

    def leases(self, prefix: str = "") -> dict[str, str]:
        table = db.leases
        with self._read() as conn:
            now = self._lease_now(conn)
            rows = conn.execute(
                sa.select(table.c.connection, table.c.holder)
                .where(table.c.expires_at > now)
                .order_by(table.c.connection)
            ).all()
        return {name: holder for name, holder in rows if name.startswith(prefix)}

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()


# -- rows ⇄ records ------------------------------------------------------------------------


_LINK_KEY = ("connection", "referral_key")


def _link_upsert(conn: sa.Connection) -> sa.Executable:
    """``INSERT … ON CONFLICT (connection, referral_key) DO UPDATE`` every other column from
    the row given."""
    insert = _insert(conn, db.links)
    changed = {c.name: insert.excluded[c.name] for c in db.links.c if c.name not in _LINK_KEY}
    return insert.on_conflict_do_update(
        index_elements=[db.links.c.connection, db.links.c.referral_key], set_=changed
    )


def _inserted_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise StateError("the database gave no id for the row it inserted")
    return int(key[0])


def _as_dict(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise StateError(f"{what} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


def _link(row: sa.Row[Any]) -> Link:
    return Link(
        referral_id=row.referral_id,
        crm_id=row.crm_id,
        engagement_id=row.engagement_id,
        inbound_fingerprint=row.inbound_fingerprint,
        outbound_fingerprint=row.outbound_fingerprint,
        etag=row.etag,
        crm_id_written=bool(row.crm_id_written),
        crm_open=None if row.crm_open is None else bool(row.crm_open),
        updated_at=from_micros(row.updated_at),
    )


def _dead_letter(row: sa.Row[Any]) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        connection=row.connection,
        direction=Direction(row.direction),
        record_id=row.record_id,
        reason=row.reason,
        payload=load_json(row.payload, f"payload of dead letter {row.id}"),
        attempts=row.attempts,
        first_seen=from_micros(row.first_seen),
        last_seen=from_micros(row.last_seen),
        resolved_at=_optional_datetime(row.resolved_at),
    )


def _run(row: sa.Row[Any]) -> RunRecord:
    return RunRecord(
        id=row.id,
        connection=row.connection,
        direction=Direction(row.direction),
        started_at=from_micros(row.started_at),
        finished_at=_optional_datetime(row.finished_at),
        outcome=row.outcome,
        counts=load_json(row.counts, f"counts of run {row.id}"),
        errors=tuple(load_json(row.errors, f"errors of run {row.id}")),
    )
