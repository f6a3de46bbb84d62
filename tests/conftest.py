"""Shared fixtures: one sandbox for the whole session, and sessions that trust its CA.

The sandbox runs on a random loopback address ``127.x.y.z`` so that its port 443 (where msal's
password grant looks for user-realm discovery) is free even when another sandbox runs. Each test
that uses it starts from no faults, an empty request log and the default token lifetime.

Clients must use ``requests.Session`` with ``trust_env=False`` and ``verify=<ca.pem>``: the
machine exports ``REQUESTS_CA_BUNDLE``, which would override ``verify`` otherwise.

Every test logs through the production structlog chain (redaction included) to stderr, and the
log scan (``reliability/logscan.py``) reads all the suite writes: a secret, token or unmasked
customer e-mail in any log line fails the session with a report.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from reliability.logscan import LogScanPlugin

from sandbox.app import Sandbox
from sandbox.testing import ca_session as ca_session_for
from sandbox.testing import random_loopback_host


def pytest_configure(config: pytest.Config) -> None:
    plugin = LogScanPlugin()
    config.pluginmanager.register(plugin, LogScanPlugin.name)
    plugin.watch_sandboxes(Sandbox)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(
        tmp_path_factory.mktemp("sandbox"),
        host=random_loopback_host(),
        fault_seed=20240601,
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_sandbox(request: pytest.FixtureRequest) -> None:
    """Cheap reset before every test that uses the sandbox (directly or through a fixture)."""
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").reset()


@pytest.fixture
def sandbox_info(sandbox: Sandbox) -> dict[str, Any]:
    """The ``sandbox.json`` dict: ca_bundle, entra {...}, partner_center {...}."""
    return sandbox.info


@pytest.fixture
def ca_session(sandbox: Sandbox) -> Iterator[requests.Session]:
    """A ``requests.Session`` trusting the sandbox CA and ignoring the environment."""
    with ca_session_for(str(sandbox.ca_path)) as session:
        yield session


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test logs through the production chain (debug level) to whatever ``sys.stderr`` is
    when a logger is made. Commands run in-process configure structlog and the root logger for
    their own stderr; put both back after each test so the next one never writes to a stream
    that is gone."""
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    from connector.observe.logging import processors  # noqa: PLC0415

    handlers = logging.root.handlers[:]
    level = logging.root.level
    structlog.configure(
        processors=processors(mask_customer_contacts=True),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    yield
    structlog.reset_defaults()
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def _stderr_logger(*_args: object) -> Any:
    import structlog  # noqa: PLC0415

    return structlog.PrintLogger(sys.stderr)
