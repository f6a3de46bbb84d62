"""The state store: cursors, links, dead letters and runs (the ``StateStore`` port).

``open_state_store(url)`` picks the implementation from the URL:

- ``memory://``: :class:`~connector.state.memory.MemoryStateStore`, kept in this process only;
- ``sqlite:///relative/path.db`` (relative to the working directory, as in SQLAlchemy),
  ``sqlite:////absolute/path.db``, and ``postgresql://user@host:5432/database`` (psycopg 3;
  ``postgresql+psycopg://`` alike): :class:`~connector.state.sql.SqlStateStore`.

A malformed URL, an unknown scheme, a database it cannot open or one written by a newer version
raises :class:`~connector.errors.StateError`.
"""

from __future__ import annotations

from connector.errors import StateError
from connector.ports import Clock, StateStore
from connector.state.memory import MemoryStateStore
from connector.state.sql import SqlStateStore

__all__ = ["MemoryStateStore", "SqlStateStore", "open_state_store"]

MEMORY_URL = "memory://"


def open_state_store(
    url: str,
    *,
    create_dirs: bool = True,
    clock: Clock | None = None,
    password: str | None = None,
) -> StateStore:
    """The store ``url`` names, ready to use; ``create_dirs`` creates a SQLite file's folders.

    ``clock`` (the system clock in UTC by default) stamps a link put without ``updated_at``
    and the dead letters ``record_page`` resolves (and, except on Postgres, leases).
    ``password`` replaces the database URL's own, so that it can come from a secret.
    """
    if not isinstance(url, str) or not url.strip():
        raise StateError(f"state URL must be a non-empty string, got {url!r}")
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise StateError(
            f"state URL {url!r} has no scheme: expected memory:// or a database URL such as "
            "sqlite:///state/referral-sync.db"
        )
    if scheme.lower() == "memory":
        if rest:
            raise StateError(f"state URL {url!r}: memory:// takes nothing after the scheme")
        if password is not None:
            raise StateError("a memory:// state store takes no password")
        return MemoryStateStore(clock=clock)
    return SqlStateStore.open(url, create_dirs=create_dirs, clock=clock, password=password)
