"""What only the Postgres store promises: the server's clock for leases, replicas that start
together, a server that drops its connections, its schema, and errors that never show the password.

The behaviour every store shares is in test_state_store_contract.py; this runs on the same
server (``postgres`` in this folder's conftest: RS_TEST_POSTGRES_URL, else a private cluster).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa

from connector.errors import StateError
from connector.ports import Link
from connector.state import SqlStateStore, migrations, open_state_store
from contract.postgres_server import PostgresServer
from contract.state_harness import T0, ManualClock


@pytest.fixture
def schema_url(postgres: PostgresServer) -> Iterator[sa.URL]:
    with postgres.schema() as url:
        yield url


def _shown(error: BaseException) -> str:
    """What a traceback of ``error`` would print of it and of every exception chained to it (as
    cause or as context), without the source lines."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        exc = todo.pop()
        if exc is None or any(exc is s for s in seen):
            continue
        seen.append(exc)
        todo += [exc.__cause__, exc.__context__]
    return "\n".join(f"{type(e).__name__}: {e!s} {e.args!r}" for e in seen)


# -- leases --------------------------------------------------------------------------------------


def test_leases_run_on_the_servers_clock_however_far_apart_the_replicas_clocks_are(
    schema_url: sa.URL,
):
    behind = SqlStateStore.open(schema_url, clock=ManualClock(T0 - timedelta(days=365)))
    ahead = SqlStateStore.open(schema_url, clock=ManualClock(T0 + timedelta(days=365)))
    try:
        # on their own clocks, the lease taken behind would have expired long ago for the
        # replica ahead, and the one taken ahead would still hold a year from now
        assert behind.acquire_lease("acme", "daemon-behind", timedelta(minutes=10))
        assert ahead.acquire_lease("acme", "daemon-ahead", timedelta(minutes=10)) is False
        assert ahead.lease_holder("acme") == "daemon-behind"

        behind.release_lease("acme", "daemon-behind")
        assert ahead.acquire_lease("acme", "daemon-ahead", timedelta(milliseconds=200))
        assert behind.lease_holder("acme") == "daemon-ahead"
    finally:
        behind.close()
        ahead.close()


# -- opening -------------------------------------------------------------------------------------


def _versions(url: sa.URL) -> list[int]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(sa.text("SELECT version FROM schema_version ORDER BY 1")))
    finally:
        engine.dispose()


def test_replicas_that_open_a_new_database_at_once_migrate_it_once(schema_url: sa.URL):
    start = threading.Barrier(4)
    opened: list[SqlStateStore] = []
    failed: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            opened.append(SqlStateStore.open(schema_url))
        except BaseException as exc:  # noqa: BLE001 -- the test reports what any thread raised
            failed.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in opened:
        store.close()

    assert failed == []
    assert len(opened) == 4
    assert _versions(schema_url) == list(range(1, migrations.SCHEMA_VERSION + 1))


def test_the_tables_live_in_the_schema_the_url_names(postgres: PostgresServer, schema_url: sa.URL):
    SqlStateStore.open(schema_url).close()
    schema = str(schema_url.query["options"]).split("search_path=", 1)[1].split()[0]

    engine = sa.create_engine(postgres.url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT table_schema, count(*) FROM information_schema.tables "
                    "WHERE table_name IN ('cursors', 'links', 'dead_letters', 'runs', 'leases', "
                    "'schema_version') AND table_schema LIKE 'rs_test_%' "
                    "AND table_schema = :schema GROUP BY table_schema"
                ),
                {"schema": schema},
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in found] == [(schema, 6)]


def test_a_plain_postgresql_url_means_psycopg_3(schema_url: sa.URL):
    store = open_state_store(schema_url.set(drivername="postgresql").render_as_string(False))
    try:
        store.set_cursor("acme", "referrals", {"since": 1})
        assert store.get_cursor("acme", "referrals") == {"since": 1}
    finally:
        store.close()


def test_the_password_can_come_apart_from_the_url(schema_url: sa.URL):
    without = schema_url.set(password=None).render_as_string(hide_password=False)
    store = open_state_store(without, password=schema_url.password)
    store.close()


def test_the_store_reconnects_after_the_server_drops_its_connections(
    postgres: PostgresServer, schema_url: sa.URL
):
    name = f"rs-test-{uuid.uuid4().hex[:8]}"
    store = SqlStateStore.open(schema_url.update_query_dict({"application_name": name}))
    try:
        store.set_cursor("acme", "referrals", {"since": 1})
        assert postgres.terminate_connections(name) >= 1  # as a restart or a failover would

        assert store.get_cursor("acme", "referrals") == {"since": 1}
        store.set_cursor("acme", "referrals", {"since": 2})
        assert store.get_cursor("acme", "referrals") == {"since": 2}
    finally:
        store.close()


# -- errors --------------------------------------------------------------------------------------


def test_a_wrong_password_is_a_state_error_that_never_shows_it(postgres: PostgresServer):
    wrong = "not-the-Password-7f3a"
    url = postgres.url.set(password=wrong)

    with pytest.raises(StateError, match="password authentication failed") as refused:
        SqlStateStore.open(url.render_as_string(hide_password=False))

    assert wrong not in _shown(refused.value)
    assert "***" in str(refused.value)  # the URL is named, its password blanked out


def test_a_database_error_names_the_database_but_never_the_values_written(schema_url: sa.URL):
    store = SqlStateStore.open(schema_url)
    try:
        store.put_link("acme", Link(referral_id="REF-1", crm_id="006A"))
        with pytest.raises(StateError) as refused:
            store.put_link("acme", Link(referral_id="REF-2", crm_id="006A", etag="secret-etag"))
    finally:
        store.close()

    message = str(refused.value)
    assert str(schema_url.host or schema_url.query["host"]) in message.replace("%2F", "/")
    assert "duplicate key" in message
    assert "secret-etag" not in _shown(refused.value)
    assert "sqlalche.me" not in message
    assert isinstance(refused.value.__cause__, psycopg.errors.UniqueViolation)


def test_a_database_other_than_sqlite_or_postgres_is_refused_without_its_password():
    with pytest.raises(StateError, match="unknown database scheme") as refused:
        open_state_store("mysql://sync:hunter2@db.internal/state")

    assert "hunter2" not in _shown(refused.value)
