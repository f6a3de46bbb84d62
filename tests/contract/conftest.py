"""The ``crm`` fixture: one harness per CRM adapter implementation, fresh for every test.

Every test of ``test_crm_adapter_contract.py`` runs once per implementation listed here. An
implementation joins by adding its harness to ``crm_harness`` and its name to ``CRMS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.ports import StateStore
from contract.crm_harness import CrmHarness, DynamicsHarness, FakeCrmHarness, SalesforceHarness
from contract.state_harness import STATE_STORES, ManualClock, open_store

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
# that needs to move time asks for ``state_clock`` (the same clock the store stamps with).


@pytest.fixture
def state_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=STATE_STORES)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, state_clock: ManualClock
) -> Iterator[StateStore]:
    opened = open_store(request.param, tmp_path, state_clock)
    yield opened
    opened.close()
