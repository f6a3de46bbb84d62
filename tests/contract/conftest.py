"""The ``crm`` fixture: one harness per CRM adapter implementation, fresh for every test.

Every test of ``test_crm_adapter_contract.py`` runs once per implementation listed here. An
implementation joins by adding its harness to ``crm_harness`` and its name to ``CRMS``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contract.crm_harness import CrmHarness, FakeCrmHarness, SalesforceHarness

CRMS = ["fake", "salesforce"]


@pytest.fixture(params=CRMS)
def crm(request: pytest.FixtureRequest) -> Iterator[CrmHarness]:
    if request.param == "fake":
        yield FakeCrmHarness()
    elif request.param == "salesforce":
        harness = SalesforceHarness(request.getfixturevalue("sandbox"))
        yield harness
        harness.close()
    else:
        raise AssertionError(f"no harness for {request.param!r}")
