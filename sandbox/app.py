"""The sandbox: every simulator that exists, on one loopback host, over TLS, until stopped.

``Sandbox(state_dir, ...)`` makes a CA (``state_dir/ca.pem``), a tenant with fresh credentials,
and serves Entra, Partner Center, Salesforce and Dataverse each on
its own free port behind one :class:`~sandbox.faults.FaultInjector`, then writes
``state_dir/sandbox.json`` (owner-only) with everything a client needs: the CA bundle, the Entra
authority and credentials, the Partner Center base URL, the Salesforce org's URLs and connected
app (its JWT signing key in ``state_dir/salesforce-jwt-key.pem``, 0600), and the Dataverse
environment's Web API URL, and ``webhooks``: where the Partner Center webhook registration API
and the event-signing certificate are (:mod:`sandbox.partner_center.webhooks`; the emitter
starts with the servers and signs with a key the sandbox CA certifies for "Microsoft
Corporation").

Dataverse: the simulator is reached at ``https://HOST:PORT/api/data/v9.2`` but, like a real
environment, accepts only tokens whose audience is the environment's resource
``https://<org>.crm.dynamics.com`` (the scope msal sends is that plus ``/.default``). So
``dataverse.base_url`` and ``dataverse.scope`` differ in the sandbox, where in production both
come from one org URL: a client must take the scope from configuration, not derive it from the
URL it calls.

msal's password grant first calls user-realm discovery at ``https://HOST/common/userrealm/USER``
on port 443 whatever the authority's port, so Entra is also served on ``host:443``. If that
port cannot be bound (not root, or taken), the sandbox goes on without it and says so:
``entra.user_realm_discovery`` is ``false`` and only the device-code and refresh-token grants
work through msal. A random loopback host (``127.x.y.z``) keeps 443 free for each sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox.clock import SandboxClock
from sandbox.dynamics import ALTERNATE_KEY as DATAVERSE_ALTERNATE_KEY
from sandbox.dynamics import ALTERNATE_KEY_COLUMN as DATAVERSE_KEY_COLUMN
from sandbox.dynamics import DataverseSimulator, dataverse_responder
from sandbox.entra import EntraSimulator, SandboxTenant, TokenStore
from sandbox.faults import FaultInjector, FaultPlan
from sandbox.http import RunningServer, serve
from sandbox.partner_center import PartnerCenterSimulator, generate_referrals, load_seed_file
from sandbox.partner_center.webhooks import (
    CERTIFICATE_PATH,
    REGISTRATION_PATH,
    WebhookEmitter,
    WebhookSigner,
)
from sandbox.requestlog import RequestLog
from sandbox.salesforce import EXTERNAL_ID_FIELD, SalesforceSimulator, salesforce_responder
from sandbox.tls import WEBHOOK_SIGNING_ORGANIZATION, SandboxTLS
from sandbox.wsgi import Environ, WSGIApp

logger = logging.getLogger("sandbox.app")

USER_REALM_PORT = 443
INFO_FILE = "sandbox.json"
SALESFORCE_KEY_FILE = "salesforce-jwt-key.pem"


class Sandbox:
    """Start with ``start()`` or ``with Sandbox(...) as sb:``; in-process objects for tests:
    ``.tls``, ``.clock``, ``.tokens``, ``.tenant``, ``.entra``, ``.partner_center``,
    ``.salesforce``, ``.dataverse``, ``.faults``,
    ``.log``, ``.servers`` and ``.info`` (the ``sandbox.json`` dict)."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        seed_file: Path | str | None = None,
        referrals: int = 0,
        faults: str = "",
        latency_ms: float = 0,
        clock_speed: float = 1.0,
        token_lifetime_s: int = 3600,
        fault_seed: int | None = None,
        referral_seed: int = 1,
        device_pending_polls: int = 1,
        user_realm_port: int | None = USER_REALM_PORT,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.seed_file = Path(seed_file) if seed_file else None
        self.referrals = referrals
        self.referral_seed = referral_seed
        self.user_realm_port = user_realm_port
        self.clock = SandboxClock(speed=clock_speed)
        self.log = RequestLog()
        self.faults = FaultInjector(
            FaultPlan.parse(faults),
            rng=random.Random(fault_seed),
            latency_ms=latency_ms,
            log=self.log,
        )
        self.tenant = SandboxTenant.generate()
        self.tokens = TokenStore(tenant_id=self.tenant.tenant_id, lifetime_s=token_lifetime_s)
        self.entra: EntraSimulator = self.tenant.simulator(
            self.tokens, device_pending_polls=device_pending_polls
        )
        self._device_pending_polls = device_pending_polls
        self.partner_center = PartnerCenterSimulator(
            tokens=self.tokens, clock=self.clock, log=self.log
        )
        self.salesforce = SalesforceSimulator(
            self.clock, log=self.log, token_lifetime_s=token_lifetime_s
        )
        self.faults.set_responder("salesforce", salesforce_responder)
        self.faults.set_token_expirer("salesforce", self.salesforce.tokens.expire_token)
        self.faults.set_token_expirer("partner_center", self.tokens.expire_token)
        self.faults.set_token_expirer("dataverse", self.tokens.expire_token)
        self.dataverse = DataverseSimulator(
            self.clock, self.tokens, audience=self.tenant.dataverse_resource, log=self.log
        )
        self.faults.set_responder("dataverse", dataverse_responder)
        self.servers: dict[str, RunningServer] = {}
        self.info: dict[str, Any] = {}
        self._tls: SandboxTLS | None = None

    @property
    def tls(self) -> SandboxTLS:
        if self._tls is None:
            raise RuntimeError("the sandbox is not started")
        return self._tls

    @property
    def info_path(self) -> Path:
        return self.state_dir / INFO_FILE

    @property
    def ca_path(self) -> Path:
        return self.tls.ca_path

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tls = SandboxTLS.create(self.host, self.state_dir)
        try:
            self._start_servers()
            self.info = self._build_info()
            write_private_json(self.info_path, self.info)
        except BaseException:
            self.stop()
            raise
        logger.info("sandbox_started host=%s info=%s", self.host, self.info_path)
        return self

    def stop(self) -> None:
        self.partner_center.webhooks.stop()
        for server in reversed(list(self.servers.values())):
            server.stop()
        self.servers.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Between tests: no faults, an empty request log, default token and device settings."""
        self.faults.clear()
        self.log.clear()
        self.tokens.reset()
        self.entra.device_pending_polls = self._device_pending_polls
        self.salesforce.reset()
        self.dataverse.reset()
        self.partner_center.webhooks.reset()

    # -- servers -------------------------------------------------------------------------

    def _serve(
        self, name: str, app: WSGIApp, route_of: Callable[[Environ], str], port: int
    ) -> None:
        wrapped = self.faults.wrap(app, name, route_of)
        self.servers[name] = serve(
            wrapped, host=self.host, port=port, ssl_context=self.tls.server_context(), name=name
        )

    def _start_servers(self) -> None:
        self._serve("entra", self.entra, EntraSimulator.route_of, 0)
        if self.user_realm_port is not None:
            try:
                # Not behind the fault injector: msal's user-realm call is not what tests probe.
                self.servers["entra_user_realm"] = serve(
                    self.entra,
                    host=self.host,
                    port=self.user_realm_port,
                    ssl_context=self.tls.server_context(),
                    name="entra_user_realm",
                )
            except OSError as exc:
                logger.warning(
                    "user_realm_listener_unavailable host=%s port=%s error=%s: msal's password "
                    "grant will not work; device code and refresh token do",
                    self.host,
                    self.user_realm_port,
                    exc,
                )
        self._seed_partner_center()
        self._serve("partner_center", self.partner_center, self.partner_center.route_of, 0)
        self._start_webhooks()
        self._serve("salesforce", self.salesforce, self.salesforce.route_of, 0)
        self.dataverse.authority = f"{self.servers['entra'].url}/{self.tenant.tenant_id}"
        self._serve("dataverse", self.dataverse, self.dataverse.route_of, 0)

    def _start_webhooks(self) -> None:
        leaf = self.tls.issue_signing_cert()
        signer = WebhookSigner(leaf.private_key_pem.bytes(), leaf.cert_chain_pems[0].bytes())
        self.partner_center.webhooks.configure(
            signer,
            certificate_url=f"{self.servers['partner_center'].url}{CERTIFICATE_PATH}",
            emitter=WebhookEmitter(ca_bundle=self.tls.ca_path, clock=self.clock),
        )

    def _seed_partner_center(self) -> None:
        store = self.partner_center.store
        if self.seed_file is not None:
            store.seed_raw(load_seed_file(self.seed_file))
        if self.referrals:
            store.seed_raw(generate_referrals(self.referrals, self.referral_seed, self.clock))

    def _build_info(self) -> dict[str, Any]:
        entra = self.servers["entra"]
        info: dict[str, Any] = {
            "host": self.host,
            "pid": os.getpid(),
            "ca_bundle": str(self.tls.ca_path),
            "clock_speed": self.clock.speed,
            "entra": self.tenant.info(
                f"{entra.url}/{self.tenant.tenant_id}",
                user_realm_discovery="entra_user_realm" in self.servers,
            ),
            "servers": {name: server.url for name, server in self.servers.items()},
        }
        base = self.servers["partner_center"].url
        info["partner_center"] = {"base_url": f"{base}/v1.0/engagements"}
        info["webhooks"] = {
            "base_url": base,
            "registration_url": f"{base}{REGISTRATION_PATH}",
            "certificate_url": f"{base}{CERTIFICATE_PATH}",
            "certificate_host": self.host,
            "signing_organization": WEBHOOK_SIGNING_ORGANIZATION,
        }
        info["salesforce"] = self._salesforce_info()
        info["dataverse"] = self._dataverse_info()
        return info

    def _dataverse_info(self) -> dict[str, Any]:
        org_url = self.servers["dataverse"].url
        resource = self.tenant.dataverse_resource
        return {
            "org_url": org_url,
            "base_url": f"{org_url}/api/data/v9.2",
            "resource": resource,
            "scope": f"{resource}/.default",
            "entra_client": "entra.dataverse",
            "alternate_key": DATAVERSE_ALTERNATE_KEY,
            "alternate_key_column": DATAVERSE_KEY_COLUMN,
            "change_tracking_expire_days": self.dataverse.expire_days,
        }

    def _salesforce_info(self) -> dict[str, Any]:
        key_path = self.state_dir / SALESFORCE_KEY_FILE
        write_private_bytes(key_path, self.salesforce.private_key_pem or b"")
        instance_url = self.servers["salesforce"].url
        app = self.salesforce.tokens.app
        return {
            "instance_url": instance_url,
            "token_url": f"{instance_url}/services/oauth2/token",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "api_version": self.salesforce.api_version,
            "username": app.username,
            "private_key_path": str(key_path),
            "external_id_field": EXTERNAL_ID_FIELD,
        }


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by the owner only (0600) from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def write_private_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` atomically, readable by the owner only (0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o600)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
