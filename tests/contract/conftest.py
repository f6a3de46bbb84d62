"""The ``crm`` fixture: one harness per CRM adapter implementation, fresh for every test.

Every test of ``test_crm_adapter_contract.py`` runs once per implementation listed here. An
implementation joins by adding its harness to ``crm_harness`` and its name to ``CRMS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.ports import StateStore
from contract.crm_harness import CrmHarness, DynamicsHarness, FakeCrmHarness, SalesforceHarness
from contract.postgres_server import PostgresServer, postgres_server
from contract.state_harness import STATE_STORES, ManualClock, StateDatabase

CRMS = ["fake", "salesforce", "dynamics"]


@pytest.fixture(params=CRMS)
def crm(request: pytest.FixtureRequest) -> Iterator[CrmHarness]:
    if request.param == "fake":
        yield FakeCrmHarness()
    elif request.param == "salesforce":
        harness = SalesforceHarness(request.getfixturevalue("sandbox"))
        yield harness
        harness.close()
    elif request.param == "dynamics":
        dynamics = DynamicsHarness(request.getfixturevalue("sandbox"))
        yield dynamics
        dynamics.close()
    else:
        raise AssertionError(f"no harness for {request.param!r}")


# -- the state store ----------------------------------------------------------------------------
#
# Every test of ``test_state_store_contract.py`` runs once per store in ``STATE_STORES``; a test
# that needs to move time asks for ``state_clock`` (the same clock the store stamps with), and
# one that needs a second daemon on the same database asks for ``replica``. Postgres is a real
# server (``postgres_server``: RS_TEST_POSTGRES_URL, else a private cluster), a schema per test.


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def state_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=STATE_STORES)
def state_database(
    request: pytest.FixtureRequest, tmp_path: Path, state_clock: ManualClock
) -> Iterator[StateDatabase]:
    kind = request.param
    if kind == "memory":
        yield StateDatabase(kind, None, state_clock)
    elif kind == "sqlite":
        yield StateDatabase(kind, f"sqlite:///{tmp_path / 'state' / 'contract.db'}", state_clock)
    elif kind == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        with server.schema() as url:
            yield StateDatabase(kind, url, state_clock)
    else:
        raise AssertionError(f"no state store called {kind!r}")


@pytest.fixture
def store(state_database: StateDatabase) -> Iterator[StateStore]:
    opened = state_database.open()
    yield opened
    opened.close()


@pytest.fixture
def replica(state_database: StateDatabase, store: StateStore) -> Iterator[StateStore]:
    """What a second daemon on the same database sees: another store on it (the memory store
    cannot be shared between processes, so there it is the same store)."""
    if state_database.kind == "memory":
        yield store
        return
    other = state_database.open()
    yield other
    other.close()


@pytest.fixture
def let_time_pass(state_database: StateDatabase) -> Callable[[float], None]:
    """``let_time_pass(seconds)``: every clock the store reads moves on by that much."""
    return state_database.let_time_pass
