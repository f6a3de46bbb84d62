"""The Entra simulator against real msal over TLS, and the token checks other simulators use."""

from __future__ import annotations

import warnings

import msal
import pytest

from sandbox.entra import PARTNER_CENTER_RESOURCE

pytestmark = pytest.mark.e2e


@pytest.fixture
def entra(sandbox_info):
    return sandbox_info["entra"]


@pytest.fixture
def pc(entra):
    return entra["partner_center"]


@pytest.fixture
def public_app(entra, pc, ca_session):
    return msal.PublicClientApplication(
        pc["client_id"],
        authority=entra["authority"],
        instance_discovery=False,
        http_client=ca_session,
    )


@pytest.fixture
def pc_confidential_app(entra, pc, ca_session):
    return msal.ConfidentialClientApplication(
        pc["client_id"],
        client_credential=pc["client_secret"],
        authority=entra["authority"],
        instance_discovery=False,
        http_client=ca_session,
    )


def dataverse_app(entra, session, secret=None):
    dv = entra["dataverse"]
    return msal.ConfidentialClientApplication(
        dv["client_id"],
        client_credential=secret or dv["client_secret"],
        authority=entra["authority"],
        instance_discovery=False,
        http_client=session,
        token_cache=msal.TokenCache(),
    )


def bearer(result):
    return f"Bearer {result['access_token']}"


def device_code_login(app, scope):
    flow = app.initiate_device_flow([scope])
    assert "user_code" in flow, flow
    return app.acquire_token_by_device_flow(flow)


# -- discovery -----------------------------------------------------------------------------


def test_discovery_names_endpoints_on_the_sandbox_host(entra, ca_session):
    response = ca_session.get(f"{entra['authority']}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == f"{entra['authority']}/oauth2/v2.0/token"
    assert config["device_authorization_endpoint"] == f"{entra['authority']}/oauth2/v2.0/devicecode"
    assert config["authorization_endpoint"].startswith(entra["authority"])
    assert config["issuer"] == f"{entra['authority']}/v2.0"


def test_discovery_for_an_unknown_tenant_is_invalid_tenant(entra, ca_session):
    base = entra["authority"].rsplit("/", 1)[0]
    response = ca_session.get(f"{base}/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


# -- Partner Center: App+User grants -------------------------------------------------------


def test_device_code_flow_gets_user_tokens_after_polling(sandbox, public_app, pc):
    result = device_code_login(public_app, pc["scope"])

    assert "access_token" in result, result
    assert result["refresh_token"]
    assert result["id_token_claims"]["preferred_username"] == pc["username"]
    assert result["id_token_claims"]["tid"] == sandbox.info["entra"]["tenant_id"]
    assert sandbox.tokens.check(bearer(result), PARTNER_CENTER_RESOURCE) is None
    (account,) = public_app.get_accounts()
    assert account["username"] == pc["username"]
    pending = sandbox.log.entries(service="entra", route="token", status=400)
    assert len(pending) == 1  # one authorization_pending, then the sandbox user approved


def test_device_code_can_be_redeemed_once(sandbox, entra, pc, ca_session):
    token_url = f"{entra['authority']}/oauth2/v2.0/token"
    sandbox.entra.device_pending_polls = 0
    try:
        flow = ca_session.post(
            f"{entra['authority']}/oauth2/v2.0/devicecode",
            data={"client_id": pc["client_id"], "scope": f"{pc['scope']} offline_access"},
        ).json()
    finally:
        sandbox.entra.device_pending_polls = 1
    form = {
        "client_id": pc["client_id"],
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": flow["device_code"],
    }
    first = ca_session.post(token_url, data=form)
    again = ca_session.post(token_url, data=form)
    assert first.status_code == 200
    assert "refresh_token" in first.json()
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_silent_refresh_after_expiry_gets_a_new_token_and_rotates_the_refresh_token(
    sandbox, public_app, pc
):
    first = device_code_login(public_app, pc["scope"])
    sandbox.tokens.expire_all()
    assert sandbox.tokens.check(bearer(first), PARTNER_CENTER_RESOURCE) == "expired"

    (account,) = public_app.get_accounts()
    second = public_app.acquire_token_silent([pc["scope"]], account=account, force_refresh=True)

    assert second is not None
    assert "access_token" in second, second
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert sandbox.tokens.check(bearer(second), PARTNER_CENTER_RESOURCE) is None


def test_refresh_token_grant_with_msal(sandbox, public_app, pc):
    first = device_code_login(public_app, pc["scope"])
    result = public_app.acquire_token_by_refresh_token(first["refresh_token"], [pc["scope"]])
    assert "access_token" in result, result
    assert sandbox.tokens.check(bearer(result), PARTNER_CENTER_RESOURCE) is None


def test_revoked_refresh_token_is_invalid_grant(sandbox, public_app, pc):
    first = device_code_login(public_app, pc["scope"])
    sandbox.tokens.revoke_refresh_tokens()
    result = public_app.acquire_token_by_refresh_token(first["refresh_token"], [pc["scope"]])
    assert result["error"] == "invalid_grant"


def test_password_grant_with_the_confidential_app(sandbox, pc_confidential_app, pc):
    if not sandbox.info["entra"]["user_realm_discovery"]:
        pytest.skip("port 443 of the sandbox host is not available for user-realm discovery")
    result = pc_confidential_app.acquire_token_by_username_password(
        pc["username"], pc["password"], [pc["scope"]]
    )
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == pc["username"]
    assert sandbox.log.count(service="entra", route="userrealm") == 0  # the 443 listener: unlogged


def test_password_grant_as_a_public_client_needs_no_secret(sandbox, public_app, pc):
    if not sandbox.info["entra"]["user_realm_discovery"]:
        pytest.skip("port 443 of the sandbox host is not available for user-realm discovery")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # msal deprecates public-client ROPC
        result = public_app.acquire_token_by_username_password(
            pc["username"], pc["password"], [pc["scope"]]
        )
    assert "access_token" in result, result


def test_wrong_password_is_invalid_grant(sandbox, pc_confidential_app, pc):
    if not sandbox.info["entra"]["user_realm_discovery"]:
        pytest.skip("port 443 of the sandbox host is not available for user-realm discovery")
    result = pc_confidential_app.acquire_token_by_username_password(
        pc["username"], "not-the-password", [pc["scope"]]
    )
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [50126]
    assert result["error_description"].startswith("AADSTS50126:")


def test_password_grant_over_raw_http_checks_the_user(entra, pc, ca_session):
    response = ca_session.post(
        f"{entra['authority']}/oauth2/v2.0/token",
        data={
            "client_id": pc["client_id"],
            "grant_type": "password",
            "username": "nobody@referralsync-sandbox.onmicrosoft.com",
            "password": "x",
            "scope": pc["scope"],
        },
    )
    assert response.status_code == 400
    assert response.json()["error_codes"] == [50034]


def test_user_realm_discovery_says_managed(sandbox, pc, ca_session):
    if not sandbox.info["entra"]["user_realm_discovery"]:
        pytest.skip("port 443 of the sandbox host is not available for user-realm discovery")
    response = ca_session.get(
        f"https://{sandbox.host}/common/userrealm/{pc['username']}?api-version=1.0"
    )
    assert response.json()["account_type"] == "Managed"


# -- Dataverse: client credentials ---------------------------------------------------------


def test_client_credentials_for_dataverse_and_cache_reuse(sandbox, entra, ca_session):
    app = dataverse_app(entra, ca_session)
    scope = entra["dataverse"]["scope"]

    first = app.acquire_token_for_client([scope])
    second = app.acquire_token_for_client([scope])

    assert "access_token" in first, first
    assert first["token_source"] == "identity_provider"
    assert second["token_source"] == "cache"
    assert sandbox.tokens.check(bearer(first), entra["dataverse"]["resource"]) is None
    assert sandbox.tokens.lookup(bearer(first)).user is None
    assert sandbox.tokens.check(bearer(first), PARTNER_CENTER_RESOURCE) == "wrong_audience"


def test_wrong_secret_is_invalid_client(entra, ca_session):
    result = dataverse_app(entra, ca_session, secret="wrong").acquire_token_for_client(
        [entra["dataverse"]["scope"]]
    )
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]


def test_invalid_client_is_a_401_with_entras_error_shape(entra, ca_session):
    dv = entra["dataverse"]
    response = ca_session.post(
        f"{entra['authority']}/oauth2/v2.0/token",
        data={
            "client_id": dv["client_id"],
            "client_secret": "wrong",
            "grant_type": "client_credentials",
            "scope": dv["scope"],
        },
        headers={"client-request-id": "c0ffee00-0000-0000-0000-000000000001"},
    )
    assert response.status_code == 401
    body = response.json()
    assert set(body) >= {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
    }
    assert body["correlation_id"] == "c0ffee00-0000-0000-0000-000000000001"


def test_client_credentials_without_a_secret_is_invalid_client(entra, pc, ca_session):
    response = ca_session.post(
        f"{entra['authority']}/oauth2/v2.0/token",
        data={
            "client_id": pc["client_id"],
            "grant_type": "client_credentials",
            "scope": pc["scope"],
        },
    )
    assert response.status_code == 401
    assert response.json()["error_codes"] == [7000218]


@pytest.mark.parametrize(
    ("scope", "error", "code"),
    [
        ("https://unknown.example.com/.default", "invalid_resource", 500011),
        ("not-a-scope", "invalid_scope", 70011),
        ("https://api.partner.microsoft.com/user_impersonation", "invalid_scope", 1002012),
    ],
)
def test_bad_scopes_are_refused(entra, ca_session, scope, error, code):
    dv = entra["dataverse"]
    response = ca_session.post(
        f"{entra['authority']}/oauth2/v2.0/token",
        data={
            "client_id": dv["client_id"],
            "client_secret": dv["client_secret"],
            "grant_type": "client_credentials",
            "scope": scope,
        },
    )
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["error_codes"]) == (error, [code])


def test_an_app_cannot_get_tokens_for_a_resource_it_was_not_granted(entra, ca_session):
    dv = entra["dataverse"]
    result = dataverse_app(entra, ca_session).acquire_token_for_client(
        [entra["partner_center"]["scope"]]
    )
    assert result["error"] == "invalid_grant"
    assert dv["client_id"] in result["error_description"]


def test_unsupported_grant_type(entra, pc, ca_session):
    response = ca_session.post(
        f"{entra['authority']}/oauth2/v2.0/token",
        data={"client_id": pc["client_id"], "grant_type": "implicit"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


# -- token lifetime and checks -------------------------------------------------------------


def test_token_lifetime_is_configurable_and_expired_tokens_are_refused(sandbox, entra, ca_session):
    sandbox.tokens.lifetime_s = 0
    result = dataverse_app(entra, ca_session).acquire_token_for_client(
        [entra["dataverse"]["scope"]]
    )
    assert sandbox.tokens.check(bearer(result), entra["dataverse"]["resource"]) == "expired"

    sandbox.tokens.lifetime_s = 120
    result = dataverse_app(entra, ca_session).acquire_token_for_client(
        [entra["dataverse"]["scope"]]
    )
    assert result["expires_in"] == 120


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Bearer forged.token.value", "invalid"),
        ("Basic dXNlcjpwYXNz", "invalid"),
    ],
)
def test_check_names_the_reason(sandbox, header, reason):
    assert sandbox.tokens.check(header, PARTNER_CENTER_RESOURCE) == reason


def test_reset_restores_the_default_lifetime(sandbox):
    sandbox.tokens.lifetime_s = 1
    sandbox.reset()
    assert sandbox.tokens.lifetime_s == 3600
