"""Forged, malformed and replayed webhook deliveries, one file each: the receiver answers with
the status and reason the case names, hands nothing on, never fetches a certificate it was not
allowed to, and the genuine delivery that follows is still accepted.

Cases live in ``tests/data/bad_input/webhook/<case>.json``. A delivery starts as Partner Center
would send it (a ``referral-updated`` event signed ``rsa-sha256`` by the certificate at the
allowed URL) and the case spoils one part: ``headers`` (a value replaces, ``null`` drops),
``body`` (merged into the event) / ``remove`` / ``body_text`` / ``body_hex``, ``sign``
(``other_key``: a forger's key; ``other_body``: a genuine signature of another event),
``certificate`` (``wrong_organization``, ``expired``, ``untrusted``, ``html``),
``changed_offset_seconds``, ``deliveries`` (sent that many times), ``method``. ``expect``:
``{"status", "reason"}``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from connector.webhooks import WebhookEvent, WebhookVerifier, make_webhook_handler

CASES_DIR = Path(__file__).parents[1] / "data" / "bad_input" / "webhook"
CASES = sorted(CASES_DIR.glob("*.json"))
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOST = "certs.partner.example"
CERT_URL = f"https://{HOST}/cert.pem"
REFERRAL_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


class Clock:
    def now(self) -> datetime:
        return NOW


@dataclass(frozen=True)
class Signer:
    key: rsa.RSAPrivateKey
    url: str

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def _rsa(leaf: trustme.LeafCert) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _leaf(ca: trustme.CA, organization: str, **kwargs: datetime) -> trustme.LeafCert:
    return ca.issue_cert(
        "pc", organization_name=organization, key_type=trustme.KeyType.RSA, **kwargs
    )


@dataclass
class Certificates:
    ca_path: Path
    signers: dict[str, Signer]
    pems: dict[str, bytes]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    ca = trustme.CA(organization_name="Test Root")
    ca_path = tmp_path_factory.mktemp("webhook-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    rogue = trustme.CA(organization_name="Microsoft Corporation")
    ms = "Microsoft Corporation"
    leaves = {
        "good": _leaf(ca, ms),
        "wrong_organization": _leaf(ca, "Microsoft Corp."),
        "expired": _leaf(
            ca, ms, not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1)
        ),
        "untrusted": _leaf(rogue, ms),
    }
    signers = {
        name: Signer(_rsa(leaf), f"https://{HOST}/{name}.pem") for name, leaf in leaves.items()
    }
    signers["good"] = Signer(signers["good"].key, CERT_URL)
    signers["html"] = Signer(signers["good"].key, f"https://{HOST}/html.pem")
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signers["other_key"] = Signer(forger, CERT_URL)
    pems = {signers[name].url: leaf.cert_chain_pems[0].bytes() for name, leaf in leaves.items()}
    pems[signers["html"].url] = b"<html><body>Not found</body></html>"
    return Certificates(ca_path, signers, pems)


@dataclass
class Receiver:
    handle: Any
    events: list[WebhookEvent]
    fetched: list[str]

    def post(self, headers: dict[str, str], body: bytes, method: str = "POST") -> tuple[int, Any]:
        builder = EnvironBuilder(
            path="/webhooks/partner-center", method=method, data=body, headers=headers
        )
        response = self.handle(Request(builder.get_environ()))
        return response.status_code, json.loads(response.get_data())


@pytest.fixture
def receiver(certificates: Certificates) -> Iterator[Receiver]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        for url, pem in certificates.pems.items():
            mocked.get(url, body=pem, content_type="application/x-pem-file")
        session = requests.Session()
        session.trust_env = False
        verifier = WebhookVerifier(
            certificates.ca_path, allowed_certificate_hosts=(HOST,), session=session, clock=Clock()
        )
        events: list[WebhookEvent] = []
        fetched: list[str] = []
        yield Receiver(make_webhook_handler(verifier, events.append), events, fetched)
        fetched.extend(call.request.url or "" for call in mocked.calls)
        session.close()


def event(changed: datetime, **changes: Any) -> dict[str, Any]:
    stamp = changed.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0+00:00"
    return {
        "EventName": "referral-updated",
        "ResourceUri": f"https://api.partnercenter.microsoft.com/engagements/v1/referrals/{REFERRAL_ID}",
        "ResourceName": "referral",
        "AuditUri": None,
        "ResourceChangeUtcDate": stamp,
        **changes,
    }  # fmt: skip


def delivery(case: dict[str, Any], certificates: Certificates) -> tuple[dict[str, str], bytes]:
    changed = NOW + timedelta(seconds=case.get("changed_offset_seconds", -60))
    document = event(changed, **case.get("body", {}))
    for key in case.get("remove", []):
        document.pop(key)
    if "body_text" in case:
        body = case["body_text"].encode("utf-8")
    elif "body_hex" in case:
        body = bytes.fromhex(case["body_hex"])
    else:
        body = json.dumps(document).encode("utf-8")
    signer = certificates.signers[case.get("certificate", "good")]
    signed = body
    if case.get("sign") == "other_key":
        signer = Signer(certificates.signers["other_key"].key, signer.url)
    elif case.get("sign") == "other_body":
        signed = json.dumps(event(NOW - timedelta(seconds=30))).encode("utf-8")
    headers: dict[str, str | None] = {
        "Content-Type": "application/json",
        "Authorization": f"Signature {signer.sign(signed)}",
        "X-MS-Certificate-Url": signer.url,
        "X-MS-Signature-Algorithm": "rsa-sha256",
        **case.get("headers", {}),
    }
    return {k: v for k, v in headers.items() if v is not None}, body


def genuine(certificates: Certificates, minute: int) -> tuple[dict[str, str], bytes]:
    body = json.dumps(event(NOW - timedelta(minutes=minute))).encode("utf-8")
    signer = certificates.signers["good"]
    return {
        "Content-Type": "application/json",
        "Authorization": f"Signature {signer.sign(body)}",
        "X-MS-Certificate-Url": CERT_URL,
        "X-MS-Signature-Algorithm": "rsa-sha256",
    }, body


def test_the_webhook_corpus_covers_forgery_replay_and_bad_bodies():
    stems = {path.stem for path in CASES}
    assert {"signature_from_another_key", "replayed_event", "stale_event"} <= stems
    assert len(CASES) >= 25


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_a_bad_delivery_is_refused_with_its_reason_and_the_next_genuine_one_passes(
    path: Path, receiver: Receiver, certificates: Certificates
):
    case = json.loads(path.read_text(encoding="utf-8"))
    assert case.get("_comment"), "every case says what it is"
    headers, body = delivery(case, certificates)
    expect = case["expect"]

    answers = [
        receiver.post(headers, body, case.get("method", "POST"))
        for _ in range(case.get("deliveries", 1))
    ]

    status, answer = answers[-1]
    assert status == expect["status"], answer
    assert expect["reason"] in (answer.get("reason"), answer.get("error")), answer
    accepted_before = sum(code == 202 for code, _ in answers)
    assert len(receiver.events) == accepted_before
    assert receiver.post(*genuine(certificates, minute=2)) == (202, {"accepted": True})
    assert len(receiver.events) == accepted_before + 1
    allowed = set(certificates.pems)
    assert all(url in allowed for url in receiver.fetched), receiver.fetched
