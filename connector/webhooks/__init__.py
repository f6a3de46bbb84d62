"""Partner Center webhooks: verify signed events (``verify``), receive them over HTTP
(``receiver``), and register the daemon's URL (``register``). No I/O at import; the daemon
wires :func:`make_webhook_handler` into its HTTP server and hands events to the engine."""

from connector.webhooks.receiver import MAX_BODY_BYTES, make_webhook_handler
from connector.webhooks.register import DEFAULT_EVENTS, register_webhook
from connector.webhooks.verify import (
    REFERRAL_EVENTS,
    WebhookEvent,
    WebhookRejected,
    WebhookVerifier,
)

__all__ = [
    "DEFAULT_EVENTS",
    "MAX_BODY_BYTES",
    "REFERRAL_EVENTS",
    "WebhookEvent",
    "WebhookRejected",
    "WebhookVerifier",
    "make_webhook_handler",
    "register_webhook",
]
