"""The state store in a SQL database, on SQLAlchemy Core: SQLite by default, Postgres for HA.

Every method is one transaction. Whatever goes wrong underneath (a driver error, a constraint,
a full disk, a file that is not a database) comes out as :class:`~connector.errors.StateError`
naming the database, with the driver's message but never the statement's parameters (they may
hold customer data). Upserts are an UPDATE, then an INSERT when nothing matched: plain SQL that
every dialect speaks; on SQLite writes take the lock first (``BEGIN IMMEDIATE``), so the pair
cannot race another writer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connector.clock import SystemClock
from connector.errors import StateError
from connector.ports import Clock, DeadLetter, DeadLetterEntry, Direction, Link, RunRecord
from connector.state import migrations, sqlite
from connector.state import schema as db
from connector.state._codec import (
    check_limit,
    copy_errors,
    dump_json,
    from_micros,
    load_json,
    referral_key,
    to_micros,
)


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


class SqlStateStore:
    """A :class:`~connector.ports.StateStore` in the database behind ``engine``.

    Build it with :meth:`open` (or ``connector.state.open_state_store``), which prepares the
    file, sets SQLite up and migrates the schema; the store owns the engine and disposes of it
    in :meth:`close`.
    """

    def __init__(self, engine: sa.Engine, *, where: str, clock: Clock | None = None) -> None:
        self._engine: sa.Engine | None = engine
        self.where = where  # the database file, or the URL without its password
        self._clock: Clock = clock or SystemClock()

    @classmethod
    def open(
        cls, url: str | sa.URL, *, create_dirs: bool = True, clock: Clock | None = None
    ) -> SqlStateStore:
        """Open (creating and migrating as needed) the database at ``url``."""
        try:
            parsed = sa.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
            shown = "(hidden)" if isinstance(url, sa.URL) else _without_password(url)
            # not {exc}: SQLAlchemy's message repeats the whole URL, password included
            detail = "a port must be a number" if isinstance(exc, ValueError) else "cannot parse it"
            raise StateError(f"state URL {shown!r} is not a database URL ({detail})") from None
        where = parsed.render_as_string(hide_password=True)
        try:
            if parsed.get_backend_name() == "sqlite":
                path = sqlite.database_path(parsed)
                where = str(path)
                sqlite.create_private_file(path, create_dirs=create_dirs)
                engine = sqlite.sqlite_engine(parsed, path)
            else:
                engine = sa.create_engine(parsed)
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
        key = (db.cursors.c.connection == connection, db.cursors.c.stream == stream)
        if conn.execute(db.cursors.update().where(*key).values(values)).rowcount == 0:
            conn.execute(db.cursors.insert().values(connection=connection, stream=stream, **values))

    # -- links -----------------------------------------------------------------------------

    def get_link(self, connection: str, referral_id: str) -> Link | None:
        query = sa.select(db.links).where(
            db.links.c.connection == connection,
            db.links.c.referral_key == referral_key(referral_id),
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _link(row)

    def get_link_by_crm_id(self, connection: str, crm_id: str) -> Link | None:
        query = sa.select(db.links).where(
            db.links.c.connection == connection, db.links.c.crm_id == crm_id
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _link(row)

    def put_link(self, connection: str, link: Link) -> None:
        with self._write() as conn:
            self._put_link(conn, connection, link)

    def _put_link(self, conn: sa.Connection, connection: str, link: Link) -> None:
        key = referral_key(link.referral_id)
        values = {
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
        where = (db.links.c.connection == connection, db.links.c.referral_key == key)
        if conn.execute(db.links.update().where(*where).values(values)).rowcount == 0:
            conn.execute(
                db.links.insert().values(connection=connection, referral_key=key, **values)
            )

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
            for link in links:
                self._put_link(conn, connection, link)
            for entry in dead_letters:
                self._add_dead_letter(conn, connection, entry)
            now = self._now()
            for direction, record_id in resolved:
                conn.execute(
                    db.dead_letters.update()
                    .where(*_open_record(connection, Direction(direction), record_id))
                    .values(resolved_at=now)
                )
            self._set_cursor(conn, connection, stream, cursor)

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
        direction = Direction(entry.direction)
        existing = None
        if entry.record_id is not None:
            query = sa.select(db.dead_letters).where(
                *_open_record(connection, direction, entry.record_id)
            )
            existing = conn.execute(query).first()
        if existing is not None:
            conn.execute(
                db.dead_letters.update()
                .where(db.dead_letters.c.id == existing.id)
                .values(
                    reason=entry.reason,
                    payload=payload,
                    attempts=existing.attempts + 1,
                    last_seen=max(existing.last_seen, seen),
                )
            )
            dead_letter_id: int = existing.id
        else:
            inserted = conn.execute(
                db.dead_letters.insert().values(
                    connection=connection,
                    direction=direction.value,
                    record_id=entry.record_id,
                    reason=entry.reason,
                    payload=payload,
                    attempts=1,
                    first_seen=seen,
                    last_seen=seen,
                )
            )
            dead_letter_id = _inserted_id(inserted)
        row = conn.execute(
            sa.select(db.dead_letters).where(db.dead_letters.c.id == dead_letter_id)
        ).one()
        return _dead_letter(row)

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

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()


# -- rows ⇄ records ------------------------------------------------------------------------


def _open_record(connection: str, direction: Direction, record_id: str) -> tuple[Any, ...]:
    return (
        db.dead_letters.c.connection == connection,
        db.dead_letters.c.direction == direction.value,
        db.dead_letters.c.record_id == record_id,
        db.dead_letters.c.resolved_at.is_(None),
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
