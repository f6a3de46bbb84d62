"""Webhooks from settings: the verifier, one handler per connection, and each registration.

``[webhooks]`` (:class:`~connector.settings.WebhookSettings`) says whether the daemon takes
Partner Center's events, which certificate hosts and CAs it trusts, and the public URL Partner
Center reaches it at. Each connection has its own route, ``/webhooks/partner-center/<name>``,
registered with its own tenant, so an event is synced on the connection it came for only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from connector.http.session import build_session
from connector.partner_center.client import TokenSource
from connector.ports import Clock
from connector.settings import ConnectionSettings, WebhookSettings
from connector.webhooks.receiver import make_webhook_handler
from connector.webhooks.register import DEFAULT_EVENTS, read_registration, register_webhook
from connector.webhooks.verify import WebhookEvent, WebhookVerifier

__all__ = [
    "WEBHOOK_PATH",
    "build_verifier",
    "connection_webhook_url",
    "register_connection",
    "registration_of",
    "webhook_handlers",
    "webhook_path",
]

WEBHOOK_PATH = "/webhooks/partner-center"

Handler = Callable[[Request], Response]


def webhook_path(connection: str) -> str:
    """Where connection ``connection``'s Partner Center events are posted."""
    return f"{WEBHOOK_PATH}/{connection}"


def connection_webhook_url(settings: WebhookSettings, connection: str) -> str:
    """The URL Partner Center is told to post ``connection``'s events to."""
    if not settings.public_url:
        raise ValueError("[webhooks] public_url is not set")
    return settings.public_url.rstrip("/") + webhook_path(connection)


def build_verifier(settings: WebhookSettings, *, clock: Clock) -> WebhookVerifier:
    """The signature and certificate checks ``settings`` asks for (certificates fetched over
    https trusting ``trusted_ca`` when given, else the system's CAs via certifi)."""
    session = build_session(ca_bundle=settings.trusted_ca)
    return WebhookVerifier(
        settings.trusted_ca,
        allowed_certificate_hosts=settings.certificate_hosts,
        session=session,
        clock=clock,
        max_age=timedelta(seconds=settings.max_age_seconds),
    )


def webhook_handlers(
    verifier: WebhookVerifier,
    names: Iterable[str],
    receiver_for: Callable[[str], Callable[[WebhookEvent], None]],
) -> dict[str, Handler]:
    """One HTTP handler per connection name, handing its verified events to
    ``receiver_for(name)`` (the daemon's queue)."""
    return {name: make_webhook_handler(verifier, receiver_for(name)) for name in names}


def register_connection(
    connection: ConnectionSettings,
    token_source: TokenSource,
    url: str,
    *,
    events: tuple[str, ...] = DEFAULT_EVENTS,
) -> dict[str, Any]:
    """Register ``url`` for ``events`` with the connection's Partner Center tenant."""
    pc = connection.partner_center
    timeout = (pc.connect_timeout, pc.read_timeout)
    with build_session(ca_bundle=pc.ca_bundle, default_timeout=timeout) as session:
        return register_webhook(session, pc.webhook_base_url, token_source, url, events)


def registration_of(connection: ConnectionSettings, token_source: TokenSource) -> dict[str, Any]:
    """What the connection's tenant has registered now (``{}`` when nothing)."""
    pc = connection.partner_center
    timeout = (pc.connect_timeout, pc.read_timeout)
    with build_session(ca_bundle=pc.ca_bundle, default_timeout=timeout) as session:
        return read_registration(session, pc.webhook_base_url, token_source)
