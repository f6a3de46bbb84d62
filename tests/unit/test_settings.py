"""Settings: TOML + environment overrides, secrets never from the text, every problem listed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.settings import Secret, load_settings

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

MINIMAL = """
[[connection]]
name = "contoso"
crm = "salesforce"

[connection.partner_center]
base_url = "https://pc.example/v1.0/engagements/"
authority = "https://login.example/tenant"
client_id = "app"
client_secret_env = "PC_SECRET"

[connection.salesforce]
instance_url = "https://contoso.my.salesforce.com"
client_id = "3MVG9-consumer-key"
client_secret_env = "SF_SECRET"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env)
    return [str(p) for p in caught.value.problems]


def test_minimal_config_loads_with_defaults_and_secret_from_environment(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL), {"PC_SECRET": "s3cret", "SF_SECRET": "sf"})
    conn = settings.connection("contoso")
    pc = conn.partner_center
    assert pc.base_url == "https://pc.example/v1.0/engagements"
    assert pc.client_secret is not None
    assert pc.client_secret.reveal() == "s3cret"
    assert pc.auth_mode == "device_code"
    assert pc.scopes == ("https://api.partner.microsoft.com/.default",)
    assert pc.token_cache == tmp_path / "state/partner-center-token-cache.json"
    assert conn.interval_seconds == 30.0
    assert settings.state.url == "sqlite:///state/referral-sync.db"


def test_settings_are_frozen(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL), {"PC_SECRET": "x", "SF_SECRET": "sf"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.state = settings.state  # type: ignore[misc]


def test_secret_never_shows_in_repr_or_str(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL), {"PC_SECRET": "s3cret", "SF_SECRET": "sf"})
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.connections[0].partner_center.client_secret)


def test_secret_written_in_config_text_is_refused(tmp_path):
    text = MINIMAL.replace('client_secret_env = "PC_SECRET"', 'client_secret = "inline"')
    problems = problems_of(write(tmp_path, text), {})
    assert any("client_secret" in p and "not read from the config text" in p for p in problems)


def test_secret_from_file_is_read_and_stripped(tmp_path):
    (tmp_path / "secret.txt").write_text("from-file\n", encoding="utf-8")
    text = MINIMAL.replace('client_secret_env = "PC_SECRET"', 'client_secret_file = "secret.txt"')
    settings = load_settings(write(tmp_path, text), {"SF_SECRET": "sf"})
    secret = settings.connections[0].partner_center.client_secret
    assert isinstance(secret, Secret)
    assert secret.reveal() == "from-file"


def test_every_problem_is_listed_with_file_and_key(tmp_path):
    text = """
[logging]
level = "loud"
colour = true

[[connection]]
name = "Bad Name"
crm = "hubspot"
interval_seconds = 0

[connection.partner_center]
base_url = "http://pc.example"
client_id = ""
auth_mode = "password"
password_env = "MISSING_VAR"
"""
    path = write(tmp_path, text)
    problems = problems_of(path, {})
    expected_keys = [
        "logging.level",
        "logging.colour",
        "connection[0].name",
        "connection[0].crm",
        "connection[0].interval_seconds",
        "connection[0].partner_center.base_url",
        "connection[0].partner_center.authority",
        "connection[0].partner_center.client_id",
        "connection[0].partner_center.username",
        "connection[0].partner_center.password_env",
    ]
    for key in expected_keys:
        assert any(p.startswith(f"{path}: {key}:") for p in problems), (key, problems)
    assert len(problems) == len(expected_keys)


def test_environment_overrides_a_nested_value_of_a_named_connection(tmp_path):
    env = {
        "PC_SECRET": "x",
        "SF_SECRET": "sf",
        "REFERRAL_SYNC_STATE__URL": "sqlite:///tmp/other.db",
        "REFERRAL_SYNC_CONNECTION__CONTOSO__INTERVAL_SECONDS": "90",
        "REFERRAL_SYNC_CONNECTION__CONTOSO__PARTNER_CENTER__RETRY__MAX_ATTEMPTS": "3",
    }
    settings = load_settings(write(tmp_path, MINIMAL), env)
    assert settings.state.url == "sqlite:///tmp/other.db"
    assert settings.connections[0].interval_seconds == 90.0
    assert settings.connections[0].partner_center.retry.max_attempts == 3


def test_environment_override_for_an_unknown_connection_is_a_problem(tmp_path):
    problems = problems_of(
        write(tmp_path, MINIMAL),
        {"PC_SECRET": "x", "SF_SECRET": "sf", "REFERRAL_SYNC_CONNECTION__NOPE__X": "1"},
    )
    assert problems == [
        "REFERRAL_SYNC_CONNECTION__NOPE__X: -: names no connection defined in the config file"
    ]


def test_duplicate_connection_names_are_refused(tmp_path):
    problems = problems_of(
        write(tmp_path, MINIMAL + MINIMAL), {"PC_SECRET": "x", "SF_SECRET": "sf"}
    )
    assert any("used more than once" in p for p in problems)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[[connection]\nname=")
    problems = problems_of(path, {})
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: -: not valid TOML")


def test_missing_file_is_a_config_error(tmp_path):
    problems = problems_of(tmp_path / "nope.toml", {})
    assert problems == [f"{tmp_path / 'nope.toml'}: -: file not found"]


def test_salesforce_section_is_required_for_a_salesforce_connection(tmp_path):
    text = MINIMAL[: MINIMAL.index("[connection.salesforce]")]
    problems = problems_of(write(tmp_path, text), {"PC_SECRET": "x"})
    assert problems == [
        f"{tmp_path / 'config.toml'}: connection[0].salesforce: is required when crm = 'salesforce'"
    ]


def test_salesforce_settings_default_the_token_url_and_external_id_field(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL), {"PC_SECRET": "x", "SF_SECRET": "sf"})
    sf = settings.connections[0].salesforce
    assert sf is not None
    assert sf.token_url == "https://contoso.my.salesforce.com/services/oauth2/token"
    assert sf.external_id_field == "Partner_Center_Referral_Id__c"
    assert sf.auth_mode == "client_credentials"
    assert sf.api_version == "62.0"


def test_salesforce_jwt_needs_a_username_and_an_existing_key_file(tmp_path):
    text = MINIMAL.replace(
        'client_secret_env = "SF_SECRET"', 'auth_mode = "jwt"\nprivate_key_file = "nope.pem"'
    )
    problems = problems_of(write(tmp_path, text), {"PC_SECRET": "x"})
    assert any("salesforce.username: is required when auth_mode = 'jwt'" in p for p in problems)
    assert any("salesforce.private_key_file: file not found" in p for p in problems)


def test_retry_cap_below_base_is_refused(tmp_path):
    text = MINIMAL + "\n[connection.partner_center.retry]\nbase_seconds = 5\ncap_seconds = 1\n"
    problems = problems_of(write(tmp_path, text), {"PC_SECRET": "x", "SF_SECRET": "sf"})
    assert any("retry.cap_seconds" in p for p in problems)


HOST_EXAMPLES = sorted(
    set(CONFIG_DIR.glob("*.example.toml")) - {CONFIG_DIR / "docker.example.toml"}
)
# (docker.example.toml names the container's secret files: tests/unit/test_container.py)


@pytest.mark.parametrize("example", HOST_EXAMPLES, ids=lambda p: p.name)
def test_shipped_example_configs_load(example):
    env = {
        "PARTNER_CENTER_CLIENT_SECRET": "x",
        "SALESFORCE_CLIENT_SECRET": "y",
        "DYNAMICS_CLIENT_SECRET": "z",
    }
    settings = load_settings(example, env)
    assert settings.connections


# -- Dynamics 365 ---------------------------------------------------------------------------------

DYNAMICS = """
[[connection]]
name = "fabrikam"
crm = "dynamics"

[connection.partner_center]
base_url = "https://pc.example/v1.0/engagements/"
authority = "https://login.example/tenant"
client_id = "app"
client_secret_env = "PC_SECRET"

[connection.dynamics]
base_url = "https://fabrikam.crm4.dynamics.com/api/data/v9.2/"
authority = "https://login.microsoftonline.com/tenant"
client_id = "dv-app"
client_secret_env = "DV_SECRET"
scope = "https://fabrikam.crm4.dynamics.com/.default"
"""


def test_dynamics_settings_load_with_defaults_and_the_secret_from_the_environment(tmp_path):
    env = {"PC_SECRET": "x", "DV_SECRET": "dv~s3cret"}
    settings = load_settings(write(tmp_path, DYNAMICS), env)

    [conn] = settings.connections
    assert conn.crm == "dynamics"
    assert conn.salesforce is None
    dv = conn.dynamics
    assert dv is not None
    assert dv.base_url == "https://fabrikam.crm4.dynamics.com/api/data/v9.2"
    assert dv.scope == "https://fabrikam.crm4.dynamics.com/.default"
    assert dv.client_secret.reveal() == "dv~s3cret"
    assert "s3cret" not in repr(dv)
    assert (dv.poll_page_size, dv.connect_timeout, dv.read_timeout) == (1000, 10.0, 60.0)
    assert dv.retry.max_attempts == 6


def test_dynamics_section_is_required_for_a_dynamics_connection(tmp_path):
    text = DYNAMICS.split("[connection.dynamics]", maxsplit=1)[0]

    problems = problems_of(write(tmp_path, text), {"PC_SECRET": "x"})

    assert problems == [
        f"{tmp_path / 'config.toml'}: connection[0].dynamics: is required when crm = 'dynamics'"
    ]


def test_dynamics_settings_list_every_problem(tmp_path):
    text = (
        DYNAMICS.replace("/api/data/v9.2/", "/")
        .replace('scope = "https://fabrikam.crm4.dynamics.com/.default"', 'scope = "api://x"')
        .replace('client_secret_env = "DV_SECRET"', 'client_secret = "literal"')
        + "poll_page_size = 6000\ncolour = 1\n"
    )

    problems = problems_of(write(tmp_path, text), {"PC_SECRET": "x"})

    where = f"{tmp_path / 'config.toml'}: connection[0].dynamics"
    assert sorted(problems) == sorted(
        [
            f"{where}.base_url: must end in /api/data/v9.2 (the Web API root)",
            f"{where}.scope: must be https://<org>.crm.dynamics.com/.default",
            (
                f"{where}.client_secret: secrets are not read from the config text: use "
                "client_secret_env or client_secret_file"
            ),
            f"{where}.poll_page_size: must be between 1 and 5000, got 6000",
            f"{where}.colour: unknown key (a typo?)",
        ]
    )


def test_dynamics_secret_may_come_from_a_file(tmp_path):
    (tmp_path / "dv.secret").write_text("from-file\n", encoding="utf-8")
    text = DYNAMICS.replace('client_secret_env = "DV_SECRET"', 'client_secret_file = "dv.secret"')

    settings = load_settings(write(tmp_path, text), {"PC_SECRET": "x"})

    dv = settings.connections[0].dynamics
    assert dv is not None
    assert dv.client_secret.reveal() == "from-file"


ENV = {"PC_SECRET": "x", "SF_SECRET": "sf"}


def test_webhooks_are_off_and_the_ops_server_on_loopback_by_default(tmp_path):
    settings = load_settings(write(tmp_path, MINIMAL), ENV)
    assert settings.server.listen == "127.0.0.1:8765"
    assert settings.webhooks.enabled is False
    pc = settings.connection("contoso").partner_center
    assert pc.webhook_base_url == "https://api.partnercenter.microsoft.com"


def test_enabled_webhooks_load_with_their_hosts_and_ca(tmp_path):
    (tmp_path / "ca.pem").write_text("pem", encoding="utf-8")
    text = (
        '[server]\nlisten = "0.0.0.0:9000"\n'
        "[webhooks]\nenabled = true\n"
        'public_url = "https://sync.contoso.example/"\n'
        'certificate_hosts = ["Certs.Example"]\ntrusted_ca = "ca.pem"\nmax_age_seconds = 120\n'
        + MINIMAL
    )
    settings = load_settings(write(tmp_path, text), ENV)
    hooks = settings.webhooks
    assert settings.server.listen == "0.0.0.0:9000"
    assert (hooks.enabled, hooks.public_url) == (True, "https://sync.contoso.example")
    assert hooks.certificate_hosts == ("certs.example",)
    assert hooks.trusted_ca == tmp_path / "ca.pem"
    assert hooks.max_age_seconds == 120


def test_enabled_webhooks_need_a_public_url_and_certificate_hosts(tmp_path):
    problems = problems_of(write(tmp_path, "[webhooks]\nenabled = true\n" + MINIMAL), ENV)
    assert any("webhooks.public_url" in p and "is required" in p for p in problems)
    assert any("webhooks.certificate_hosts" in p and "X-MS-Certificate-Url" in p for p in problems)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://sync.example", True),
        ("http://127.0.0.1:9000", True),
        ("http://localhost:9000/hooks", True),
        ("http://sync.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("ftp://sync.example", False),
    ],
)
def test_a_webhook_public_url_is_https_or_loopback_http(tmp_path, url, accepted):
    text = (
        f'[webhooks]\nenabled = true\npublic_url = "{url}"\ncertificate_hosts = ["h"]\n' + MINIMAL
    )
    if accepted:
        assert load_settings(write(tmp_path, text), ENV).webhooks.public_url == url
    else:
        assert any("webhooks.public_url" in p for p in problems_of(write(tmp_path, text), ENV))


def test_a_bad_listen_address_is_refused(tmp_path):
    problems = problems_of(write(tmp_path, '[server]\nlisten = "8765"\n' + MINIMAL), ENV)
    assert any("server.listen" in p and "host:port" in p for p in problems)


def test_write_backs_go_eight_at_a_time_unless_configured_within_bounds(tmp_path):
    assert (
        load_settings(write(tmp_path, MINIMAL), ENV).connections[0].partner_center.write_concurrency
        == 8
    )
    text = MINIMAL.replace(
        'client_secret_env = "PC_SECRET"', 'client_secret_env = "PC_SECRET"\nwrite_concurrency = 0'
    )
    assert any("write_concurrency" in p for p in problems_of(write(tmp_path, text), ENV))
