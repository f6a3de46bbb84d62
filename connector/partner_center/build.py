"""Wiring: settings → session, msal auth, client and source. The only place that knows all four."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from structlog.typing import FilteringBoundLogger

from connector.http.retry import RetryObserver, RetryPolicy
from connector.http.session import build_session
from connector.partner_center.adapter import PartnerCenterSource
from connector.partner_center.auth import PartnerCenterAuth
from connector.partner_center.client import PartnerCenterClient
from connector.settings import PartnerCenterSettings


@dataclass(frozen=True, slots=True)
class PartnerCenter:
    """Everything one connection needs to talk to Partner Center."""

    auth: PartnerCenterAuth
    client: PartnerCenterClient
    source: PartnerCenterSource


def build_partner_center(
    settings: PartnerCenterSettings,
    *,
    prompt: Callable[[str], None] | None = None,
    now: Callable[[], datetime] | None = None,
    on_response: Callable[[requests.Response], None] | None = None,
    on_retry: RetryObserver | None = None,
    logger: FilteringBoundLogger | None = None,
) -> PartnerCenter:
    timeout = (settings.connect_timeout, settings.read_timeout)
    session = build_session(
        ca_bundle=settings.ca_bundle, default_timeout=timeout, on_response=on_response
    )
    secret = settings.client_secret
    password = settings.password
    auth = PartnerCenterAuth(
        authority=settings.authority,
        client_id=settings.client_id,
        token_cache_path=settings.token_cache,
        session=session,
        mode=settings.auth_mode,
        client_secret=None if secret is None else secret.reveal(),
        scopes=settings.scopes,
        username=settings.username,
        password=None if password is None else password.reveal(),
        refresh_token_file=settings.refresh_token_file,
        **({} if prompt is None else {"prompt": prompt}),
        logger=logger,
    )
    client = PartnerCenterClient(
        settings.base_url,
        auth,
        session=session,
        retry=RetryPolicy.from_settings(settings.retry, observer=on_retry),
        timeout=timeout,
        logger=logger,
    )
    source = PartnerCenterSource(
        client,
        overlap=timedelta(seconds=settings.poll_overlap_seconds),
        now=now or (lambda: datetime.now(UTC)),
        write_concurrency=settings.write_concurrency,
        logger=logger,
    )
    return PartnerCenter(auth=auth, client=client, source=source)
