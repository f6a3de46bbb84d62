"""Wiring: settings → https-only session, token source, client, adapter. The only place that
knows all four."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import requests
from structlog.typing import FilteringBoundLogger

from connector.crm.salesforce.adapter import DEFAULT_READ_FIELDS, SalesforceAdapter
from connector.crm.salesforce.auth import SalesforceAuth
from connector.crm.salesforce.client import DEFAULT_QUOTA_WAIT_S, SalesforceClient
from connector.http.retry import RetryObserver, RetryPolicy
from connector.http.session import build_session
from connector.settings import RetrySettings, SalesforceAuthMode, SalesforceSettings, Secret


@dataclass(frozen=True, slots=True)
class SalesforceConnection:
    """Everything one connection needs to talk to its Salesforce org."""

    auth: SalesforceAuth
    client: SalesforceClient
    adapter: SalesforceAdapter


def build_salesforce(
    settings: SalesforceSettings,
    *,
    read_fields: tuple[str, ...] = DEFAULT_READ_FIELDS,
    quota_wait_s: float | None = None,
    query_batch_size: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    now: Callable[[], datetime] | None = None,
    on_response: Callable[[requests.Response], None] | None = None,
    on_retry: RetryObserver | None = None,
    logger: FilteringBoundLogger | None = None,
) -> SalesforceConnection:
    timeout = (settings.connect_timeout, settings.read_timeout)
    session = build_session(
        ca_bundle=settings.ca_bundle, default_timeout=timeout, on_response=on_response
    )
    secret = settings.client_secret
    auth = SalesforceAuth(
        token_url=settings.token_url,
        client_id=settings.client_id,
        session=session,
        mode=settings.auth_mode,
        client_secret=None if secret is None else secret.reveal(),
        username=settings.username,
        private_key_file=settings.private_key_file,
        timeout=timeout,
        logger=logger,
    )
    client = SalesforceClient(
        auth,
        instance_url=settings.instance_url,
        api_version=settings.api_version,
        session=session,
        retry=RetryPolicy.from_settings(settings.retry, observer=on_retry),
        timeout=timeout,
        quota_wait_s=settings.quota_wait_seconds if quota_wait_s is None else quota_wait_s,
        query_batch_size=query_batch_size,
        sleep=sleep,
        clock=clock,
        rng=rng,
        logger=logger,
    )
    adapter = SalesforceAdapter(
        client,
        external_id_field=settings.external_id_field,
        read_fields=read_fields,
        overlap=timedelta(seconds=settings.poll_overlap_seconds),
        **({} if now is None else {"now": now}),
        logger=logger,
    )
    return SalesforceConnection(auth=auth, client=client, adapter=adapter)


def settings_from_info(
    info: Mapping[str, object],
    ca_bundle: str | Path,
    *,
    auth_mode: SalesforceAuthMode = "client_credentials",
    retry: RetrySettings | None = None,
) -> SalesforceSettings:
    """Settings for the sandbox's simulated org, from the ``salesforce`` dict of sandbox.json."""
    key = info.get("private_key_path")
    return SalesforceSettings(
        instance_url=str(info["instance_url"]),
        token_url=str(info["token_url"]),
        auth_mode=auth_mode,
        client_id=str(info["client_id"]),
        client_secret=Secret(str(info["client_secret"]), "sandbox.json"),
        username=None if info.get("username") is None else str(info["username"]),
        private_key_file=None if key is None else Path(str(key)),
        api_version=str(info.get("api_version", "62.0")),
        external_id_field=str(info.get("external_id_field", "Partner_Center_Referral_Id__c")),
        ca_bundle=Path(ca_bundle),
        retry=retry or RetrySettings(),
    )


def build_salesforce_from_info(
    info: Mapping[str, object],
    ca_bundle: str | Path,
    *,
    auth_mode: SalesforceAuthMode = "client_credentials",
    retry: RetrySettings | None = None,
    quota_wait_s: float = DEFAULT_QUOTA_WAIT_S,
    query_batch_size: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    logger: FilteringBoundLogger | None = None,
) -> SalesforceConnection:
    """A connection to the sandbox's simulated org (for the contract and e2e suites)."""
    settings = settings_from_info(info, ca_bundle, auth_mode=auth_mode, retry=retry)
    return build_salesforce(
        settings,
        quota_wait_s=quota_wait_s,
        query_batch_size=query_batch_size,
        sleep=sleep,
        clock=clock,
        rng=rng,
        logger=logger,
    )
