"""Partner Center webhooks (spec §5): the registration API, and an emitter that signs and POSTs.

Routes (served by :class:`~sandbox.partner_center.simulator.PartnerCenterSimulator`; the real
service lives on ``api.partnercenter.microsoft.com``, the sandbox puts it on the Partner Center
server), with the route names fault rules use:

=====  ============================================  ===========================
GET    /webhooks/v1/registration/events              ``webhooks_events``
POST   /webhooks/v1/registration                     ``webhooks_register``
GET    /webhooks/v1/registration                     ``webhooks_registration``
PUT    /webhooks/v1/registration                     ``webhooks_update``
POST   /webhooks/v1/registration/validationEvents    ``webhooks_validate``
GET    /webhooks/v1/registration/validationEvents/ID ``webhooks_validation``
GET    /webhooks/v1/certificate.pem                  ``webhooks_certificate``
=====  ============================================  ===========================

Documented [WH]: the shapes (``{"WebhookUrl", "WebhookEvents"}`` in, ``SubscriberId`` added out;
GET shows no ``SubscriberId``; validation answers ``{"correlationId"}``), the bearer token,
App-only and App+User both allowed, validation needs ``test-created`` in the registration and is
limited to 2 a minute, ``SignatureTokenToMsSignatureHeader`` moves the signature from
``Authorization: Signature <b64>`` to ``x-ms-signature``, and the event body. Property names
are matched case-insensitively (the docs and the connectors' docs spell
``signatureTokenToMsSignatureHeader`` both ways; the service is ASP.NET).

UNDOCUMENTED, chosen here: the token audience is the Referrals API's (the docs ask for one for
``api.partnercenter.microsoft.com``; the sandbox tenant has one resource); errors use the
Referrals envelope (:func:`~sandbox.partner_center.errors.error_body`); GET or PUT with no
registration → 404, POST over an existing one → 409; ``WebhookUrl`` must be ``https``, except
plain ``http`` to a loopback host (the daemon's receiver); x-ms-signature carries the bare
base64 (no ``Signature`` scheme); the certificate is served as PEM, unauthenticated, at
:data:`CERTIFICATE_PATH` (the real one is a ``.cer`` on blob storage).

Emitter: every create/update of a referral (a :class:`ReferralStore` observer) whose event the
registration lists is queued (bounded: when full, the event is logged and dropped) and POSTed
from one background thread, signed RSA-SHA256 over the exact body bytes. A delivery that gets no
2xx is retried with doubling backoff, then logged and dropped: the real service makes 10
attempts and then parks the event offline, never replaying it. Every attempt is recorded
(:meth:`WebhookService.attempts`) for tests, which can also send a forged event
(:meth:`WebhookService.emit_forged`: a valid-looking delivery signed with the wrong key).
"""

from __future__ import annotations

import base64
import http
import ipaddress
import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.wrappers import Request, Response

from sandbox.partner_center.errors import ApiError
from sandbox.partner_center.store import Clock, WriteKind

__all__ = [
    "CERTIFICATE_PATH",
    "EMITTED_EVENTS",
    "REGISTRATION_PATH",
    "RESOURCE_BASE",
    "SUPPORTED_EVENTS",
    "DeliveryAttempt",
    "Registration",
    "WebhookEmitter",
    "WebhookService",
    "WebhookSigner",
]

logger = logging.getLogger("sandbox.partner_center.webhooks")

REGISTRATION_PATH = "/webhooks/v1/registration"
CERTIFICATE_PATH = "/webhooks/v1/certificate.pem"
RESOURCE_BASE = "https://api.partnercenter.microsoft.com"
SUPPORTED_EVENTS = (
    "test-created",
    "subscription-updated",
    "usagerecords-thresholdExceeded",
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
)
"""What ``GET .../events`` lists (registering for any is allowed; see :data:`EMITTED_EVENTS`)."""
EMITTED_EVENTS = ("test-created", "referral-created", "referral-updated")
VALIDATIONS_PER_MINUTE = 2
SIGNATURE_ALGORITHM = "rsa-sha256"


@dataclass(frozen=True, slots=True)
class Registration:
    subscriber_id: str
    url: str
    events: tuple[str, ...]
    ms_signature_header: bool = False

    def wire(self, *, with_id: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"SubscriberId": self.subscriber_id} if with_id else {}
        return {**body, "WebhookUrl": self.url, "WebhookEvents": list(self.events)}


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST to the registered URL: ``status`` is the answer, ``error`` the transport error."""

    event_name: str
    resource_uri: str
    url: str
    attempt: int
    status: int | None
    error: str | None = None
    forged: bool = False
    correlation_id: str | None = None
    sent_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSigner:
    """An RSA key and its certificate (PEM, as served at the certificate URL)."""

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("webhook events are signed rsa-sha256: the key must be RSA")
        self._key = key
        self.cert_pem = cert_pem

    @classmethod
    def throwaway(cls) -> WebhookSigner:
        """A fresh key with no certificate of its own: what a forger has."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(pem, b"")

    def sign(self, body: bytes) -> str:
        signature = self._key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")


@dataclass(frozen=True, slots=True)
class _Delivery:
    url: str
    headers: Mapping[str, str]
    body: bytes
    event_name: str
    resource_uri: str
    generation: int
    forged: bool = False
    correlation_id: str | None = None


def event_body(event_name: str, resource_uri: str, moment: datetime) -> bytes:
    """The documented event JSON (``ResourceChangeUtcDate`` with seven digits and +00:00)."""
    utc = moment.astimezone(UTC)
    stamp = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0+00:00"
    resource_name = "test" if event_name == "test-created" else "referral"
    payload = {
        "EventName": event_name,
        "ResourceUri": resource_uri,
        "ResourceName": resource_name,
        "AuditUri": None,
        "ResourceChangeUtcDate": stamp,
    }
    return json.dumps(payload).encode("utf-8")


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookEmitter:
    """A bounded queue and one thread POSTing deliveries, retrying, recording every attempt."""

    def __init__(
        self,
        *,
        ca_bundle: Path | str | None,
        clock: Clock | None = None,
        max_queue: int = 256,
        max_attempts: int = 4,
        backoff_s: float = 0.2,
        timeout: tuple[float, float] = (2.0, 5.0),
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._queue: queue.Queue[_Delivery | None] = queue.Queue(maxsize=max_queue)
        self._clock = clock
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._timeout = timeout
        self._stopping = threading.Event()
        self._sleep = sleep or self._interruptible_sleep
        self._session = requests.Session()
        self._session.trust_env = False  # no proxies, no REQUESTS_CA_BUNDLE override
        self._session.verify = str(ca_bundle) if ca_bundle else True
        self._changed = threading.Condition()
        self._attempts: list[DeliveryAttempt] = []
        self._generation = 0
        self.dropped = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="sandbox-webhook-emitter", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.clear()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None
        self._session.close()

    @property
    def generation(self) -> int:
        return self._generation

    def submit(self, delivery: _Delivery) -> bool:
        """Queue one delivery; ``False`` (logged, counted in ``dropped``) if the queue is full."""
        try:
            self._queue.put_nowait(delivery)
        except queue.Full:
            self.dropped += 1
            logger.warning(
                "webhook_queue_full event=%s resource=%s: dropped",
                delivery.event_name,
                delivery.resource_uri,
            )
            return False
        return True

    def clear(self) -> None:
        """Forget queued deliveries and recorded attempts; stop retrying the one in flight."""
        with self._changed:
            self._generation += 1
            self._attempts.clear()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def attempts(self) -> list[DeliveryAttempt]:
        with self._changed:
            return list(self._attempts)

    def wait_for(
        self, predicate: Callable[[list[DeliveryAttempt]], bool], timeout: float = 10.0
    ) -> list[DeliveryAttempt]:
        """Block until ``predicate(attempts)`` holds (returns them) or raise ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._attempts)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"webhook deliveries so far: {self._attempts}")
                self._changed.wait(remaining)
            return list(self._attempts)

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None or self._stopping.is_set():
                return
            self._deliver(delivery)

    def _deliver(self, delivery: _Delivery) -> None:
        for attempt in range(1, self._max_attempts + 1):
            if delivery.generation != self._generation or self._stopping.is_set():
                return
            sent_at = self._clock.now() if self._clock is not None else datetime.now(UTC)
            status, error = self._post(delivery)
            record = DeliveryAttempt(
                delivery.event_name,
                delivery.resource_uri,
                delivery.url,
                attempt,
                status,
                error,
                delivery.forged,
                delivery.correlation_id,
                sent_at,
            )
            with self._changed:
                if delivery.generation == self._generation:
                    self._attempts.append(record)
                self._changed.notify_all()
            if record.ok:
                return
            if attempt < self._max_attempts:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
        logger.warning(
            "webhook_delivery_dropped event=%s resource=%s attempts=%s last_status=%s",
            delivery.event_name,
            delivery.resource_uri,
            self._max_attempts,
            status if status is not None else error,
        )

    def _post(self, delivery: _Delivery) -> tuple[int | None, str | None]:
        parts = urlsplit(delivery.url)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname)):
            return None, "refused: plain http is only sent to a loopback host"
        try:
            response = self._session.post(
                delivery.url,
                data=delivery.body,
                headers=dict(delivery.headers),
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return None, type(exc).__name__
        response.close()
        return response.status_code, None


@dataclass(slots=True)
class _Validation:
    correlation_id: str
    callback_url: str
    created: datetime
    results: list[dict[str, Any]] = field(default_factory=list)


class WebhookService:
    """The registration API's state (one registration: the sandbox has one partner tenant),
    the validation throttle, and the emitter once :meth:`configure` has given it a key."""

    def __init__(self, clock: Clock, *, partner_id: str) -> None:
        self._clock = clock
        self._partner_id = partner_id
        self._lock = threading.Lock()
        self._registration: Registration | None = None
        self._validation_times: deque[datetime] = deque()
        self._validations: dict[str, _Validation] = {}
        self._signer: WebhookSigner | None = None
        self._forger: WebhookSigner | None = None
        self._emitter: WebhookEmitter | None = None
        self.certificate_url: str | None = None

    # -- life cycle (the sandbox) ---------------------------------------------------------

    def configure(
        self, signer: WebhookSigner, *, certificate_url: str, emitter: WebhookEmitter
    ) -> None:
        """Start emitting: sign with ``signer``, point receivers at ``certificate_url``."""
        self._signer = signer
        self.certificate_url = certificate_url
        self._emitter = emitter
        emitter.start()

    def stop(self) -> None:
        if self._emitter is not None:
            self._emitter.stop()

    def reset(self) -> None:
        """No registration, no throttle history, nothing queued or recorded."""
        with self._lock:
            self._registration = None
            self._validation_times.clear()
            self._validations.clear()
        if self._emitter is not None:
            self._emitter.clear()

    # -- test aids ------------------------------------------------------------------------

    @property
    def registration(self) -> Registration | None:
        return self._registration

    @property
    def emitter(self) -> WebhookEmitter:
        if self._emitter is None:
            raise RuntimeError("webhooks are not configured (the sandbox configures them)")
        return self._emitter

    def attempts(self) -> list[DeliveryAttempt]:
        return self.emitter.attempts()

    def delivered(self) -> list[DeliveryAttempt]:
        """The attempts that got a 2xx."""
        return [attempt for attempt in self.attempts() if attempt.ok]

    def wait_for(
        self, predicate: Callable[[list[DeliveryAttempt]], bool], timeout: float = 10.0
    ) -> list[DeliveryAttempt]:
        return self.emitter.wait_for(predicate, timeout)

    def emit_forged(self, referral_id: str, event_name: str = "referral-updated") -> bool:
        """Send the registered URL an event signed with another key (same certificate URL)."""
        if self._forger is None:
            self._forger = WebhookSigner.throwaway()
        return self._emit(event_name, _referral_uri(referral_id), self._forger, forged=True)

    def signed_delivery(
        self, event_name: str, resource_uri: str, moment: datetime | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The headers and body a delivery would have (for a test to send itself)."""
        if self._signer is None or self.certificate_url is None:
            raise RuntimeError("webhooks are not configured (the sandbox configures them)")
        body = event_body(event_name, resource_uri, moment or self._clock.now())
        registration = self._registration
        in_ms_header = registration is not None and registration.ms_signature_header
        return self._headers(self._signer.sign(body), in_ms_header), body

    # -- the store's observer -------------------------------------------------------------

    def on_referral_written(self, kind: WriteKind, referral_id: str, moment: datetime) -> None:
        if self._signer is None:
            return
        self._emit(f"referral-{kind}", _referral_uri(referral_id), self._signer, moment=moment)

    # -- routes ---------------------------------------------------------------------------

    def handle(self, endpoint: str, request: Request, **args: str) -> Response:
        handlers: dict[str, Callable[..., Response]] = {
            "webhooks_events": self._events,
            "webhooks_register": self._register,
            "webhooks_registration": self._get_registration,
            "webhooks_update": self._update,
            "webhooks_validate": self._validate,
            "webhooks_validation": self._validation,
            "webhooks_certificate": self._certificate,
        }
        response = handlers[endpoint](request, **args)
        response.headers["MS-CorrelationId"] = request.headers.get(
            "MS-CorrelationId", str(uuid.uuid4())
        )
        response.headers["MS-RequestId"] = str(uuid.uuid4())
        return response

    def _events(self, _request: Request) -> Response:
        return _json(list(SUPPORTED_EVENTS))

    def _register(self, request: Request) -> Response:
        url, events, in_ms_header = _read_registration(request)
        with self._lock:
            if self._registration is not None:
                raise ApiError(
                    409,
                    "invalidRequest",
                    "A webhook registration exists for this tenant; update it with PUT.",
                    target="registration",
                )
            self._registration = Registration(str(uuid.uuid4()), url, events, in_ms_header)
            return _json(self._registration.wire())

    def _get_registration(self, _request: Request) -> Response:
        registration = self._require_registration()
        return _json(registration.wire(with_id=False))

    def _update(self, request: Request) -> Response:
        url, events, in_ms_header = _read_registration(request)
        with self._lock:
            current = self._require_registration()
            self._registration = replace(
                current, url=url, events=events, ms_signature_header=in_ms_header
            )
            return _json(self._registration.wire())

    def _validate(self, _request: Request) -> Response:
        now = self._clock.now()
        with self._lock:
            registration = self._require_registration()
            if "test-created" not in registration.events:
                raise ApiError.invalid(
                    "Register for the test-created event before requesting a validation event.",
                    target="registration",
                )
            window = timedelta(minutes=1)
            while self._validation_times and now - self._validation_times[0] >= window:
                self._validation_times.popleft()
            if len(self._validation_times) >= VALIDATIONS_PER_MINUTE:
                wait = window - (now - self._validation_times[0])
                seconds = max(1, int(wait.total_seconds() + 0.999))
                return _json(
                    {
                        "statusCode": 429,
                        "message": f"Rate limit is exceeded. Try again in {seconds} seconds.",
                    },
                    429,
                    {"Retry-After": str(seconds)},
                )
            self._validation_times.append(now)
            correlation_id = str(uuid.uuid4())
            self._validations[correlation_id] = _Validation(correlation_id, registration.url, now)
        uri = f"{RESOURCE_BASE}{REGISTRATION_PATH}/validationEvents/{correlation_id}"
        if self._signer is not None:
            self._emit("test-created", uri, self._signer, correlation_id=correlation_id)
        return _json({"correlationId": correlation_id})

    def _validation(self, _request: Request, correlation_id: str) -> Response:
        with self._lock:
            validation = self._validations.get(correlation_id)
        if validation is None:
            raise ApiError(
                404, "itemNotFound", f"No validation event {correlation_id}.", target="test"
            )
        attempts = [a for a in self._known_attempts() if a.correlation_id == correlation_id]
        results = [
            {
                "responseCode": _status_name(a.status),
                "responseMessage": a.error or "",
                "systemError": a.status is None,
                "dateTimeUtc": (a.sent_at or validation.created)
                .astimezone(UTC)
                .strftime("%Y-%m-%dT%H:%M:%S.%f"),
            }
            for a in attempts
        ]
        status = "completed" if any(a.ok for a in attempts) else "pending"
        return _json(
            {
                "correlationId": correlation_id,
                "partnerId": self._partner_id,
                "status": status,
                "callbackUrl": validation.callback_url,
                "results": results,
            }
        )

    def _certificate(self, _request: Request) -> Response:
        if self._signer is None:
            raise ApiError(404, "itemNotFound", "No signing certificate.", target="certificate")
        return Response(self._signer.cert_pem, content_type="application/x-pem-file")

    # -- internals ------------------------------------------------------------------------

    def _known_attempts(self) -> list[DeliveryAttempt]:
        return self._emitter.attempts() if self._emitter is not None else []

    def _require_registration(self) -> Registration:
        registration = self._registration
        if registration is None:
            raise ApiError(
                404,
                "itemNotFound",
                "No webhook registration for this tenant.",
                target="registration",
            )
        return registration

    def _headers(self, signature: str, in_ms_header: bool) -> dict[str, str]:
        assert self.certificate_url is not None  # noqa: S101 (configured before any emit)
        headers = {
            "Content-Type": "application/json",
            "X-MS-Certificate-Url": self.certificate_url,
            "X-MS-Signature-Algorithm": SIGNATURE_ALGORITHM,
        }
        if in_ms_header:
            headers["x-ms-signature"] = signature
        else:
            headers["Authorization"] = f"Signature {signature}"
        return headers

    def _emit(
        self,
        event_name: str,
        resource_uri: str,
        signer: WebhookSigner,
        *,
        moment: datetime | None = None,
        forged: bool = False,
        correlation_id: str | None = None,
    ) -> bool:
        registration = self._registration
        emitter = self._emitter
        if registration is None or emitter is None or event_name not in registration.events:
            return False
        body = event_body(event_name, resource_uri, moment or self._clock.now())
        delivery = _Delivery(
            url=registration.url,
            headers=self._headers(signer.sign(body), registration.ms_signature_header),
            body=body,
            event_name=event_name,
            resource_uri=resource_uri,
            generation=emitter.generation,
            forged=forged,
            correlation_id=correlation_id,
        )
        return emitter.submit(delivery)


def _referral_uri(referral_id: str) -> str:
    return f"{RESOURCE_BASE}/engagements/v1/referrals/{referral_id}"


def _status_name(status: int | None) -> str:
    """.NET's ``HttpStatusCode`` name, as the validation status shows (``OK``, ``BadRequest``)."""
    if status is None:
        return "None"
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return str(status)
    return "OK" if status == 200 else phrase.replace(" ", "").replace("-", "")


def _read_registration(request: Request) -> tuple[str, tuple[str, ...], bool]:
    if request.mimetype != "application/json":
        raise ApiError(415, "invalidRequest", "Content-Type must be application/json.")
    try:
        body = json.loads(request.get_data())
    except (ValueError, UnicodeDecodeError):
        raise ApiError.invalid("the body is not valid JSON", target="registration") from None
    if not isinstance(body, dict):
        raise ApiError.invalid("the body must be a JSON object", target="registration")
    fields = {str(key).lower(): value for key, value in body.items()}
    url = fields.get("webhookurl")
    if not isinstance(url, str) or not _acceptable_url(url):
        raise ApiError.invalid(
            "WebhookUrl must be an absolute https URL (plain http only to a loopback host).",
            target="WebhookUrl",
        )
    events = fields.get("webhookevents")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise ApiError.invalid(
            "WebhookEvents must be a non-empty array of event names.", target="WebhookEvents"
        )
    unknown = [event for event in events if event not in SUPPORTED_EVENTS]
    if unknown:
        raise ApiError.invalid(
            f"Unsupported webhook events: {', '.join(unknown)}.", target="WebhookEvents"
        )
    in_ms_header = fields.get("signaturetokentomssignatureheader", False)
    if not isinstance(in_ms_header, bool):
        raise ApiError.invalid(
            "signatureTokenToMsSignatureHeader must be true or false.",
            target="signatureTokenToMsSignatureHeader",
        )
    return url, tuple(dict.fromkeys(events)), in_ms_header


def _acceptable_url(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))


def _json(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body).encode("utf-8"),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json; charset=utf-8",
    )
