"""The state database's tables, in SQLAlchemy Core (no ORM), for SQLite and Postgres alike.

Conventions, the same in every table:

- datetimes are ``BigInteger`` microseconds since the Unix epoch, UTC (see ``_codec``): exact,
  sortable and free of any database's time-zone type;
- JSON (cursors, dead-letter payloads, run counts and errors) is ``Text`` written by our encoder,
  so what is stored does not depend on a dialect's JSON type;
- ``connection`` is the configured connection name; every query is scoped by it.

This module describes the *current* schema; ``migrations`` builds it version by version.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("connection", sa.String, primary_key=True),
    sa.Column("stream", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("connection", sa.String, primary_key=True),
    sa.Column("referral_key", sa.String, primary_key=True),  # referral_id, lower-cased
    sa.Column("referral_id", sa.String, nullable=False),  # as the caller last gave it
    sa.Column("crm_id", sa.String),
    sa.Column("engagement_id", sa.String),
    sa.Column("inbound_fingerprint", sa.String),
    sa.Column("outbound_fingerprint", sa.String),
    sa.Column("etag", sa.String),
    sa.Column("crm_id_written", sa.Boolean, nullable=False),
    sa.Column("crm_open", sa.Boolean),  # None: not known
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # one opportunity belongs to one referral (NULLs are distinct, so unlinked rows are fine)
    sa.Index(None, "connection", "crm_id", unique=True),
    sa.Index(None, "connection", "crm_id_written", "updated_at"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connection", sa.String, nullable=False),
    sa.Column("direction", sa.String, nullable=False),
    sa.Column("record_id", sa.String),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("first_seen", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=False),
    sa.Column("resolved_at", sa.BigInteger),
    sa.Index(None, "connection", "first_seen"),
    sqlite_autoincrement=True,  # ids are shown to ops (dlq show 42): never reuse one
)
# at most one unresolved row per record; a record failing again updates that row (the upsert in
# sql.py names this predicate to find the index)
open_dead_letter = sa.and_(
    dead_letters.c.resolved_at.is_(None), dead_letters.c.record_id.is_not(None)
)
sa.Index(
    "uq_dead_letters_open_record",
    dead_letters.c.connection,
    dead_letters.c.direction,
    dead_letters.c.record_id,
    unique=True,
    sqlite_where=open_dead_letter,
    postgresql_where=open_dead_letter,
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connection", sa.String, nullable=False),
    sa.Column("direction", sa.String, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("outcome", sa.String),
    sa.Column("counts", sa.Text, nullable=False),
    sa.Column("errors", sa.Text, nullable=False),
    sa.Index(None, "connection", "started_at"),
    sqlite_autoincrement=True,
)

# the leader lease of each connection: who may sync it, until when (microseconds on the lease
# clock: the server's on Postgres, the store's on SQLite; see StateStore.acquire_lease)
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("connection", sa.String, primary_key=True),
    sa.Column("holder", sa.String, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)
