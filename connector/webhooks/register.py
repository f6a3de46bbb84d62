"""Register (or update) this daemon's webhook with Partner Center: one plain function.

``GET /webhooks/v1/registration`` first: a registration (a body with ``WebhookUrl``) is
replaced with ``PUT``, otherwise one is made with ``POST``; a ``409`` to the POST (someone
registered in between) falls back to one PUT. Partner Center keeps one URL per event per
tenant, so this replaces whatever was registered before (the Microsoft connectors' flows
included). Responses are classified by the Partner Center client's table
(:func:`connector.partner_center.client.error_for_response`): 401 refreshes the token once,
then ``AuthError``; 4xx ``RecordRejected``/``PermanentError``; 429 and 5xx ``TransientError``
(not retried here: the operator runs the command again).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import requests

from connector.errors import PermanentError
from connector.http.session import DEFAULT_TIMEOUT
from connector.partner_center.client import TokenSource, error_for_exception, error_for_response

__all__ = ["DEFAULT_EVENTS", "REGISTRATION_PATH", "read_registration", "register_webhook"]

REGISTRATION_PATH = "/webhooks/v1/registration"
DEFAULT_EVENTS = ("referral-created", "referral-updated")


def register_webhook(
    client_session: requests.Session,
    base_url: str,
    token_source: TokenSource,
    url: str,
    events: Sequence[str] = DEFAULT_EVENTS,
    *,
    signature_in_ms_header: bool = True,
) -> dict[str, Any]:
    """Point Partner Center's ``events`` at ``url``; returns the registration it answers
    (``SubscriberId``, ``WebhookUrl``, ``WebhookEvents``).

    ``base_url`` is the webhook service's root (``https://api.partnercenter.microsoft.com``;
    the sandbox's is ``webhooks.base_url`` in ``sandbox.json``). ``signature_in_ms_header``
    sends the signature in ``x-ms-signature`` instead of ``Authorization``, as Microsoft's own
    connectors register.
    """
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"the webhook URL must be absolute http(s), got {url!r}")
    if not events:
        raise ValueError("register at least one event")
    endpoint = base_url.rstrip("/") + REGISTRATION_PATH
    body = {
        "WebhookUrl": url,
        "WebhookEvents": list(events),
        "signatureTokenToMsSignatureHeader": signature_in_ms_header,
    }
    send = _Sender(client_session, token_source)
    current = send("GET", endpoint, None)
    exists = current.status_code == 200 and "WebhookUrl" in _json(current)
    if current.status_code not in (200, 404):
        _raise_for(current)
    response = send("PUT" if exists else "POST", endpoint, body)
    if response.status_code == 409 and not exists:
        response = send("PUT", endpoint, body)
    _raise_for(response)
    return _json(response)


def read_registration(
    client_session: requests.Session, base_url: str, token_source: TokenSource
) -> dict[str, Any]:
    """The tenant's registration as Partner Center answers it; ``{}`` when there is none."""
    current = _Sender(client_session, token_source)(
        "GET", base_url.rstrip("/") + REGISTRATION_PATH, None
    )
    if current.status_code == 404:
        return {}
    _raise_for(current)
    document = _json(current)
    return document if "WebhookUrl" in document else {}


class _Sender:
    """One request with a bearer token; a 401 refreshes the token and repeats it once."""

    def __init__(self, session: requests.Session, token_source: TokenSource) -> None:
        self._session = session
        self._tokens = token_source

    def __call__(self, method: str, url: str, body: object) -> requests.Response:
        response = self._once(method, url, body, self._tokens.token())
        if response.status_code == 401:
            response = self._once(method, url, body, self._tokens.refresh())
        return response

    def _once(self, method: str, url: str, body: object, token: str) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "MS-CorrelationId": str(uuid.uuid4()),
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            return self._session.request(
                method,
                url,
                data=None if body is None else json.dumps(body),
                headers=headers,
                timeout=DEFAULT_TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise error_for_exception(exc) from exc


def _raise_for(response: requests.Response) -> None:
    error = error_for_response(response)
    if error is not None:
        raise error


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise PermanentError(
            f"Partner Center answered {response.status_code} with a body that is not a JSON object",
            status=response.status_code,
        )
    return document
