"""Schema versions: an ordered list of migrations, applied at open in the caller's transaction.

The database records every version applied in ``schema_version`` (one row each, with when). At
open, the store runs, in one write transaction, every migration newer than the highest recorded
version; a database whose version is newer than this code knows is refused, never touched.
On Postgres the store takes an advisory lock first, so replicas that start together migrate one
after the other (``postgres.lock_for_migration``).

To change the schema: append a function to ``MIGRATIONS`` (never edit a released one) and
change ``schema.py`` to match. Once a table changes, the earlier migrations that build it must
spell out their own table definitions instead of using ``schema.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from connector.errors import StateError
from connector.state import schema

Migration = Callable[[sa.Connection], None]


def _v1_initial_tables(conn: sa.Connection) -> None:
    # checkfirst=False: a table of that name that is not ours makes the open fail, loudly
    schema.metadata.create_all(
        conn,
        tables=[schema.cursors, schema.links, schema.dead_letters, schema.runs],
        checkfirst=False,
    )


def _v2_leases(conn: sa.Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.leases], checkfirst=False)


MIGRATIONS: tuple[Migration, ...] = (_v1_initial_tables, _v2_leases)
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: sa.Connection) -> int:
    """The highest version applied, 0 for a database that has none."""
    return conn.scalar(sa.select(sa.func.max(schema.schema_version.c.version))) or 0


def migrate(conn: sa.Connection, *, now_micros: int, where: str) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; return the version it had before."""
    schema.schema_version.create(conn, checkfirst=True)
    found = current_version(conn)
    if found > SCHEMA_VERSION:
        raise StateError(
            f"state database {where} has schema version {found}, newer than this version of "
            f"referral-sync knows ({SCHEMA_VERSION}): upgrade referral-sync, or point it at "
            "another database"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version - 1](conn)
        conn.execute(schema.schema_version.insert().values(version=version, applied_at=now_micros))
    return found
