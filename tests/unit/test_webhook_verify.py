"""WebhookVerifier: one accepted event, then every way a delivery is turned away, with its reason.

Certificates come from throw-away trustme CAs; the certificate URL is served by `responses`, so
nothing leaves the process and a test can assert that a URL was never fetched.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import responses
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connector.webhooks import WebhookEvent, WebhookRejected, WebhookVerifier

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CERT_HOST = "certs.partner.example"
CERT_URL = f"https://{CERT_HOST}/cert/pcnotifications.pem"
REFERRAL_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


def _key_pem(leaf: trustme.LeafCert) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _leaf(ca: trustme.CA, *, organization: str = "Microsoft Corporation", **kwargs):
    return ca.issue_cert(
        "pcnotifications.microsoft.com",
        organization_name=organization,
        key_type=trustme.KeyType.RSA,
        **kwargs,
    )


@dataclass
class Delivery:
    """One event as Partner Center would send it; tests spoil one part and expect a reason."""

    key: rsa.RSAPrivateKey
    payload: dict[str, object] = field(
        default_factory=lambda: {
            "EventName": "referral-updated",
            "ResourceUri": "https://api.partnercenter.microsoft.com/engagements/v1/referrals/"
            + REFERRAL_ID,
            "ResourceName": "referral",
            "AuditUri": None,
            "ResourceChangeUtcDate": "2026-03-02T11:58:00.1234567+00:00",
        }
    )
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    signature_header: str = "Authorization"

    def raw_body(self) -> bytes:
        return self.body if self.body is not None else json.dumps(self.payload).encode()

    def sign(self, body: bytes) -> str:
        signature = self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def build(self) -> tuple[dict[str, str], bytes]:
        body = self.raw_body()
        signature = self.sign(body)
        headers = {
            "Content-Type": "application/json",
            "X-MS-Certificate-Url": CERT_URL,
            "X-MS-Signature-Algorithm": "rsa-sha256",
        }
        if self.signature_header == "Authorization":
            headers["Authorization"] = f"Signature {signature}"
        else:
            headers["x-ms-signature"] = signature
        headers.update(self.headers)
        return {k: v for k, v in headers.items() if v != "<drop>"}, body


@dataclass
class World:
    ca: trustme.CA
    ca_path: Path
    leaf: trustme.LeafCert
    clock: Clock
    mocked: responses.RequestsMock
    session: requests.Session

    def serve_certificate(self, pem: bytes, url: str = CERT_URL) -> None:
        self.mocked.get(url, body=pem, content_type="application/x-pem-file")

    def verifier(self, **overrides: object) -> WebhookVerifier:
        options: dict[str, object] = {
            "allowed_certificate_hosts": (CERT_HOST,),
            "session": self.session,
            "clock": self.clock,
        }
        options.update(overrides)
        return WebhookVerifier(self.ca_path, **options)  # type: ignore[arg-type]

    def delivery(self, leaf: trustme.LeafCert | None = None) -> Delivery:
        return Delivery(key=_key_pem(leaf or self.leaf))

    def fetches(self) -> list[str]:
        return [call.request.url or "" for call in self.mocked.calls]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ca = trustme.CA(organization_name="Test Root")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    leaf = _leaf(ca)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        session = requests.Session()
        world = World(ca, ca_path, leaf, Clock(), mocked, session)
        world.serve_certificate(leaf.cert_chain_pems[0].bytes())
        yield world
        session.close()


# -- what passes ----------------------------------------------------------------------------


def test_a_signed_referral_event_is_verified_into_its_referral_id_and_change_time(world):
    headers, body = world.delivery().build()

    event = world.verifier().verify(headers, body)

    assert event == WebhookEvent(
        "referral-updated",
        REFERRAL_ID,
        datetime(2026, 3, 2, 11, 58, 0, 123456, tzinfo=UTC),
    )


def test_the_signature_may_come_in_x_ms_signature_with_any_header_case(world):
    delivery = world.delivery()
    delivery.signature_header = "x-ms-signature"
    headers, body = delivery.build()
    shouted = {key.upper(): value for key, value in headers.items()}

    assert world.verifier().verify(shouted, body).name == "referral-updated"


def test_the_certificate_is_fetched_once_per_url_and_then_cached(world):
    verifier = world.verifier()
    for minute in (1, 2):
        delivery = world.delivery()
        delivery.payload["ResourceChangeUtcDate"] = f"2026-03-02T11:5{minute}:00+00:00"
        verifier.verify(*delivery.build())

    assert world.fetches() == [CERT_URL]


def test_a_chain_through_an_intermediate_sent_with_the_certificate_is_trusted(world):
    intermediate = world.ca.create_child_ca(key_type=trustme.KeyType.RSA)
    leaf = _leaf(intermediate)
    url = f"https://{CERT_HOST}/chained.pem"
    world.serve_certificate(b"".join(pem.bytes() for pem in leaf.cert_chain_pems), url)
    delivery = world.delivery(leaf)
    delivery.headers["X-MS-Certificate-Url"] = url

    assert world.verifier().verify(*delivery.build()).referral_id == REFERRAL_ID


def test_a_der_certificate_is_read_as_well_as_pem(world):
    der = world.leaf.cert_chain_pems[0].bytes()
    from cryptography import x509  # noqa: PLC0415

    url = f"https://{CERT_HOST}/pcnotifications.microsoft.com.cer"
    world.mocked.get(
        url, body=x509.load_pem_x509_certificate(der).public_bytes(serialization.Encoding.DER)
    )
    delivery = world.delivery()
    delivery.headers["X-MS-Certificate-Url"] = url

    assert world.verifier().verify(*delivery.build()).referral_id == REFERRAL_ID


# -- every rejection, with its reason ------------------------------------------------------

Spoil = Callable[[Delivery], None]


def _header(name: str, value: str) -> Spoil:
    def spoil(delivery: Delivery) -> None:
        delivery.headers[name] = value

    return spoil


def _payload(name: str, value: object) -> Spoil:
    def spoil(delivery: Delivery) -> None:
        delivery.payload[name] = value

    return spoil


def _body(raw: bytes) -> Spoil:
    def spoil(delivery: Delivery) -> None:
        delivery.body = raw

    return spoil


def _tamper_after_signing(delivery: Delivery) -> None:
    original = delivery.build

    def build() -> tuple[dict[str, str], bytes]:
        headers, body = original()
        return headers, body.replace(b"referral-updated", b"referral-created")

    delivery.build = build  # type: ignore[method-assign]


REJECTIONS: list[tuple[str, Spoil, str]] = [
    ("no signature header", _header("Authorization", "<drop>"), "missing_signature"),
    ("bearer, not Signature", _header("Authorization", "Bearer abc"), "malformed_signature"),
    ("garbled base64", _header("Authorization", "Signature @@not*base64@@"), "malformed_signature"),
    ("empty signature", _header("Authorization", "Signature "), "malformed_signature"),
    (
        "no algorithm",
        _header("X-MS-Signature-Algorithm", "<drop>"),
        "unsupported_signature_algorithm",
    ),
    (
        "rsa-sha1",
        _header("X-MS-Signature-Algorithm", "rsa-sha1"),
        "unsupported_signature_algorithm",
    ),
    ("no certificate URL", _header("X-MS-Certificate-Url", "<drop>"), "missing_certificate_url"),
    (
        "plain http certificate URL",
        _header("X-MS-Certificate-Url", f"http://{CERT_HOST}/cert.pem"),
        "certificate_url_not_https",
    ),
    (
        "certificate URL with credentials",
        _header("X-MS-Certificate-Url", f"https://user:pw@{CERT_HOST}/cert.pem"),
        "certificate_url_invalid",
    ),
    (
        "certificate URL with a bad port",
        _header("X-MS-Certificate-Url", f"https://{CERT_HOST}:http/cert.pem"),
        "certificate_url_invalid",
    ),
    (
        "certificate on another host",
        _header("X-MS-Certificate-Url", "https://169.254.169.254/latest/meta-data"),
        "certificate_host_not_allowed",
    ),
    (
        "certificate URL unreachable",
        _header("X-MS-Certificate-Url", f"https://{CERT_HOST}/missing.pem"),
        "certificate_unavailable",
    ),
    ("body changed after signing", _tamper_after_signing, "bad_signature"),
    ("not JSON", _body(b"{not json"), "malformed_json"),
    ("not UTF-8", _body(b"\xff\xfe{}"), "malformed_json"),
    ("a JSON array", _body(b"[]"), "malformed_event"),
    ("no EventName", _payload("EventName", None), "malformed_event"),
    ("not a referral resource", _payload("ResourceName", "subscription"), "malformed_event"),
    (
        "date without offset",
        _payload("ResourceChangeUtcDate", "2026-03-02T11:58:00"),
        "malformed_event",
    ),
    ("date not a date", _payload("ResourceChangeUtcDate", "yesterday"), "malformed_event"),
    ("unknown event", _payload("EventName", "subscription-updated"), "unknown_event"),
    ("test event", _payload("EventName", "test-created"), "unknown_event"),
    (
        "URI ends in a non-id",
        _payload(
            "ResourceUri", "https://api.partnercenter.microsoft.com/engagements/v1/referrals/x"
        ),
        "bad_resource_uri",
    ),
    (
        "URI of another resource",
        _payload(
            "ResourceUri", f"https://api.partnercenter.microsoft.com/v1/customers/{REFERRAL_ID}"
        ),
        "bad_resource_uri",
    ),
    (
        "id in braces",
        _payload(
            "ResourceUri",
            "https://api.partnercenter.microsoft.com/engagements/v1/referrals/{"
            + REFERRAL_ID
            + "}",
        ),
        "bad_resource_uri",
    ),
    ("stale event", _payload("ResourceChangeUtcDate", "2026-03-02T11:49:59+00:00"), "stale_event"),
    (
        "event from the future",
        _payload("ResourceChangeUtcDate", "2026-03-02T12:10:01+00:00"),
        "event_from_future",
    ),
]


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [pytest.param(spoil, reason, id=name) for name, spoil, reason in REJECTIONS],
)
def test_a_spoiled_delivery_is_rejected_with_its_reason(world, spoil, reason):
    delivery = world.delivery()
    spoil(delivery)

    with pytest.raises(WebhookRejected) as caught:
        world.verifier().verify(*delivery.build())

    assert caught.value.reason == reason


def test_a_forged_signature_from_another_key_is_rejected(world):
    forger = Delivery(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))

    with pytest.raises(WebhookRejected, match="bad_signature"):
        world.verifier().verify(*forger.build())


def test_a_certificate_for_another_organisation_is_rejected(world):
    impostor = _leaf(world.ca, organization="Microsoft Corporation Ltd")
    world.mocked.replace(responses.GET, CERT_URL, body=impostor.cert_chain_pems[0].bytes())

    with pytest.raises(WebhookRejected) as caught:
        world.verifier().verify(*world.delivery(impostor).build())

    assert caught.value.reason == "certificate_wrong_organization"


def test_a_certificate_from_another_ca_is_untrusted_even_with_the_right_organisation(world):
    stranger = _leaf(trustme.CA(organization_name="Microsoft Corporation"))
    world.mocked.replace(responses.GET, CERT_URL, body=stranger.cert_chain_pems[0].bytes())

    with pytest.raises(WebhookRejected) as caught:
        world.verifier().verify(*world.delivery(stranger).build())

    assert caught.value.reason == "certificate_untrusted"


@pytest.mark.parametrize(
    ("valid", "reason"),
    [
        ({"not_after": NOW - timedelta(days=1)}, "certificate_expired"),
        ({"not_before": NOW + timedelta(days=1)}, "certificate_not_yet_valid"),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_a_certificate_outside_its_validity_is_rejected(world, valid, reason):
    if "not_after" in valid:
        valid["not_before"] = NOW - timedelta(days=30)
    else:
        valid["not_after"] = NOW + timedelta(days=30)
    leaf = _leaf(world.ca, **valid)
    world.mocked.replace(responses.GET, CERT_URL, body=leaf.cert_chain_pems[0].bytes())

    with pytest.raises(WebhookRejected) as caught:
        world.verifier().verify(*world.delivery(leaf).build())

    assert caught.value.reason == reason


def test_an_answer_that_is_not_a_certificate_is_rejected(world):
    world.mocked.replace(responses.GET, CERT_URL, body=b"<html>hello</html>")

    with pytest.raises(WebhookRejected, match="certificate_unavailable"):
        world.verifier().verify(*world.delivery().build())


def test_the_same_delivery_twice_is_a_replay(world):
    verifier = world.verifier()
    headers, body = world.delivery().build()
    verifier.verify(headers, body)

    with pytest.raises(WebhookRejected, match="replayed_event"):
        verifier.verify(headers, body)


def test_a_replay_is_remembered_until_the_event_would_be_stale_anyway(world):
    verifier = world.verifier()
    headers, body = world.delivery().build()
    verifier.verify(headers, body)
    world.clock.current = NOW + timedelta(minutes=5)

    with pytest.raises(WebhookRejected, match="replayed_event"):
        verifier.verify(headers, body)
    world.clock.current = NOW + timedelta(minutes=9)
    with pytest.raises(WebhookRejected, match="stale_event"):
        verifier.verify(headers, body)


def test_a_rejected_delivery_does_not_poison_the_replay_memory(world):
    verifier = world.verifier()
    good = world.delivery()
    headers, body = good.build()
    spoiled = dict(headers, Authorization="Signature " + base64.b64encode(b"x" * 256).decode())
    with pytest.raises(WebhookRejected, match="bad_signature"):
        verifier.verify(spoiled, body)

    assert verifier.verify(headers, body).referral_id == REFERRAL_ID


def test_max_age_bounds_how_old_an_event_may_be(world):
    headers, body = world.delivery().build()  # changed two minutes before NOW

    with pytest.raises(WebhookRejected, match="stale_event"):
        world.verifier(max_age=timedelta(minutes=1)).verify(headers, body)


# -- SSRF: no fetch from a URL the allow-list does not name ---------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost/admin",
        f"https://{CERT_HOST}.evil.example/cert.pem",
        f"https://evil.example/{CERT_HOST}/cert.pem",
        f"https://{CERT_HOST}@evil.example/cert.pem",
        f"http://{CERT_HOST}/cert.pem",
        "file:///etc/passwd",
    ],
)
def test_a_certificate_url_outside_the_allow_list_is_never_fetched(world, url):
    world.mocked.get(url, body=world.leaf.cert_chain_pems[0].bytes())  # would "work" if fetched
    delivery = world.delivery()
    delivery.headers["X-MS-Certificate-Url"] = url

    with pytest.raises(WebhookRejected) as caught:
        world.verifier().verify(*delivery.build())

    assert caught.value.reason.startswith("certificate_")
    assert world.fetches() == []


def test_an_empty_allow_list_is_refused_at_construction(world):
    with pytest.raises(ValueError, match="allowed_certificate_hosts"):
        world.verifier(allowed_certificate_hosts=())
