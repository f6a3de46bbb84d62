"""PostgreSQL as the state database, on psycopg 3: one database that several replicas share.

- **Driver.** ``postgresql://`` and ``postgresql+psycopg://`` both mean psycopg 3 (SQLAlchemy's
  own default for ``postgresql://`` is psycopg2, which we do not ship).
- **Connections.** The pool checks each connection as it takes it (``pool_pre_ping``): a server
  restart or a failover leaves every pooled connection dead, and the next call reconnects
  instead of halting the daemon. ``connect_timeout`` is :data:`CONNECT_TIMEOUT_S` unless the URL
  sets one, so an unreachable server fails the open instead of hanging it; a statement waits at
  most :data:`~connector.state.sqlite.BUSY_TIMEOUT_S` for a lock (``lock_timeout``), as on
  SQLite; ``application_name`` is ``referral-sync`` unless the URL names another.
- **Transactions.** READ COMMITTED, the server's default. A write that could race another
  replica is a single statement the server makes atomic (``INSERT ... ON CONFLICT DO UPDATE``,
  a counter bumped as ``attempts + 1``), so no read-then-write pair needs a stronger isolation.
  Migrations take a transaction-scoped advisory lock first (:data:`MIGRATION_LOCK`), so replicas
  that start together migrate one after the other; DDL is transactional, so a failed migration
  leaves nothing behind.
- **Schema.** The tables live in the connection's current schema (the first of its
  ``search_path``): ``?options=-csearch_path%3Dreferral_sync`` in the URL keeps them in a schema
  of their own, in a database shared with other programs.
- **Clock.** Leases are stamped by the server's clock (:func:`now_micros`): one clock for every
  replica, however far their own clocks drift apart (see ``StateStore.acquire_lease``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from connector.state.sqlite import BUSY_TIMEOUT_S

CONNECT_TIMEOUT_S = 10
APPLICATION_NAME = "referral-sync"
# pg_advisory_xact_lock's key for "migrating the schema": any 64-bit number no other program on
# the database uses; this one spells "rsmigrat" in ASCII.
MIGRATION_LOCK = 0x72736D6967726174


def postgres_url(url: sa.URL) -> sa.URL:
    """``url`` with psycopg 3 as its driver when it names none."""
    if url.drivername == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    return url


def postgres_engine(url: sa.URL) -> sa.Engine:
    """An engine on the database ``url`` names, set up as this module describes."""
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in url.query:
        connect_args["application_name"] = APPLICATION_NAME
    engine = sa.create_engine(
        url, connect_args=connect_args, pool_pre_ping=True, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # noqa: ANN401 -- DB-API
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        dbapi_connection.commit()  # a session setting, kept once its transaction commits

    return engine


def lock_for_migration(conn: sa.Connection) -> None:
    """Wait until no other replica is migrating this database; held until the commit."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))


def now_micros(conn: sa.Connection) -> int:
    """The server's clock, in microseconds since the Unix epoch (UTC)."""
    epoch = sa.extract("epoch", sa.func.clock_timestamp())
    query = sa.select(sa.cast(sa.func.floor(epoch * 1_000_000), sa.BigInteger))
    return int(conn.execute(query).scalar_one())
