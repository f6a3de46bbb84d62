"""Wiring: settings → https-only session, msal token source, Web API client, adapter. The only
place that knows all four."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests
from structlog.typing import FilteringBoundLogger

from connector.crm.dynamics.adapter import DEFAULT_READ_FIELDS, KEY_COLUMN, DynamicsAdapter
from connector.crm.dynamics.auth import DynamicsAuth
from connector.crm.dynamics.client import DynamicsClient
from connector.http.retry import RetryObserver, RetryPolicy
from connector.http.session import build_session
from connector.settings import DynamicsSettings, RetrySettings, Secret


@dataclass(frozen=True, slots=True)
class DynamicsConnection:
    """Everything one connection needs to talk to its Dataverse environment."""

    auth: DynamicsAuth
    client: DynamicsClient
    adapter: DynamicsAdapter


def build_dynamics(
    settings: DynamicsSettings,
    *,
    key_column: str = KEY_COLUMN,
    read_fields: tuple[str, ...] = DEFAULT_READ_FIELDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    now: Callable[[], datetime] | None = None,
    on_response: Callable[[requests.Response], None] | None = None,
    on_retry: RetryObserver | None = None,
    logger: FilteringBoundLogger | None = None,
) -> DynamicsConnection:
    timeout = (settings.connect_timeout, settings.read_timeout)
    session = build_session(
        ca_bundle=settings.ca_bundle, default_timeout=timeout, on_response=on_response
    )
    auth = DynamicsAuth(
        authority=settings.authority,
        client_id=settings.client_id,
        client_secret=settings.client_secret.reveal(),
        scope=settings.scope,
        session=session,
        logger=logger,
    )
    client = DynamicsClient(
        auth,
        base_url=settings.base_url,
        session=session,
        retry=RetryPolicy.from_settings(settings.retry, observer=on_retry),
        timeout=timeout,
        sleep=sleep,
        clock=clock,
        rng=rng,
        logger=logger,
    )
    adapter = DynamicsAdapter(
        client,
        key_column=key_column,
        read_fields=read_fields,
        page_size=settings.poll_page_size,
        **({} if now is None else {"now": now}),
        logger=logger,
    )
    return DynamicsConnection(auth=auth, client=client, adapter=adapter)


def settings_from_info(
    info: Mapping[str, object],
    ca_bundle: str | Path,
    *,
    poll_page_size: int = 1000,
    retry: RetrySettings | None = None,
) -> DynamicsSettings:
    """Settings for the sandbox's simulated environment, from sandbox.json (the whole dict:
    ``dataverse`` and ``entra``)."""
    dataverse = info["dataverse"]
    entra = info["entra"]
    assert isinstance(dataverse, Mapping)  # noqa: S101 - sandbox.json's shape
    assert isinstance(entra, Mapping)  # noqa: S101
    app = entra["dataverse"]
    assert isinstance(app, Mapping)  # noqa: S101
    return DynamicsSettings(
        base_url=str(dataverse["base_url"]),
        authority=str(entra["authority"]),
        client_id=str(app["client_id"]),
        client_secret=Secret(str(app["client_secret"]), "sandbox.json"),
        scope=str(dataverse["scope"]),
        ca_bundle=Path(ca_bundle),
        poll_page_size=poll_page_size,
        retry=retry or RetrySettings(),
    )


def build_dynamics_from_info(
    info: Mapping[str, object],
    ca_bundle: str | Path,
    *,
    poll_page_size: int = 1000,
    retry: RetrySettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    logger: FilteringBoundLogger | None = None,
) -> DynamicsConnection:
    """A connection to the sandbox's simulated environment (for the contract and e2e suites)."""
    settings = settings_from_info(info, ca_bundle, poll_page_size=poll_page_size, retry=retry)
    return build_dynamics(settings, sleep=sleep, clock=clock, rng=rng, logger=logger)
