"""PartnerCenterAuth with real msal against `responses`-mocked Entra endpoints."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses
from structlog.testing import capture_logs

from connector.errors import AuthError, ConfigError, RateLimited, TransientError
from connector.http.session import build_session
from connector.partner_center.auth import PartnerCenterAuth

HOST = "https://login.sandbox.test"
TENANT = "tenant-1"
AUTHORITY = f"{HOST}/{TENANT}"
ISSUER = f"{AUTHORITY}/v2.0"
TOKEN_URL = f"{AUTHORITY}/oauth2/v2.0/token"
DEVICE_URL = f"{AUTHORITY}/oauth2/v2.0/devicecode"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
USER = "referrals.admin@fabrikam.test"
SECRET = "client-secret-never-logged"
PASSWORD = "user-password-never-logged"


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def token_response(access_token: str, rotated: str = "rt-1") -> dict[str, object]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "sub-1",
        "oid": "oid-1",
        "tid": TENANT,
        "preferred_username": USER,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    return {
        "token_type": "Bearer",
        "scope": "https://api.partner.microsoft.com/.default",
        "expires_in": 3600,
        "ext_expires_in": 3600,
        "access_token": access_token,
        "refresh_token": rotated,
        "id_token": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "client_info": b64({"uid": "oid-1", "utid": TENANT}),
    }


@pytest.fixture
def entra():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(
            f"{ISSUER}/.well-known/openid-configuration",
            json={
                "issuer": ISSUER,
                "authorization_endpoint": f"{AUTHORITY}/oauth2/v2.0/authorize",
                "token_endpoint": TOKEN_URL,
                "device_authorization_endpoint": DEVICE_URL,
            },
        )
        mocked.post(
            DEVICE_URL,
            json={
                "device_code": "device-code-1",
                "user_code": "ABCD-1234",
                "verification_uri": f"{HOST}/devicelogin",
                "expires_in": 900,
                "interval": 1,
                "message": "To sign in, open https://login.sandbox.test/devicelogin "
                "and enter the code ABCD-1234.",
            },
        )
        yield mocked


def token_posts(mocked: responses.RequestsMock) -> list[dict[str, list[str]]]:
    return [
        parse_qs(call.request.body)
        for call in mocked.calls
        if call.request.url == TOKEN_URL and isinstance(call.request.body, str)
    ]


def make_auth(cache: Path, **overrides: object) -> PartnerCenterAuth:
    settings: dict[str, object] = {
        "authority": AUTHORITY,
        "client_id": CLIENT_ID,
        "token_cache_path": cache,
        "session": build_session(),
        "mode": "device_code",
        "prompt": lambda message: None,
    }
    settings.update(overrides)
    return PartnerCenterAuth(**settings)  # type: ignore[arg-type]


def test_device_login_writes_an_owner_only_cache_that_a_new_process_reuses(entra, tmp_path):
    cache = tmp_path / "state" / "pc-token-cache.json"
    entra.post(TOKEN_URL, json=token_response("at-1"))
    shown: list[str] = []

    user = make_auth(cache, prompt=shown.append).login()

    assert user == USER
    assert shown == [
        "To sign in, open https://login.sandbox.test/devicelogin and enter the code ABCD-1234."
    ]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert "rt-1" in cache.read_text()
    assert token_posts(entra)[0]["grant_type"] == ["urn:ietf:params:oauth:grant-type:device_code"]

    posts_before = len(token_posts(entra))
    assert make_auth(cache).token() == "at-1"
    assert len(token_posts(entra)) == posts_before  # served from the reloaded cache


def test_refresh_redeems_the_cached_refresh_token_and_persists_the_rotation(entra, tmp_path):
    cache = tmp_path / "cache.json"
    entra.post(TOKEN_URL, json=token_response("at-1", "rt-1"))
    make_auth(cache).login()
    entra.replace(responses.POST, TOKEN_URL, json=token_response("at-2", "rt-2"))

    auth = make_auth(cache)
    assert auth.refresh() == "at-2"

    last = token_posts(entra)[-1]
    assert last["grant_type"] == ["refresh_token"]
    assert last["refresh_token"] == ["rt-1"]
    assert "rt-2" in cache.read_text()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert auth.token() == "at-2"


def test_device_mode_with_an_empty_cache_asks_for_login_and_never_prompts(entra, tmp_path):
    shown: list[str] = []
    auth = make_auth(tmp_path / "cache.json", prompt=shown.append)

    with pytest.raises(AuthError, match="referral-sync login partner-center"):
        auth.token()
    assert shown == []
    assert token_posts(entra) == []
    assert not (tmp_path / "cache.json").exists()


def test_a_refused_refresh_token_names_entras_error_and_asks_for_login(entra, tmp_path):
    cache = tmp_path / "cache.json"
    entra.post(TOKEN_URL, json=token_response("at-1"))
    make_auth(cache).login()
    entra.replace(
        responses.POST,
        TOKEN_URL,
        status=400,
        json={
            "error": "invalid_grant",
            "error_description": "AADSTS70043: The refresh token has expired.\r\nTrace ID: x",
        },
    )

    with pytest.raises(AuthError) as caught:
        make_auth(cache).refresh()

    message = str(caught.value)
    assert "invalid_grant: AADSTS70043: The refresh token has expired." in message
    assert "referral-sync login partner-center" in message
    assert "rt-1" not in message


def test_entra_throttling_is_rate_limited_and_no_token_request_goes_before_retry_after(
    entra, tmp_path
):
    """A 429 from Entra is not a refused sign-in: the retry layer waits its Retry-After, and
    until then no token request is sent (not by another thread, not by the next cycle)."""
    cache = tmp_path / "cache.json"
    entra.post(TOKEN_URL, json=token_response("at-1"))
    auth = make_auth(cache)
    auth.login()
    entra.replace(
        responses.POST,
        TOKEN_URL,
        status=429,
        headers={"Retry-After": "30"},
        json={"error": "temporarily_unavailable", "error_description": "AADSTS50196: throttled"},
    )
    before = len(token_posts(entra))

    with pytest.raises(RateLimited) as caught:
        auth.refresh()
    assert caught.value.retry_after == 30
    with pytest.raises(RateLimited, match="Entra asked us to wait") as again:
        auth.refresh()

    assert 29 < (again.value.retry_after or 0) <= 30
    assert len(token_posts(entra)) == before + 1  # the second one was never sent


def test_an_entra_5xx_is_transient_not_a_refused_sign_in(entra, tmp_path):
    cache = tmp_path / "cache.json"
    entra.post(TOKEN_URL, json=token_response("at-1"))
    auth = make_auth(cache)
    auth.login()
    entra.replace(responses.POST, TOKEN_URL, status=503, json={"error": "server_error"})

    with pytest.raises(TransientError, match="Entra answered 503"):
        auth.refresh()
    entra.replace(responses.POST, TOKEN_URL, json=token_response("at-2", rotated="rt-2"))
    assert auth.refresh() == "at-2"  # not replayed from msal's memory


def test_a_group_readable_cache_is_tightened_and_still_used(entra, tmp_path):
    cache = tmp_path / "cache.json"
    entra.post(TOKEN_URL, json=token_response("at-1"))
    make_auth(cache).login()
    cache.chmod(0o644)

    with capture_logs() as logs:
        auth = make_auth(cache)

    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert [e["event"] for e in logs] == ["token_cache_permissions_fixed"]
    assert auth.token() == "at-1"


def test_an_unreadable_cache_is_ignored_with_a_warning(entra, tmp_path):
    cache = tmp_path / "cache.json"
    cache.write_text("{not json")
    cache.chmod(0o600)

    with capture_logs() as logs:
        auth = make_auth(cache)

    assert [e["event"] for e in logs] == ["token_cache_unreadable"]
    with pytest.raises(AuthError, match="login"):
        auth.token()


def test_password_mode_as_confidential_client_sends_the_secret_and_caches(entra, tmp_path):
    entra.get(f"{HOST}/common/userrealm/{USER}", json={"account_type": "Managed", "ver": "1.0"})
    entra.post(TOKEN_URL, json=token_response("at-pw"))
    cache = tmp_path / "cache.json"
    auth = make_auth(cache, mode="password", client_secret=SECRET, username=USER, password=PASSWORD)

    assert auth.token() == "at-pw"
    assert auth.token() == "at-pw"

    posts = token_posts(entra)
    assert len(posts) == 1
    assert posts[0]["grant_type"] == ["password"]
    assert posts[0]["client_secret"] == [SECRET]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_password_mode_as_public_client_works_without_a_warning(entra, tmp_path):
    entra.get(f"{HOST}/common/userrealm/{USER}", json={"account_type": "Managed", "ver": "1.0"})
    entra.post(TOKEN_URL, json=token_response("at-public"))
    auth = make_auth(tmp_path / "c.json", mode="password", username=USER, password=PASSWORD)

    assert auth.token() == "at-public"
    assert "client_secret" not in token_posts(entra)[0]


def test_refused_credentials_raise_auth_error_with_entras_code_and_no_secrets(entra, tmp_path):
    entra.get(f"{HOST}/common/userrealm/{USER}", json={"account_type": "Managed", "ver": "1.0"})
    entra.post(
        TOKEN_URL,
        status=401,
        json={
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
        },
    )
    auth = make_auth(
        tmp_path / "c.json",
        mode="password",
        client_secret=SECRET,
        username=USER,
        password=PASSWORD,
    )

    with pytest.raises(AuthError) as caught:
        auth.token()

    message = str(caught.value)
    assert "invalid_client: AADSTS7000215" in message
    assert SECRET not in message
    assert PASSWORD not in message


def test_refresh_token_mode_redeems_the_token_from_its_secret_file(entra, tmp_path):
    secret_file = tmp_path / "pc-refresh-token"
    secret_file.write_text("rt-from-file\n")
    entra.post(TOKEN_URL, json=token_response("at-rt", "rt-rotated"))
    cache = tmp_path / "cache.json"
    auth = make_auth(cache, mode="refresh_token", refresh_token_file=secret_file)

    assert auth.token() == "at-rt"

    post = token_posts(entra)[0]
    assert post["grant_type"] == ["refresh_token"]
    assert post["refresh_token"] == ["rt-from-file"]
    assert "rt-rotated" in cache.read_text()


def test_entra_unreachable_is_transient(tmp_path):
    with responses.RequestsMock() as mocked:
        mocked.get(
            f"{ISSUER}/.well-known/openid-configuration",
            body=requests.exceptions.ConnectionError("connection refused"),
        )
        auth = make_auth(tmp_path / "c.json")
        with pytest.raises(TransientError, match="Entra unreachable"):
            auth.token()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"authority": "http://login.sandbox.test/tenant-1"}, "authority"),
        ({"authority": "https://login.sandbox.test"}, "authority"),
        ({"client_secret": SECRET}, "client_secret"),
        ({"mode": "password", "username": USER}, "username/password"),
        ({"mode": "refresh_token"}, "refresh_token_file"),
        ({"username": USER}, "username/password"),
        ({"mode": "browser"}, "mode"),
        ({"scopes": ()}, "scopes"),
    ],
)
def test_unusable_settings_are_a_config_error_naming_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as caught:
        make_auth(tmp_path / "c.json", **overrides)
    assert key in [problem.key for problem in caught.value.problems]
