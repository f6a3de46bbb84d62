"""The HTTP side of webhooks: a werkzeug handler that verifies, hands on, and answers fast.

=========  ====================================================================
202        verified; ``on_event`` was called (it must only enqueue, never block)
400        the body is over :data:`MAX_BODY_BYTES` (64 KiB; events are ~250 bytes)
401        rejected: ``{"error": "webhook_rejected", "reason": ...}``, logged as
           ``webhook_rejected reason=...`` (the body is never logged)
405        not a POST
503        ``on_event`` raised (a full queue): Partner Center will try again
=========  ====================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog
from structlog.typing import FilteringBoundLogger
from werkzeug.wrappers import Request, Response

from connector.webhooks.verify import WebhookEvent, WebhookRejected

__all__ = ["MAX_BODY_BYTES", "Verifier", "make_webhook_handler"]

MAX_BODY_BYTES = 64 * 1024


class Verifier(Protocol):
    """What the handler needs (``WebhookVerifier`` satisfies it)."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent: ...


def make_webhook_handler(
    verifier: Verifier,
    on_event: Callable[[WebhookEvent], None],
    *,
    logger: FilteringBoundLogger | None = None,
) -> Callable[[Request], Response]:
    """A request → response function for ``POST /webhooks/partner-center``."""
    log: FilteringBoundLogger = logger or structlog.get_logger("connector.webhooks")

    def handle(request: Request) -> Response:
        if request.method != "POST":
            return _json({"error": "method_not_allowed"}, 405, {"Allow": "POST"})
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _too_large(log, request)
        body = request.stream.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return _too_large(log, request)
        headers = dict(request.headers.items())
        try:
            event = verifier.verify(headers, body)
        except WebhookRejected as exc:
            log.warning(
                "webhook_rejected",
                reason=exc.reason,
                detail=exc.detail,
                remote_addr=request.remote_addr,
            )
            return _json({"error": "webhook_rejected", "reason": exc.reason}, 401)
        try:
            on_event(event)
        except Exception:  # any hand-off failure is a 503: Partner Center tries again
            log.exception(
                "webhook_handoff_failed", referral_id=event.referral_id, event_name=event.name
            )
            return _json({"error": "unavailable"}, 503)
        log.info(
            "webhook_accepted",
            event_name=event.name,
            referral_id=event.referral_id,
            changed_at=event.changed_at.isoformat(),
        )
        return _json({"accepted": True}, 202)

    return handle


def _too_large(log: FilteringBoundLogger, request: Request) -> Response:
    log.warning("webhook_rejected", reason="body_too_large", remote_addr=request.remote_addr)
    return _json({"error": "body_too_large", "limit_bytes": MAX_BODY_BYTES}, 400)


def _json(body: object, status: int, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json"
    )
