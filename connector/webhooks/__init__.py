"""Partner Center webhooks: verify signed events (``verify``), receive them over HTTP
(``receiver``), register the daemon's URL (``register``), and build all that from the
``[webhooks]`` settings (``setup``). No I/O at import; the daemon wires one handler per
connection into its HTTP server and hands events to the engine."""

from connector.webhooks.receiver import MAX_BODY_BYTES, make_webhook_handler
from connector.webhooks.register import DEFAULT_EVENTS, read_registration, register_webhook
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
    "read_registration",
    "register_webhook",
]
