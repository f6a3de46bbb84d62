"""SQLite as the state database: a private file, WAL, full fsync, real transactions.

- **Permissions.** The database file is created ``0600`` (and each directory created for it
  ``0700``) *before* SQLite opens it, so it is never readable by others, not even for an
  instant. SQLite gives its ``-wal`` and ``-shm`` files the database file's permissions; each new
  connection also tightens them to ``0600`` in case they were left wider. The process umask is
  never changed: it is process-wide, and other threads create files too. An existing database
  file keeps the permissions its owner gave it.
- **Durability.** ``journal_mode=WAL`` (readers never block the writer, nor it them) and
  ``synchronous=FULL``: every commit is fsynced before ``record_page`` returns, so a power cut
  cannot take back a page whose cursor we already acted on. ``NORMAL`` would save one fsync per
  commit; we write a few transactions per cycle, and "nothing lost" is worth more than that.
- **Transactions.** pysqlite's own implicit BEGIN is switched off; every SQLAlchemy transaction
  emits ``BEGIN`` (reads) or ``BEGIN IMMEDIATE`` (writes, so a read-then-write never fails
  half-way on a lock another writer took), and waits up to :data:`BUSY_TIMEOUT_S` for a lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from connector.errors import StateError

BUSY_TIMEOUT_S = 10.0
WRITE = "referral_sync_write"  # the execution option that makes a transaction BEGIN IMMEDIATE
_FILE_MODE = 0o600
_DIR_MODE = 0o700


def database_path(url: sa.URL) -> Path:
    """The file a ``sqlite://`` URL names; StateError for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise StateError(
            f"state URL {url.render_as_string(hide_password=True)!r} does not name a database "
            "file: use memory:// for a state store that is not kept"
        )
    return Path(database)


def create_private_file(path: Path, *, create_dirs: bool) -> None:
    """Create ``path`` (and missing parents) owner-only, unless it exists already."""
    parent = path.parent
    if not parent.is_dir():
        if not create_dirs:
            raise StateError(f"the directory {parent} for the state database {path} does not exist")
        _create_private_dirs(parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
    path.chmod(_FILE_MODE)  # umask can only narrow the mode; make it exactly 0600


def _create_private_dirs(directory: Path) -> None:
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=_DIR_MODE)
        except FileExistsError:
            continue
        created.chmod(_DIR_MODE)


def _tighten_sidecars(path: Path) -> None:
    for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = sidecar.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            sidecar.chmod(mode & _FILE_MODE)


def _set_up(dbapi_connection: Any, path: Path) -> None:  # noqa: ANN401 -- a DB-API connection
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see _on_begin
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        (mode,) = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StateError(f"state database {path} cannot use WAL (journal mode {mode})")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()
    _tighten_sidecars(path)


def sqlite_engine(url: sa.URL, path: Path) -> sa.Engine:
    """An engine on the (already created) file ``path``, set up as this module describes."""
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # noqa: ANN401 -- DB-API
        try:
            _set_up(dbapi_connection, path)
        except BaseException:
            dbapi_connection.close()  # the pool does not close a connection its hook refused
            raise

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
