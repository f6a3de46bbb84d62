"""A throw-away certificate authority for the sandbox's TLS servers (msal refuses plain http).

It also issues the key pair Partner Center's webhook emitter signs events with: an RSA key
(the events are ``rsa-sha256``) whose certificate names the organization "Microsoft
Corporation", as the real signing certificate does, but chains to this CA, not Microsoft's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import trustme

WEBHOOK_SIGNING_ORGANIZATION = "Microsoft Corporation"
WEBHOOK_SIGNING_NAME = "pcnotifications.microsoft.com"
"""The real signing certificate's name (docs' sample ``X-MS-Certificate-Url``)."""


@dataclass(frozen=True, slots=True)
class SandboxTLS:
    """A trustme CA made at start, and one server certificate for the sandbox host.

    The certificate covers ``host``, ``localhost`` and ``127.0.0.1``. Clients trust ``ca_path``
    (``requests.Session(verify=ca_path)`` with ``trust_env=False``).
    """

    ca: trustme.CA
    cert: trustme.LeafCert
    ca_path: Path

    @classmethod
    def create(cls, host: str, state_dir: Path) -> SandboxTLS:
        ca = trustme.CA(organization_name="Referral Sync sandbox")
        names = dict.fromkeys([host, "localhost", "127.0.0.1"])
        cert = ca.issue_cert(*names)
        state_dir.mkdir(parents=True, exist_ok=True)
        ca_path = state_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        return cls(ca=ca, cert=cert, ca_path=ca_path)

    def server_context(self) -> ssl.SSLContext:
        """A fresh server-side context presenting the sandbox certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        return ctx

    def issue_signing_cert(
        self,
        *,
        organization: str = WEBHOOK_SIGNING_ORGANIZATION,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> trustme.LeafCert:
        """An RSA leaf certificate from this CA for signing webhook events (tests vary it)."""
        return self.ca.issue_cert(
            WEBHOOK_SIGNING_NAME,
            common_name=WEBHOOK_SIGNING_NAME,
            organization_name=organization,
            not_before=not_before,
            not_after=not_after,
            key_type=trustme.KeyType.RSA,
        )

    def client_context(self) -> ssl.SSLContext:
        """A client-side context trusting the sandbox CA (for raw sockets in tests)."""
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx
