"""Security promises, each as a test that fails if the promise breaks: TLS verification that
cannot be turned off (only the sandbox's own CA can be added), no plain http, injection attempts
that stay text, forged and replayed webhooks refused, owner-only state and token cache, an ops
server on loopback unless told otherwise, and no code path that disables verification.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import stat
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from fakes import FakeClock
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from connector.crm.dynamics.build import build_dynamics_from_info
from connector.crm.salesforce.build import build_salesforce_from_info
from connector.errors import ConfigError, RecordRejected
from connector.http.retry import RetryPolicy
from connector.http.session import build_session
from connector.partner_center.auth import PartnerCenterAuth
from connector.partner_center.client import PartnerCenterClient
from connector.ports import AccountRef, ContactRef, OpportunityWrite
from connector.settings import RetrySettings
from connector.state import open_state_store
from connector.webhooks import WebhookVerifier, make_webhook_handler
from sandbox.app import Sandbox

ROOT = Path(__file__).resolve().parents[2]
RETRY = RetrySettings(max_attempts=2, max_seconds=30, base_seconds=0, cap_seconds=0)

# -- TLS: verified always; the only CA that can be added is one named in config ------------------


@pytest.mark.e2e
def test_a_session_without_the_sandbox_ca_refuses_the_sandbox_certificate(sandbox):
    with build_session() as session, pytest.raises(requests.exceptions.SSLError):
        session.get(sandbox.info["partner_center"]["base_url"] + "/referrals", timeout=5)


@pytest.mark.e2e
def test_the_environment_cannot_add_a_ca_or_turn_verification_off(sandbox, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, sandbox.info["ca_bundle"])
    monkeypatch.setenv("PYTHONHTTPSVERIFY", "0")

    with build_session() as session, pytest.raises(requests.exceptions.SSLError):
        session.get(sandbox.info["partner_center"]["base_url"] + "/referrals", timeout=5)


@pytest.mark.e2e
def test_the_sandbox_ca_named_explicitly_is_trusted(sandbox):
    with build_session(ca_bundle=sandbox.info["ca_bundle"]) as session:
        answer = session.get(sandbox.info["partner_center"]["base_url"] + "/referrals", timeout=5)
    assert answer.status_code == 401  # TLS passed; no token


def test_a_config_that_asks_to_skip_verification_is_refused(tmp_path):
    from connector.settings import load_settings  # noqa: PLC0415

    config = tmp_path / "c.toml"
    config.write_text(
        '[[connection]]\nname = "c"\ncrm = "salesforce"\n'
        '[connection.partner_center]\nbase_url = "https://pc.example"\n'
        'authority = "https://login.example/t"\nclient_id = "a"\nverify = false\n'
        '[connection.salesforce]\ninstance_url = "https://sf.example"\nclient_id = "b"\n'
        'client_secret_env = "S"\nssl_verify = false\ninsecure = true\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {"S": "x"})
    keys = {p.key for p in caught.value.problems}
    assert {
        "connection[0].partner_center.verify",
        "connection[0].salesforce.ssl_verify",
        "connection[0].salesforce.insecure",
    } <= keys


_DISABLING = {"verify": False, "check_hostname": False}


def _disabling_calls(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in _DISABLING:
            if isinstance(node.value, ast.Constant) and node.value.value is False:
                yield f"{node.arg}=False"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                name = target.attr if isinstance(target, ast.Attribute) else None
                value = node.value
                if name in _DISABLING and isinstance(value, ast.Constant) and value.value is False:
                    yield f".{name} = False"
        elif isinstance(node, ast.Attribute) and node.attr in (
            "CERT_NONE",
            "_create_unverified_context",
        ):
            yield node.attr


@pytest.mark.parametrize("package", ["connector"])
def test_no_code_path_turns_tls_verification_off(package):
    found = {
        str(path.relative_to(ROOT)): sorted(set(_disabling_calls(ast.parse(path.read_text()))))
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in found.items() if v} == {}


def test_the_static_check_can_fail():
    code = "s.verify = False\nrequests.get(u, verify=False)\nctx.verify_mode = ssl.CERT_NONE\n"
    assert sorted(_disabling_calls(ast.parse(code))) == [
        ".verify = False",
        "CERT_NONE",
        "verify=False",
    ]


# -- plain http: refused before any byte leaves ---------------------------------------------------


@pytest.fixture
def plain_listener() -> Iterator[tuple[str, socket.socket]]:
    """A plain TCP port on 127.0.0.1: a connection to it would show in its accept queue."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.3)
    yield f"http://127.0.0.1:{server.getsockname()[1]}", server
    server.close()


def test_a_plain_http_url_is_refused_without_connecting(plain_listener):
    url, server = plain_listener
    with build_session() as session, pytest.raises(requests.exceptions.InvalidSchema):
        session.get(url + "/v1.0/engagements/referrals")
    with pytest.raises(TimeoutError):
        server.accept()  # nobody knocked


def test_a_redirect_to_plain_http_is_refused():
    with responses.RequestsMock() as mocked, build_session() as session:
        mocked.get(
            "https://api.partner.test/v1.0/engagements/referrals",
            status=302,
            headers={"Location": "http://api.partner.test/leak"},
        )
        with pytest.raises(requests.exceptions.InvalidSchema):
            session.get("https://api.partner.test/v1.0/engagements/referrals")
        assert len(mocked.calls) == 1


@pytest.mark.parametrize(
    "url", ["http://api.partner.microsoft.com/v1.0/engagements", "ftp://x/y", "//x/y", "https://"]
)
def test_the_partner_center_client_refuses_a_base_url_that_is_not_https(url):
    with pytest.raises(ConfigError):
        PartnerCenterClient(url, _NoAuth(), session=build_session(), retry=RetryPolicy())


class _NoAuth:
    def token(self) -> str:
        return "t"

    def refresh(self) -> str:
        return "t"


# -- injection: every value that reaches a query stays one literal -------------------------------

SOQL_PAYLOADS = [
    "x' OR Name != '",
    "x\\' OR Name != \\'",
    "x' OR Name LIKE '%",
    "Fabrikam' AND BillingPostalCode != '",
]
ODATA_PAYLOADS = [
    "x' or name ne 'y",
    "x'' or name ne ''y",
    "x') or contains(name,'",
    "x%27%20or%20name%20ne%20%27y",
    "Fabrikam' or address1_postalcode ne '",
]


@pytest.fixture
def org(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.salesforce.store.clear()
    yield sandbox
    sandbox.salesforce.store.clear()


@pytest.fixture
def dataverse(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.dataverse.store.clear()
    sandbox.dataverse._seed_currencies()
    yield sandbox
    sandbox.dataverse.store.clear()
    sandbox.dataverse._seed_currencies()


def _sf_write(key: str, account: AccountRef, contact: ContactRef) -> OpportunityWrite:
    fields = {
        "Name": f"Deal {key}"[:120],
        "StageName": "Prospecting",
        "CloseDate": date(2026, 6, 30),
    }
    return OpportunityWrite(key=key, fields=fields, account=account, contacts=(contact,))


def _dv_write(key: str, account: AccountRef, contact: ContactRef) -> OpportunityWrite:
    fields = {"name": f"Deal {key}"[:120], "statuscode": 2, "estimatedvalue": Decimal(10)}
    return OpportunityWrite(key=key, fields=fields, account=account, contacts=(contact,))


VICTIM = AccountRef(name="Fabrikam", postal_code="10001")
VICTIM_CONTACT = ContactRef(last_name="Victim", email="victim@fabrikam.example")


@pytest.mark.e2e
@pytest.mark.parametrize("payload", SOQL_PAYLOADS)
def test_soql_injection_through_every_queried_field_stays_text(org, payload):
    conn = build_salesforce_from_info(
        org.info["salesforce"], org.info["ca_bundle"], retry=RETRY, sleep=FakeClock().sleep
    )
    conn.adapter.upsert([_sf_write("R-victim", VICTIM, VICTIM_CONTACT)])
    key = f"R-{uuid.uuid4().hex[:8]}-{payload}"
    account = AccountRef(name=payload, postal_code="1' OR Name!='")  # postal codes are short
    contact = ContactRef(last_name="Attacker", email=f"a{uuid.uuid4().hex[:6]}{payload}@x.example")

    [outcome] = conn.adapter.upsert([_sf_write(key, account, contact)])
    [again] = conn.adapter.upsert([_sf_write(key, account, contact)])

    store = org.salesforce.store
    assert (outcome.action, again.action) == ("created", "updated"), outcome.reason
    accounts = {a["Id"]: a for a in store.records("Account")}
    [mine] = [a for a in accounts.values() if a["Name"] == payload]
    assert mine["BillingPostalCode"] == account.postal_code
    assert len(accounts) == 2, "the lookup matched no other account, and found its own again"
    [opportunity] = [o for o in store.records("Opportunity") if o["Id"] == outcome.crm_id]
    assert opportunity["Partner_Center_Referral_Id__c"] == key
    assert opportunity["AccountId"] == mine["Id"]
    roles = [
        r for r in store.records("OpportunityContactRole") if r["OpportunityId"] == outcome.crm_id
    ]
    emails = {c["Id"]: c["Email"] for c in store.records("Contact")}
    assert [emails[r["ContactId"]] for r in roles] == [contact.email]


@pytest.mark.e2e
@pytest.mark.parametrize("payload", ODATA_PAYLOADS)
def test_odata_injection_through_every_queried_field_stays_text(dataverse, payload):
    clock = FakeClock()
    conn = build_dynamics_from_info(
        dataverse.info, dataverse.info["ca_bundle"], retry=RETRY, sleep=clock.sleep, clock=clock
    )
    conn.adapter.upsert([_dv_write("R-victim", VICTIM, VICTIM_CONTACT)])
    # Dataverse refuses / < > * % & : \ ? + in an alternate key (a clean 400): those stay out.
    key = f"R-{uuid.uuid4().hex[:8]}-" + ("" if set(payload) & set("/<>*%&:\\?+") else payload)
    account = AccountRef(name=payload, postal_code="1' or name ne '")  # postal codes are short
    contact = ContactRef(last_name="Attacker", email=f"a{uuid.uuid4().hex[:6]}{payload}@x.example")

    [outcome] = conn.adapter.upsert([_dv_write(key, account, contact)])
    [again] = conn.adapter.upsert([_dv_write(key, account, contact)])

    store = dataverse.dataverse.store
    assert not outcome.failed, outcome.reason
    assert not again.failed, again.reason
    assert outcome.crm_id == again.crm_id
    accounts = store.rows("account")
    [mine] = [a for a in accounts if a["name"] == payload]
    assert len(accounts) == 2, "the lookup matched no other account, and found its own again"
    contacts = store.rows("contact")
    [attacker] = [c for c in contacts if c["emailaddress1"] == contact.email]
    assert len(contacts) == 2
    [row] = [r for r in store.rows("opportunity") if str(r["opportunityid"]) == outcome.crm_id]
    assert row["customerid"].row_id == mine["accountid"]
    assert row["parentcontactid"].row_id == attacker["contactid"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "referral_id",
    ["x' or 1 eq 1 or id eq 'y", "../referrals?$top=1", "%2e%2e%2freferrals", "a b/../c"],
)
def test_a_referral_id_cannot_reach_another_resource_of_partner_center(sandbox, referral_id):
    client = _pc_client(sandbox)

    with pytest.raises(RecordRejected) as caught:
        client.get(referral_id)

    assert caught.value.status == 404
    [request] = sandbox.log.entries(service="partner_center")[-1:]
    # one referral's route, or none at all: never the list, a query or another resource
    assert request.route in ("referrals_get", "other"), request
    assert request.status == 404


def _pc_client(sandbox: Sandbox) -> PartnerCenterClient:
    token, _ = sandbox.tokens.issue_access_token(
        client_id=sandbox.tenant.partner_center_app.client_id,
        audience="https://api.partner.microsoft.com",
        scopes=["https://api.partner.microsoft.com/.default"],
        user=sandbox.tenant.user,
    )

    class Fixed:
        def token(self) -> str:
            return token

        def refresh(self) -> str:
            return token

    return PartnerCenterClient(
        sandbox.info["partner_center"]["base_url"],
        Fixed(),
        session=build_session(ca_bundle=sandbox.info["ca_bundle"]),
        retry=RetryPolicy(max_attempts=1, jitter=0),
    )


# -- webhooks: a genuine delivery replayed, and a forged one, end to end over TLS -----------------


@pytest.mark.e2e
def test_a_genuine_sandbox_delivery_is_accepted_once_and_its_replay_refused(sandbox, ca_session):
    verifier = WebhookVerifier(
        Path(sandbox.info["ca_bundle"]),
        allowed_certificate_hosts=(sandbox.host,),
        session=ca_session,
        clock=sandbox.clock,
    )
    received: list[Any] = []
    handle = make_webhook_handler(verifier, received.append)
    uri = f"https://api.partnercenter.microsoft.com/engagements/v1/referrals/{uuid.uuid4()}"
    headers, body = sandbox.partner_center.webhooks.signed_delivery("referral-updated", uri)

    def post(body: bytes) -> tuple[int, dict[str, Any]]:
        builder = EnvironBuilder(method="POST", data=body, headers=headers)
        response = handle(Request(builder.get_environ()))
        return response.status_code, json.loads(response.get_data())

    assert post(body)[0] == 202
    assert post(body) == (401, {"error": "webhook_rejected", "reason": "replayed_event"})
    forged = body.replace(b"referral-updated", b"referral-created")
    assert post(forged) == (401, {"error": "webhook_rejected", "reason": "bad_signature"})
    assert len(received) == 1


# -- files: owner-only whatever the umask -----------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)  # the worst case: everything would be world-writable
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_database_is_owner_only_even_under_umask_0(tmp_path, open_umask):
    path = tmp_path / "state" / "referral-sync.db"
    store = open_state_store(f"sqlite:///{path}")
    try:
        store.set_cursor("c", "partner_center", {"high_water": None})
    finally:
        store.close()
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    for sidecar in path.parent.iterdir():
        assert _mode(sidecar) & 0o077 == 0, sidecar.name


@pytest.mark.e2e
def test_the_token_cache_is_owner_only_even_under_umask_0(sandbox, tmp_path, open_umask):
    cache = tmp_path / "tokens" / "pc-token-cache.json"
    login = PartnerCenterAuth(
        authority=sandbox.info["entra"]["authority"],
        client_id=sandbox.info["entra"]["partner_center"]["client_id"],
        token_cache_path=cache,
        session=build_session(ca_bundle=sandbox.info["ca_bundle"]),
        mode="device_code",
        prompt=lambda message: None,
    )
    login.login()

    assert cache.is_file()
    assert _mode(cache) == 0o600
    assert _mode(cache.parent) & 0o077 == 0
    assert '"accesstoken"' in cache.read_text(encoding="utf-8").lower(), "it holds tokens"


def test_the_sandbox_json_with_its_credentials_is_owner_only(sandbox):
    assert _mode(sandbox.info_path) == 0o600


# -- the ops server: loopback unless configured otherwise ----------------------------------------


def test_the_ops_server_listens_on_loopback_by_default():
    from connector.daemon.http import StatusServer  # noqa: PLC0415

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    with StatusServer(app) as server:
        assert server.url.startswith("http://127.0.0.1:")


def test_the_configured_listen_address_defaults_to_loopback(tmp_path):
    from connector import settings  # noqa: PLC0415

    config = tmp_path / "c.toml"
    config.write_text(
        '[[connection]]\nname = "c"\ncrm = "salesforce"\n'
        '[connection.partner_center]\nbase_url = "https://pc.example"\n'
        'authority = "https://login.example/t"\nclient_id = "a"\n'
        '[connection.salesforce]\ninstance_url = "https://sf.example"\nclient_id = "b"\n'
        'client_secret_env = "S"\n',
        encoding="utf-8",
    )
    loaded = settings.load_settings(config, {"S": "x"})
    listen = getattr(getattr(loaded, "server", None), "listen", settings.DEFAULT_LISTEN)
    assert listen.rpartition(":")[0] in ("127.0.0.1", "localhost", "[::1]")
