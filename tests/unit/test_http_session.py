"""The session factory: environment ignored, CA bundle honoured, https only, a timeout always."""

from __future__ import annotations

import pytest
import requests
import responses

from connector.http.session import DEFAULT_TIMEOUT, build_session


def test_ca_bundle_env_var_does_not_override_the_configured_bundle(monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    ca = tmp_path / "ca.pem"
    session = build_session(ca_bundle=ca)

    settings = session.merge_environment_settings("https://api.partner.test/", {}, None, None, None)

    assert settings["verify"] == str(ca)
    assert settings["proxies"] == {}


def test_without_a_bundle_verification_stays_on():
    assert build_session().verify is True


def test_plain_http_is_refused_before_any_io():
    session = build_session()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get("http://api.partner.test/", body="should never be reached")
        with pytest.raises(requests.exceptions.InvalidSchema, match="plain-http"):
            session.get("http://api.partner.test/")
        assert len(mocked.calls) == 0


@responses.activate
def test_requests_without_a_timeout_get_the_default():
    responses.post("https://login.partner.test/tenant/oauth2/v2.0/token", json={})

    build_session().post("https://login.partner.test/tenant/oauth2/v2.0/token", data={})

    assert responses.calls[0].request.req_kwargs["timeout"] == DEFAULT_TIMEOUT


@responses.activate
def test_a_callers_timeout_is_kept():
    responses.get("https://api.partner.test/x", json={})

    build_session(default_timeout=9).get("https://api.partner.test/x", timeout=(1, 2))

    assert responses.calls[0].request.req_kwargs["timeout"] == (1, 2)


@responses.activate
def test_every_response_is_shown_to_the_observer():
    responses.get("https://api.partner.test/ok", json={})
    responses.get("https://api.partner.test/busy", status=429)
    seen: list[int] = []
    session = build_session(on_response=lambda r: seen.append(r.status_code))

    session.get("https://api.partner.test/ok")
    session.get("https://api.partner.test/busy")

    assert seen == [200, 429]


def test_a_certificate_failure_is_told_apart_from_a_connection_cut_during_tls():
    import ssl  # noqa: PLC0415

    import requests  # noqa: PLC0415

    from connector.http.session import is_certificate_failure  # noqa: PLC0415

    untrusted = requests.exceptions.SSLError(ssl.SSLCertVerificationError(1, "self-signed"))
    cut = requests.exceptions.SSLError("EOF occurred in violation of protocol (_ssl.c:2427)")
    assert is_certificate_failure(untrusted)
    assert not is_certificate_failure(cut)
