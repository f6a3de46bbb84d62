"""What only the SQLite store promises: a private file, WAL, durability, schema versions, errors.

The behaviour every store shares is in tests/contract/test_state_store_contract.py.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.errors import StateError
from connector.ports import DeadLetterEntry, Direction, Link
from connector.state import SqlStateStore, migrations, sqlite

T0 = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw(path: Path) -> closing[sqlite3.Connection]:
    """A plain sqlite3 connection: another process's view of the file."""
    return closing(sqlite3.connect(path, isolation_level=None))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask there is, so only the store's own care keeps the files private."""
    with umask(0):
        yield


# -- permissions ---------------------------------------------------------------------------------


# 0: nothing masked, so nothing but the store keeps others out; 0o277: even the owner's write
# bit masked, so the store must set the modes, not only ask for them
@pytest.mark.parametrize("mask", [0, 0o277], ids=["umask-000", "umask-277"])
def test_the_file_and_the_folders_created_for_it_are_owner_only(tmp_path: Path, mask: int):
    path = tmp_path / "state" / "nested" / "state.db"
    with umask(mask):
        store = SqlStateStore.open(url(path))
    try:
        store.set_cursor("acme", "referrals", {"since": 1})

        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
        assert mode(path.parent.parent) == 0o700
        sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(p.exists() for p in sidecars)  # open in WAL mode: both exist now
        assert [mode(p) for p in sidecars] == [0o600, 0o600]
    finally:
        store.close()


@pytest.mark.usefixtures("open_umask")
def test_wal_and_shm_files_left_readable_by_others_are_tightened(db: Path):
    SqlStateStore.open(url(db)).close()
    with raw(db) as other:  # a connection that keeps -wal and -shm in place while we look
        other.execute("SELECT 1 FROM cursors").fetchall()
        for suffix in ("-wal", "-shm"):
            db.with_name(db.name + suffix).chmod(0o644)

        SqlStateStore.open(url(db)).close()

        assert [mode(db.with_name(db.name + s)) for s in ("-wal", "-shm")] == [0o600, 0o600]


def test_an_existing_folder_is_left_as_it_is(tmp_path: Path):
    tmp_path.chmod(0o755)
    SqlStateStore.open(url(tmp_path / "state.db")).close()

    assert mode(tmp_path) == 0o755


def test_without_create_dirs_a_missing_folder_is_a_state_error(tmp_path: Path):
    path = tmp_path / "missing" / "state.db"

    with pytest.raises(StateError, match="does not exist"):
        SqlStateStore.open(url(path), create_dirs=False)
    assert not path.parent.exists()


# -- SQLite settings -----------------------------------------------------------------------------


def test_the_database_is_in_wal_mode(db: Path):
    SqlStateStore.open(url(db)).close()

    with raw(db) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_every_connection_syncs_fully_enforces_foreign_keys_and_waits_for_locks(db: Path):
    sqlite.create_private_file(db, create_dirs=False)
    engine = sqlite.sqlite_engine(sa.make_url(url(db)), db)
    try:
        with engine.connect() as conn:
            pragma = conn.exec_driver_sql
            assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == sqlite.BUSY_TIMEOUT_S * 1000
    finally:
        engine.dispose()


def test_a_writer_commits_while_another_connection_is_reading(db: Path):
    store = SqlStateStore.open(url(db))
    try:
        store.set_cursor("acme", "referrals", {"v": 1})
        with raw(db) as reader:
            reader.execute("BEGIN")
            before = reader.execute("SELECT value FROM cursors").fetchall()

            store.set_cursor("acme", "referrals", {"v": 2})  # a rollback journal would block here

            assert reader.execute("SELECT value FROM cursors").fetchall() == before
            reader.execute("COMMIT")
            assert reader.execute("SELECT value FROM cursors").fetchall() == [('{"v":2}',)]
    finally:
        store.close()


# -- durability ----------------------------------------------------------------------------------


def test_everything_written_is_there_after_close_and_reopen(db: Path):
    store = SqlStateStore.open(url(db))
    store.record_page(
        "acme",
        "referrals",
        links=[Link(referral_id="REF-1", crm_id="006A", etag='"3"')],
        dead_letters=[
            DeadLetterEntry(
                direction=Direction.INBOUND,
                record_id="REF-2",
                reason="stage: unknown",
                payload={"stage": "Nope"},
                seen_at=T0,
            )
        ],
        cursor={"since": "t1"},
    )
    run_id = store.start_run("acme", Direction.INBOUND, T0)
    store.finish_run(run_id, T0, outcome="partial", counts={"created": 1})
    store.close()

    again = SqlStateStore.open(url(db))
    try:
        assert again.get_cursor("acme", "referrals") == {"since": "t1"}
        link = again.get_link("acme", "ref-1")
        assert link is not None
        assert (link.crm_id, link.etag) == ("006A", '"3"')
        [dead] = again.dead_letters("acme")
        assert (dead.record_id, dead.payload, dead.first_seen) == ("REF-2", {"stage": "Nope"}, T0)
        [run] = again.recent_runs("acme")
        assert (run.id, run.outcome, run.counts) == (run_id, "partial", {"created": 1})
    finally:
        again.close()


def test_a_page_survives_a_process_killed_right_after_recording_it(db: Path):
    script = textwrap.dedent(
        f"""
        import os
        from connector.ports import Link
        from connector.state import SqlStateStore
        store = SqlStateStore.open({url(db)!r})
        store.record_page("acme", "referrals", links=[Link(referral_id="REF-1", crm_id="006A")],
                          dead_letters=[], cursor={{"since": "t1"}})
        os._exit(9)  # no close, no checkpoint, no clean-up
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)  # noqa: S603
    assert result.returncode == 9

    store = SqlStateStore.open(url(db))
    try:
        assert store.get_cursor("acme", "referrals") == {"since": "t1"}
        assert store.get_link("acme", "REF-1") is not None
    finally:
        store.close()


def test_two_stores_on_one_file_see_each_others_writes(db: Path):
    first, second = SqlStateStore.open(url(db)), SqlStateStore.open(url(db))
    try:
        first.put_link("acme", Link(referral_id="REF-1", crm_id="006A"))
        second.set_cursor("acme", "referrals", {"since": "t1"})

        assert second.get_link("acme", "REF-1") is not None
        assert first.get_cursor("acme", "referrals") == {"since": "t1"}
    finally:
        first.close()
        second.close()


# -- schema versions -----------------------------------------------------------------------------


def versions(db: Path) -> list[tuple[int, int]]:
    with raw(db) as conn:
        return conn.execute("SELECT version, applied_at FROM schema_version").fetchall()


def test_the_schema_version_is_recorded_once(db: Path):
    SqlStateStore.open(url(db)).close()
    recorded = versions(db)
    SqlStateStore.open(url(db)).close()

    assert [v for v, _ in recorded] == list(range(1, migrations.SCHEMA_VERSION + 1))
    assert versions(db) == recorded  # reopening migrates nothing again


def test_a_database_from_a_newer_version_is_refused_and_left_alone(db: Path):
    SqlStateStore.open(url(db)).close()
    newer = migrations.SCHEMA_VERSION + 1
    with raw(db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (newer,))
    before = versions(db)

    with pytest.raises(StateError, match=f"schema version {newer}, newer") as refused:
        SqlStateStore.open(url(db))

    assert str(db) in str(refused.value)
    assert versions(db) == before


def test_a_database_with_a_foreign_table_of_our_name_is_refused_and_left_alone(db: Path):
    with raw(db) as conn:
        conn.execute("CREATE TABLE runs (something_else TEXT)")

    with pytest.raises(StateError, match=str(db)):
        SqlStateStore.open(url(db))

    with raw(db) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("runs",)]  # the half-done migration was rolled back


def test_a_file_that_is_not_a_database_is_a_state_error_naming_it(db: Path):
    db.write_bytes(b"this is not SQLite\n" * 200)

    with pytest.raises(StateError, match="not a database") as refused:
        SqlStateStore.open(url(db))

    assert str(db) in str(refused.value)


def test_a_directory_in_place_of_the_file_is_a_state_error_naming_it(db: Path):
    db.mkdir()

    with pytest.raises(StateError) as refused:
        SqlStateStore.open(url(db))

    assert str(db) in str(refused.value)


# -- what is stored, and what errors say ---------------------------------------------------------


def test_datetimes_are_stored_as_utc_microseconds_since_the_epoch(db: Path):
    store = SqlStateStore.open(url(db))
    try:
        store.start_run("acme", Direction.INBOUND, T0)
    finally:
        store.close()

    with raw(db) as conn:
        assert conn.execute("SELECT started_at FROM runs").fetchone() == (
            int(T0.timestamp()) * 1_000_000 + T0.microsecond,
        )


def test_the_database_itself_allows_one_open_dead_letter_per_record(db: Path):
    SqlStateStore.open(url(db)).close()
    row = "INSERT INTO dead_letters (connection, direction, record_id, reason, payload, "
    row += "attempts, first_seen, last_seen, resolved_at) VALUES ('acme', 'inbound', ?, 'r', "
    row += "'{}', 1, 0, 0, ?)"
    with raw(db) as conn:
        conn.execute(row, ("REF-1", 5))  # resolved
        conn.execute(row, ("REF-1", None))
        conn.execute(row, (None, None))
        conn.execute(row, (None, None))
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(row, ("REF-1", None))


def test_a_database_error_names_the_file_but_never_the_values_written(db: Path):
    store = SqlStateStore.open(url(db))
    try:
        store.put_link("acme", Link(referral_id="REF-1", crm_id="006A"))
        with pytest.raises(StateError) as refused:
            store.put_link("acme", Link(referral_id="REF-2", crm_id="006A", etag="secret-etag"))
    finally:
        store.close()

    message = str(refused.value)
    assert str(db) in message
    assert "UNIQUE" in message
    assert "secret-etag" not in message
    assert "sqlalche.me" not in message
    # the driver's error, not SQLAlchemy's wrapper, which would print the parameters in a traceback
    assert isinstance(refused.value.__cause__, sqlite3.IntegrityError)
