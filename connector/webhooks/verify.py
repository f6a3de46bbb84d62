"""Is this POST really a Partner Center referral event? The checks, in the order they run.

Partner Center signs each event (spec §5, [WH] "How to authenticate the callback"): the base64
RSA signature of the raw body is in ``Authorization: Signature <b64>``, or in ``x-ms-signature``
when the registration set ``signatureTokenToMsSignatureHeader``; ``X-MS-Certificate-Url`` links
the signing certificate; ``X-MS-Signature-Algorithm`` is ``rsa-sha256``. The receiver must check
the certificate chain and its organisation ("Microsoft Corporation") before trusting the key.

:meth:`WebhookVerifier.verify` raises :class:`WebhookRejected` with one ``reason`` per failed
check, cheapest first, and fetches nothing until the headers pass:

=================================  ==========================================================
``missing_signature``              neither ``x-ms-signature`` nor ``Authorization`` is there
``malformed_signature``            not the ``Signature`` scheme, or not base64
``unsupported_signature_algorithm``  ``X-MS-Signature-Algorithm`` absent or not ``rsa-sha256``
``missing_certificate_url``        no ``X-MS-Certificate-Url``
``certificate_url_invalid``        it does not parse, or carries user:password@
``certificate_url_not_https``      not ``https``: never fetched
``certificate_host_not_allowed``   its host is not in the allow-list: never fetched (SSRF)
``certificate_unavailable``        the fetch failed, or the answer is not a certificate
``certificate_not_yet_valid``      before the certificate's notBefore
``certificate_expired``            after its notAfter
``certificate_untrusted``          no chain to a trusted CA
``certificate_wrong_organization``  the subject's O is not exactly "Microsoft Corporation"
``bad_signature``                  the signature does not match the body (or the key is not RSA)
``malformed_json``                 the body is not UTF-8 JSON
``malformed_event``                not an object with the documented fields and types
``unknown_event``                  not ``referral-created`` / ``referral-updated``
``bad_resource_uri``               its last segment is not a referral id (a GUID)
``stale_event``                    ``ResourceChangeUtcDate`` older than ``max_age``
``event_from_future``              more than ``max_age`` ahead of our clock
``replayed_event``                 the same (referral, date, signature) seen within ``max_age``
=================================  ==========================================================

Certificates are cached by URL for an hour (the link exists so Microsoft can renew the
certificate without receivers re-deploying). Chain checking uses
``cryptography.x509.verification`` where it takes custom extension policies (cryptography 45+),
else checks each issuer's signature along the chain itself. The signing certificate is not a
TLS server certificate, so its own extensions are not held to web-PKI rules; its CAs are.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from connector.errors import ReferralSyncError
from connector.ports import Clock

__all__ = ["REFERRAL_EVENTS", "WebhookEvent", "WebhookRejected", "WebhookVerifier"]

REFERRAL_EVENTS = frozenset({"referral-created", "referral-updated"})
SIGNATURE_ALGORITHM = "rsa-sha256"
ORGANIZATION = "Microsoft Corporation"
CERTIFICATE_TTL = timedelta(hours=1)
_MAX_CERTIFICATE_BYTES = 64 * 1024
_MAX_SIGNATURE_BYTES = 1024  # RSA-8192
_FETCH_TIMEOUT = (3.05, 10.0)
_CACHE_SIZE = 16


class WebhookRejected(ReferralSyncError):
    """A delivery that is not a verified referral event. ``reason`` is a snake_case code (the
    table in this module's docstring); ``detail`` says more, never with body content."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified event: which referral changed, how, and when (aware UTC)."""

    name: str
    referral_id: str
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class _Fetched:
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    fetched_at: datetime


class WebhookVerifier:
    """Verifies deliveries; thread-safe (one lock guards the certificate cache and the replay
    memory). ``trusted_ca`` is a PEM bundle of the CAs to chain to (``None``: certifi's)."""

    def __init__(
        self,
        trusted_ca: Path | None,
        *,
        allowed_certificate_hosts: tuple[str, ...],
        session: requests.Session,
        clock: Clock,
        max_age: timedelta = timedelta(minutes=10),
    ) -> None:
        if not allowed_certificate_hosts:
            raise ValueError("allowed_certificate_hosts must name at least one host")
        bundle = Path(trusted_ca) if trusted_ca is not None else Path(certifi.where())
        self._anchors = tuple(x509.load_pem_x509_certificates(bundle.read_bytes()))
        self._allowed = frozenset(host.lower().rstrip(".") for host in allowed_certificate_hosts)
        self._session = session
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._certificates: dict[str, _Fetched] = {}
        self._seen: dict[tuple[str, str, str], datetime] = {}

    def verify(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        lowered = {key.lower(): value for key, value in headers.items()}
        signature_text, signature = _signature(lowered)
        algorithm = lowered.get("x-ms-signature-algorithm", "").strip().lower()
        if algorithm != SIGNATURE_ALGORITHM:
            raise WebhookRejected("unsupported_signature_algorithm", algorithm or "(none)")
        url = self._checked_certificate_url(lowered.get("x-ms-certificate-url", "").strip())
        now = self._clock.now()
        fetched = self._certificate(url, now)
        self._check_certificate(fetched, now)
        _check_signature(fetched.leaf, signature, body)
        event, stamp = _parse_event(body)
        if now - event.changed_at > self._max_age:
            raise WebhookRejected("stale_event", f"changed {now - event.changed_at} ago")
        if event.changed_at - now > self._max_age:
            raise WebhookRejected("event_from_future", f"{event.changed_at - now} ahead")
        self._remember(event, stamp, signature_text, now)
        return event

    # -- the certificate ----------------------------------------------------------------

    def _checked_certificate_url(self, url: str) -> str:
        if not url:
            raise WebhookRejected("missing_certificate_url")
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
            _ = parts.port  # raises on a port that is not a number
        except ValueError:
            raise WebhookRejected("certificate_url_invalid") from None
        if parts.username is not None or parts.password is not None or not host:
            raise WebhookRejected("certificate_url_invalid")
        if parts.scheme.lower() != "https":
            raise WebhookRejected("certificate_url_not_https", parts.scheme or "(none)")
        if host not in self._allowed:
            raise WebhookRejected("certificate_host_not_allowed", host)
        return url

    def _certificate(self, url: str, now: datetime) -> _Fetched:
        with self._lock:
            cached = self._certificates.get(url)
        if cached is not None and now - cached.fetched_at < CERTIFICATE_TTL:
            return cached
        fetched = self._fetch(url, now)
        with self._lock:
            if len(self._certificates) >= _CACHE_SIZE:
                self._certificates.pop(next(iter(self._certificates)))
            self._certificates[url] = fetched
        return fetched

    def _fetch(self, url: str, now: datetime) -> _Fetched:
        try:
            with self._session.get(
                url, timeout=_FETCH_TIMEOUT, allow_redirects=False, stream=True
            ) as response:
                if response.status_code != 200:
                    raise WebhookRejected("certificate_unavailable", f"HTTP {response.status_code}")
                data = response.raw.read(_MAX_CERTIFICATE_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise WebhookRejected("certificate_unavailable", type(exc).__name__) from None
        if len(data) > _MAX_CERTIFICATE_BYTES:
            raise WebhookRejected("certificate_unavailable", "too large")
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                certificates = x509.load_pem_x509_certificates(data)
            else:
                certificates = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise WebhookRejected("certificate_unavailable", "not a certificate") from None
        return _Fetched(certificates[0], tuple(certificates[1:]), now)

    def _check_certificate(self, fetched: _Fetched, now: datetime) -> None:
        leaf = fetched.leaf
        if now < leaf.not_valid_before_utc:
            raise WebhookRejected("certificate_not_yet_valid")
        if now > leaf.not_valid_after_utc:
            raise WebhookRejected("certificate_expired")
        if not _chains_to(leaf, fetched.intermediates, self._anchors, now):
            raise WebhookRejected("certificate_untrusted")
        organizations = [
            attribute.value
            for attribute in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        ]
        if ORGANIZATION not in organizations:
            raise WebhookRejected("certificate_wrong_organization")

    # -- replays ------------------------------------------------------------------------

    def _remember(self, event: WebhookEvent, stamp: str, signature: str, now: datetime) -> None:
        key = (event.referral_id, stamp, signature)
        with self._lock:
            for old in [k for k, until in self._seen.items() if until <= now]:
                del self._seen[old]
            if key in self._seen:
                raise WebhookRejected("replayed_event")
            self._seen[key] = max(now, event.changed_at) + self._max_age


def _signature(headers: Mapping[str, str]) -> tuple[str, bytes]:
    raw = headers.get("x-ms-signature")
    if raw is None:
        authorization = headers.get("authorization")
        if authorization is None:
            raise WebhookRejected("missing_signature")
        scheme, _, raw = authorization.strip().partition(" ")
        if scheme.lower() != "signature":
            raise WebhookRejected(
                "malformed_signature", "the Authorization scheme is not Signature"
            )
    else:
        scheme, _, rest = raw.strip().partition(" ")
        if rest and scheme.lower() == "signature":
            raw = rest
    text = raw.strip()
    try:
        signature = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("malformed_signature", "not base64") from None
    if not signature or len(signature) > _MAX_SIGNATURE_BYTES:
        raise WebhookRejected("malformed_signature", "empty or too long")
    return text, signature


def _check_signature(leaf: x509.Certificate, signature: bytes, body: bytes) -> None:
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRejected("bad_signature", "the certificate's key is not RSA")
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise WebhookRejected("bad_signature") from None


def _chains_to(
    leaf: x509.Certificate,
    intermediates: tuple[x509.Certificate, ...],
    anchors: tuple[x509.Certificate, ...],
    now: datetime,
) -> bool:
    try:
        from cryptography.x509.verification import (  # noqa: PLC0415 - optional by version
            ExtensionPolicy,
            PolicyBuilder,
            Store,
            VerificationError,
        )
    except ImportError:  # cryptography < 45: no custom extension policies
        return _chains_by_signatures(leaf, intermediates, anchors, now)
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(now)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(intermediates))
    except VerificationError:
        return False
    return True


def _chains_by_signatures(
    leaf: x509.Certificate,
    intermediates: tuple[x509.Certificate, ...],
    anchors: tuple[x509.Certificate, ...],
    now: datetime,
) -> bool:
    """Walk issuer → subject up to an anchor, checking each signature, CA flag and validity."""
    current = leaf
    pool = list(intermediates)
    for _ in range(len(intermediates) + 1):
        for anchor in anchors:
            if _issued_by(current, anchor, now):
                return True
        parent = next((c for c in pool if _issued_by(current, c, now)), None)
        if parent is None:
            return False
        pool.remove(parent)
        current = parent
    return False


def _issued_by(child: x509.Certificate, issuer: x509.Certificate, now: datetime) -> bool:
    if child.issuer != issuer.subject:
        return False
    if not issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc:
        return False
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        child.verify_directly_issued_by(issuer)
    except (x509.ExtensionNotFound, ValueError, TypeError, InvalidSignature):
        return False
    return constraints.ca


def _parse_event(body: bytes) -> tuple[WebhookEvent, str]:
    """The event and its ``ResourceChangeUtcDate`` exactly as sent (for the replay key)."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected("malformed_json") from None
    if not isinstance(document, dict):
        raise WebhookRejected("malformed_event", "not a JSON object")
    name, uri, stamp = (
        document.get(key) for key in ("EventName", "ResourceUri", "ResourceChangeUtcDate")
    )
    if not isinstance(name, str) or not isinstance(uri, str) or not isinstance(stamp, str):
        raise WebhookRejected("malformed_event", "EventName, ResourceUri or date missing")
    if name not in REFERRAL_EVENTS:
        raise WebhookRejected("unknown_event")
    if document.get("ResourceName", "referral") != "referral":
        raise WebhookRejected("malformed_event", "ResourceName is not referral")
    return WebhookEvent(name, _referral_id(uri), _changed_at(stamp)), stamp


def _referral_id(uri: str) -> str:
    try:
        segments = urlsplit(uri).path.rstrip("/").split("/")
    except ValueError:
        raise WebhookRejected("bad_resource_uri") from None
    if len(segments) < 2 or segments[-2].lower() != "referrals":
        raise WebhookRejected("bad_resource_uri", "not a referral's URI")
    candidate = segments[-1]
    try:
        parsed = uuid.UUID(candidate)
    except ValueError:
        raise WebhookRejected("bad_resource_uri", "the last segment is not a GUID") from None
    if str(parsed) != candidate.lower():  # refuse braces, urn: and hex without dashes
        raise WebhookRejected("bad_resource_uri", "the last segment is not a GUID")
    return candidate


def _changed_at(stamp: str) -> datetime:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise WebhookRejected("malformed_event", "ResourceChangeUtcDate is not ISO 8601") from None
    if moment.tzinfo is None:
        raise WebhookRejected("malformed_event", "ResourceChangeUtcDate has no offset")
    return moment.astimezone(UTC)
