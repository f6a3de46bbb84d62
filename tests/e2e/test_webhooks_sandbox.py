"""Webhooks end to end: register through the sandbox's API with a real msal token, change a
referral in the store, and watch the signed event reach a local receiver built with
``make_webhook_handler`` (plain http on 127.0.0.1, as the daemon serves it), verified against
the certificate the sandbox serves and its CA."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request

from connector.errors import RecordRejected
from connector.http.session import build_session
from connector.partner_center.auth import PartnerCenterAuth
from connector.webhooks import WebhookEvent, WebhookVerifier, make_webhook_handler, register_webhook
from sandbox.app import Sandbox
from sandbox.partner_center import AUDIENCE
from sandbox.partner_center.webhooks import DeliveryAttempt

pytestmark = pytest.mark.e2e

CREATE = {
    "type": "Shared",
    "name": "Contoso - Azure",
    "status": "New",
    "substatus": "Pending",
    "customerProfile": {"name": "Contoso", "address": {"country": "US"}},
    "consent": {"consentToShareReferralWithMicrosoftSellers": True},
    "details": {"dealValue": "12000", "currency": "USD"},
    "target": [{"type": "BusinessProfileLocation", "id": "msft"}],
}


@dataclass
class Receiver:
    """The daemon's side: a werkzeug server on 127.0.0.1 running the real handler."""

    url: str
    events: list[WebhookEvent] = field(default_factory=list)
    signature_headers: list[str] = field(default_factory=list)

    def for_referral(self, referral_id: str) -> list[str]:
        return [event.name for event in self.events if event.referral_id == referral_id]


@pytest.fixture
def verifier(sandbox: Sandbox, ca_session: requests.Session) -> WebhookVerifier:
    return WebhookVerifier(
        Path(sandbox.info["ca_bundle"]),
        allowed_certificate_hosts=(sandbox.host,),
        session=ca_session,
        clock=sandbox.clock,  # the sandbox's "now" is Microsoft's
    )


@pytest.fixture
def receiver(verifier: WebhookVerifier) -> Iterator[Receiver]:
    got = Receiver("")
    handler = make_webhook_handler(verifier, got.events.append)

    def app(environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        names = {name.lower() for name in request.headers.keys()}  # noqa: SIM118 - werkzeug Headers
        got.signature_headers.append(" ".join(sorted(names & {"authorization", "x-ms-signature"})))
        return handler(request)(environ, start_response)

    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        got.url = f"http://127.0.0.1:{server.port}/webhooks/partner-center"
        yield got
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


@pytest.fixture
def auth(sandbox: Sandbox, tmp_path: Path) -> PartnerCenterAuth:
    """A real msal token (device code, as ``referral-sync login`` gets one)."""
    entra = sandbox.info["entra"]
    login = PartnerCenterAuth(
        authority=entra["authority"],
        client_id=entra["partner_center"]["client_id"],
        token_cache_path=tmp_path / "cache" / "pc-token-cache.json",
        session=build_session(ca_bundle=sandbox.info["ca_bundle"]),
        mode="device_code",
        prompt=lambda message: None,
    )
    login.login()
    return login


@pytest.fixture
def api_session(sandbox: Sandbox) -> Iterator[requests.Session]:
    session = build_session(ca_bundle=sandbox.info["ca_bundle"])
    yield session
    session.close()


def _register(sandbox, api_session, auth, url, **kwargs) -> dict[str, Any]:
    return register_webhook(api_session, sandbox.info["webhooks"]["base_url"], auth, url, **kwargs)


def _token(sandbox: Sandbox, *, user: bool = True) -> str:
    tenant = sandbox.tenant
    token, _ = sandbox.tokens.issue_access_token(
        client_id=tenant.partner_center_app.client_id,
        audience=AUDIENCE,
        scopes=[f"{AUDIENCE}/user_impersonation"],
        user=tenant.user if user else None,
    )
    return token


def _call(sandbox, session, method, path, *, token=None, anonymous=False, **kwargs):
    """A raw call with a user token (or ``token``, or none when ``anonymous``)."""
    headers = kwargs.pop("headers", {})
    if not anonymous:
        headers["Authorization"] = f"Bearer {token or _token(sandbox)}"
    url = sandbox.info["webhooks"]["base_url"] + path
    return session.request(method, url, headers=headers, timeout=10, **kwargs)


def _answered(referral_id: str, status: int):
    def done(attempts: list[DeliveryAttempt]) -> bool:
        return any(a.resource_uri.endswith(referral_id) and a.status == status for a in attempts)

    return done


# -- registration through the API, then signed deliveries -----------------------------------


def test_every_create_and_update_reaches_the_registered_receiver_signed_and_verified(
    sandbox, api_session, auth, receiver
):
    registered = _register(sandbox, api_session, auth, receiver.url)
    assert registered["WebhookUrl"] == receiver.url
    assert registered["WebhookEvents"] == ["referral-created", "referral-updated"]

    store = sandbox.partner_center.store
    referral_id = store.create(CREATE)["id"]
    store.edit(referral_id, details={"notes": "Customer asked for a call"})

    sandbox.partner_center.webhooks.wait_for(
        lambda attempts: sum(a.ok and a.resource_uri.endswith(referral_id) for a in attempts) == 2
    )
    assert receiver.for_referral(referral_id) == ["referral-created", "referral-updated"]
    assert set(receiver.signature_headers) == {"x-ms-signature"}  # as register_webhook asks
    updated = store.get_raw(referral_id)
    assert receiver.events[-1].changed_at.isoformat()[:23] == updated["updatedDateTime"][:23]
    delivered = [a for a in sandbox.partner_center.webhooks.attempts() if a.ok]
    assert {a.status for a in delivered} == {202}


def test_the_authorization_signature_form_is_verified_as_well(sandbox, api_session, auth, receiver):
    _register(sandbox, api_session, auth, receiver.url, signature_in_ms_header=False)
    referral_id = sandbox.partner_center.store.create(CREATE)["id"]

    sandbox.partner_center.webhooks.wait_for(_answered(referral_id, 202))
    assert receiver.for_referral(referral_id) == ["referral-created"]
    assert set(receiver.signature_headers) == {"authorization"}


def test_only_the_registered_events_are_sent(sandbox, api_session, auth, receiver):
    _register(sandbox, api_session, auth, receiver.url, events=("referral-updated",))
    store = sandbox.partner_center.store
    referral_id = store.create(CREATE)["id"]
    store.edit(referral_id, name="Contoso - Azure (renamed)")

    sandbox.partner_center.webhooks.wait_for(_answered(referral_id, 202))
    assert receiver.for_referral(referral_id) == ["referral-updated"]


def test_a_forged_event_is_refused_by_the_receiver_retried_and_dropped(
    sandbox, api_session, auth, receiver
):
    _register(sandbox, api_session, auth, receiver.url)
    referral_id = "6b1c3d6e-4b1e-4f0a-9a53-0f4f3c1f2a77"

    assert sandbox.partner_center.webhooks.emit_forged(referral_id)

    attempts = sandbox.partner_center.webhooks.wait_for(
        lambda got: sum(a.forged for a in got) == 4, timeout=15
    )
    assert [a.status for a in attempts if a.forged] == [401, 401, 401, 401]
    assert receiver.events == []


def test_registering_again_updates_the_one_registration(sandbox, api_session, auth, receiver):
    first = _register(sandbox, api_session, auth, "https://hooks.example.com/partner-center")
    second = _register(sandbox, api_session, auth, receiver.url)

    assert second["SubscriberId"] == first["SubscriberId"]
    shown = _call(sandbox, api_session, "GET", "/webhooks/v1/registration")
    assert shown.status_code == 200
    assert shown.json() == {
        "WebhookUrl": receiver.url,
        "WebhookEvents": ["referral-created", "referral-updated"],
    }


def test_registering_a_url_partner_center_would_not_call_is_refused(sandbox, api_session, auth):
    with pytest.raises(RecordRejected, match="400"):
        _register(sandbox, api_session, auth, "http://hooks.example.com/partner-center")


# -- the registration API's rules -----------------------------------------------------------


def test_webhook_routes_need_a_bearer_token_but_the_certificate_is_public(sandbox, api_session):
    assert (
        _call(
            sandbox, api_session, "GET", "/webhooks/v1/registration/events", anonymous=True
        ).status_code
        == 401
    )

    certificate = _call(sandbox, api_session, "GET", "/webhooks/v1/certificate.pem", anonymous=True)
    assert certificate.status_code == 200
    assert sandbox.info["webhooks"]["certificate_url"].endswith("/webhooks/v1/certificate.pem")
    cert = x509.load_pem_x509_certificate(certificate.content)
    organization = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert organization == "Microsoft Corporation"


def test_the_event_list_names_the_referral_events_and_takes_app_only_tokens(sandbox, api_session):
    app_only = _token(sandbox, user=False)
    events = _call(sandbox, api_session, "GET", "/webhooks/v1/registration/events", token=app_only)

    assert events.status_code == 200
    assert {"referral-created", "referral-updated", "test-created"} <= set(events.json())


def test_no_registration_is_404_and_put_cannot_make_one(sandbox, api_session):
    body = {"WebhookUrl": "https://hooks.example.com/x", "WebhookEvents": ["referral-created"]}

    assert _call(sandbox, api_session, "GET", "/webhooks/v1/registration").status_code == 404
    assert (
        _call(sandbox, api_session, "PUT", "/webhooks/v1/registration", json=body).status_code
        == 404
    )


def test_a_second_post_is_a_conflict(sandbox, api_session):
    body = {"WebhookUrl": "https://hooks.example.com/x", "WebhookEvents": ["referral-created"]}

    assert (
        _call(sandbox, api_session, "POST", "/webhooks/v1/registration", json=body).status_code
        == 200
    )
    assert (
        _call(sandbox, api_session, "POST", "/webhooks/v1/registration", json=body).status_code
        == 409
    )


@pytest.mark.parametrize(
    "body",
    [
        {"WebhookUrl": "ftp://hooks.example.com/x", "WebhookEvents": ["referral-created"]},
        {"WebhookUrl": "http://hooks.example.com/x", "WebhookEvents": ["referral-created"]},
        {"WebhookUrl": "https://hooks.example.com/x", "WebhookEvents": []},
        {"WebhookUrl": "https://hooks.example.com/x", "WebhookEvents": ["referral-deleted"]},
        {"WebhookEvents": ["referral-created"]},
        ["https://hooks.example.com/x"],
    ],
    ids=["ftp", "http-not-loopback", "no-events", "unknown-event", "no-url", "not-an-object"],
)
def test_a_bad_registration_is_400(sandbox, api_session, body):
    response = _call(sandbox, api_session, "POST", "/webhooks/v1/registration", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalidRequest"


def test_property_names_are_case_insensitive_as_in_the_docs(sandbox, api_session):
    body = {
        "webhookUrl": "https://hooks.example.com/x",
        "webhookEvents": ["referral-created"],
        "SignatureTokenToMsSignatureHeader": True,
    }

    assert (
        _call(sandbox, api_session, "POST", "/webhooks/v1/registration", json=body).status_code
        == 200
    )
    assert sandbox.partner_center.webhooks.registration.ms_signature_header is True


def test_validation_events_need_test_created_and_are_limited_to_two_a_minute(
    sandbox, api_session, receiver
):
    path = "/webhooks/v1/registration"
    only_referrals = {"WebhookUrl": receiver.url, "WebhookEvents": ["referral-created"]}
    assert _call(sandbox, api_session, "POST", path, json=only_referrals).status_code == 200
    assert _call(sandbox, api_session, "POST", f"{path}/validationEvents").status_code == 400

    with_test = {"WebhookUrl": receiver.url, "WebhookEvents": ["test-created"]}
    assert _call(sandbox, api_session, "PUT", path, json=with_test).status_code == 200
    first = _call(sandbox, api_session, "POST", f"{path}/validationEvents")
    second = _call(sandbox, api_session, "POST", f"{path}/validationEvents")
    third = _call(sandbox, api_session, "POST", f"{path}/validationEvents")

    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    correlation_id = first.json()["correlationId"]
    sandbox.partner_center.webhooks.wait_for(
        lambda got: any(a.correlation_id == correlation_id for a in got)
    )
    status = _call(sandbox, api_session, "GET", f"{path}/validationEvents/{correlation_id}")
    assert status.json()["callbackUrl"] == receiver.url
    # our receiver knows only referral events: the test event is refused, and the status says so
    assert status.json()["results"][0]["responseCode"] == "Unauthorized"

    sandbox.clock.advance(timedelta(seconds=61))
    assert _call(sandbox, api_session, "POST", f"{path}/validationEvents").status_code == 200


def test_sandbox_json_says_where_the_webhook_api_and_certificate_are(sandbox):
    webhooks = sandbox.info["webhooks"]
    base = sandbox.servers["partner_center"].url

    assert webhooks["registration_url"] == f"{base}/webhooks/v1/registration"
    assert webhooks["certificate_url"] == f"{base}/webhooks/v1/certificate.pem"
    assert webhooks["certificate_host"] == sandbox.host
