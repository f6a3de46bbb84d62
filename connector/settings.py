"""Settings: a TOML file, overridden by ``REFERRAL_SYNC_*`` environment variables, loaded once.

The result is a tree of frozen dataclasses; nothing deeper in the package reads the environment.
Every problem found is collected and raised together as one :class:`ConfigError`, each naming
the file (or environment variable), the key and what is wrong.

Secrets never come from the config text. A secret key ``X`` is given as ``X_env`` (the name of an
environment variable holding it) or ``X_file`` (a file holding it); a literal ``X`` is refused.

Environment overrides use ``__`` between levels and the connection's name as its level::

    REFERRAL_SYNC_STATE__URL=sqlite:///tmp/state.db
    REFERRAL_SYNC_CONNECTION__CONTOSO__PARTNER_CENTER__BASE_URL=https://...

Values from the environment are parsed as TOML values when they parse (``30``, ``true``,
``"x"``) and taken as plain strings otherwise.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from connector.errors import ConfigError, ConfigProblem

ENV_PREFIX = "REFERRAL_SYNC_"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_CRMS = ("salesforce", "dynamics")
AuthMode = Literal["device_code", "password", "refresh_token"]
_AUTH_MODES: tuple[AuthMode, ...] = ("device_code", "password", "refresh_token")
_LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_STATE_URL = "sqlite:///state/referral-sync.db"
DEFAULT_LISTEN = "127.0.0.1:8765"
DEFAULT_WEBHOOK_BASE_URL = "https://api.partnercenter.microsoft.com"


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value that never shows itself in ``repr``, ``str`` or logs."""

    value: str = field(repr=False)
    origin: str = ""

    def __str__(self) -> str:
        return f"<secret from {self.origin}>"

    def reveal(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySettings:
    max_attempts: int = 6
    max_seconds: float = 120.0
    base_seconds: float = 0.5
    cap_seconds: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerCenterSettings:
    base_url: str
    authority: str
    client_id: str
    scopes: tuple[str, ...]
    auth_mode: AuthMode
    token_cache: Path
    client_secret: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    refresh_token_file: Path | None = None
    ca_bundle: Path | None = None
    poll_overlap_seconds: float = 300.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: RetrySettings = field(default_factory=RetrySettings)
    webhook_base_url: str = DEFAULT_WEBHOOK_BASE_URL  # the webhook registration API's root
    write_concurrency: int = 8  # PATCHes in flight at once (the API has no batch update)


SalesforceAuthMode = Literal["client_credentials", "jwt"]
_SF_AUTH_MODES: tuple[SalesforceAuthMode, ...] = ("client_credentials", "jwt")


@dataclass(frozen=True, slots=True, kw_only=True)
class SalesforceSettings:
    instance_url: str
    token_url: str
    auth_mode: SalesforceAuthMode
    client_id: str
    client_secret: Secret | None = None
    username: str | None = None
    private_key_file: Path | None = None
    api_version: str = "62.0"
    external_id_field: str = "Partner_Center_Referral_Id__c"
    ca_bundle: Path | None = None
    poll_overlap_seconds: float = 120.0
    quota_wait_seconds: float = 900.0  # after "the org's API quota is spent": no call for this
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: RetrySettings = field(default_factory=RetrySettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class DynamicsSettings:
    """A Dataverse environment: the Web API root, and an Entra app's client credentials.

    ``scope`` is the environment's resource + ``/.default`` (``https://<org>.crm.dynamics.com/
    .default``); it is configured, never derived from ``base_url`` (they differ behind a proxy).
    """

    base_url: str  # https://<org>.crm.dynamics.com/api/data/v9.2
    authority: str  # https://login.microsoftonline.com/<tenant id>
    client_id: str
    client_secret: Secret
    scope: str
    ca_bundle: Path | None = None
    poll_page_size: int = 1000
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: RetrySettings = field(default_factory=RetrySettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionSettings:
    name: str
    crm: str
    partner_center: PartnerCenterSettings
    salesforce: SalesforceSettings | None = None
    dynamics: DynamicsSettings | None = None
    interval_seconds: float = 30.0
    mapping: Path | None = None  # None: mappings/<crm>.yaml shipped with Referral Sync


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSettings:
    level: str = "info"
    mask_customer_contacts: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class StateSettings:
    """Where the state lives. ``password`` (from ``password_env``/``password_file``) replaces the
    URL's own, so a PostgreSQL password need not be written in the file. ``lease_ttl_seconds``:
    how long a connection's leader lease lasts unrenewed (default: the connection's interval,
    at least 3 s), i.e. how soon a replica takes over a dead one's connections."""

    url: str = DEFAULT_STATE_URL
    password: Secret | None = None
    lease_ttl_seconds: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """The ops HTTP server (``/metrics``, ``/healthz``, ``/readyz``, ``/status``, webhooks)."""

    listen: str = DEFAULT_LISTEN  # host:port; loopback unless you mean otherwise


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    """Partner Center webhooks into the ops server, at ``/webhooks/partner-center/<connection>``.

    ``public_url``: the https root Partner Center reaches that server at (a reverse proxy that
    terminates TLS, usually); ``referral-sync webhooks register`` registers
    ``public_url + /webhooks/partner-center/<connection>`` with each connection's tenant.
    ``certificate_hosts``: the hosts an ``X-MS-Certificate-Url`` may name (anything else is
    never fetched); ``trusted_ca``: the CAs the signing certificate must chain to (certifi's
    when absent); ``max_age_seconds``: how old (or how far ahead) an event may be.
    """

    enabled: bool = False
    public_url: str = ""
    certificate_hosts: tuple[str, ...] = ()
    trusted_ca: Path | None = None
    max_age_seconds: float = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    source: Path
    connections: tuple[ConnectionSettings, ...]
    state: StateSettings = field(default_factory=StateSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    def connection(self, name: str) -> ConnectionSettings:
        for conn in self.connections:
            if conn.name == name:
                return conn
        raise KeyError(name)

    def chosen(self, name: str | None) -> list[ConnectionSettings]:
        """Every connection (``name`` None) or the one named, as a command's ``--connection``
        picks; an unknown name is a ``ConfigError`` listing the known ones."""
        if name is None:
            return list(self.connections)
        try:
            return [self.connection(name)]
        except KeyError:
            known = ", ".join(c.name for c in self.connections)
            problem = ConfigProblem(
                "(command line)", "--connection", f"no {name!r}; known: {known}"
            )
            raise ConfigError([problem]) from None


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path``, apply environment overrides, validate everything, return frozen settings."""
    env = dict(os.environ if environ is None else environ)
    reader = _Reader(path, env)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), "-", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), "-", f"cannot read: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), "-", f"not valid TOML: {exc}")]) from None
    raw = _apply_env_overrides(raw, env, reader)
    settings = reader.settings(raw)
    if reader.problems or settings is None:
        raise ConfigError(reader.problems)
    return settings


def _apply_env_overrides(
    raw: dict[str, Any], env: Mapping[str, str], reader: _Reader
) -> dict[str, Any]:
    connections = raw.get("connection")
    by_name: dict[str, dict[str, Any]] = {}
    if isinstance(connections, list):
        by_name = {
            str(c.get("name", "")).upper(): c
            for c in connections
            if isinstance(c, dict) and isinstance(c.get("name"), str)
        }
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == f"{ENV_PREFIX}CONFIG":
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        target: dict[str, Any] | None = raw
        if parts[0] == "connection":
            if len(parts) < 3 or parts[1].upper() not in by_name:
                reader.problem(var, "-", "names no connection defined in the config file")
                continue
            target = by_name[parts[1].upper()]
            parts = parts[2:]
        for part in parts[:-1]:
            nxt = target.setdefault(part, {}) if target is not None else None
            target = nxt if isinstance(nxt, dict) else None
        if target is None:
            reader.problem(var, ".".join(parts), "overrides a value that is not a table")
            continue
        target[parts[-1]] = _env_value(env[var])
    return raw


def _env_value(text: str) -> object:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


class _Reader:
    """Walks the raw TOML, collecting every problem instead of stopping at the first."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.file = path
        self.base = path.parent
        self.env = env
        self.problems: list[ConfigProblem] = []

    def problem(self, source: str, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(source, key, message))

    def fail(self, key: str, message: str) -> None:
        self.problem(str(self.file), key, message)

    # -- typed getters ---------------------------------------------------------------------

    def table(self, raw: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            self.fail(_join(where, key), "must be a table")
            return {}
        return value

    def unknown(self, raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in sorted(set(raw) - allowed):
            self.fail(_join(where, key), "unknown key (a typo?)")

    def string(
        self, raw: Mapping[str, Any], key: str, where: str, *, default: str | None = None
    ) -> str:
        value = raw.get(key, default)
        if value is None:
            self.fail(_join(where, key), "is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(_join(where, key), f"must be a non-empty string, got {value!r}")
            return ""
        return value

    def optional_string(self, raw: Mapping[str, Any], key: str, where: str) -> str | None:
        return None if raw.get(key) is None else self.string(raw, key, where)

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        where: str,
        *,
        default: float,
        minimum: float,
        maximum: float,
    ) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(_join(where, key), f"must be a number, got {value!r}")
            return default
        if not minimum <= value <= maximum:
            self.fail(_join(where, key), f"must be between {minimum} and {maximum}, got {value}")
            return default
        return float(value)

    def boolean(self, raw: Mapping[str, Any], key: str, where: str, *, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(_join(where, key), f"must be true or false, got {value!r}")
            return default
        return value

    def choice(
        self, raw: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...], default: str
    ) -> str:
        value = raw.get(key, default)
        if value not in choices:
            self.fail(_join(where, key), f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return str(value)

    def https_url(self, raw: Mapping[str, Any], key: str, where: str) -> str:
        value = self.string(raw, key, where)
        problem = _https_url_problem(value) if value else None
        if problem is not None:
            self.fail(_join(where, key), problem)
        return value.rstrip("/")

    def path(self, raw: Mapping[str, Any], key: str, where: str, *, must_exist: bool) -> Path:
        text = self.string(raw, key, where)
        path = (self.base / Path(text).expanduser()) if text else Path()
        if text and must_exist and not path.is_file():
            self.fail(_join(where, key), f"file not found: {path}")
        return path

    def secret(  # noqa: PLR0911 -- one early return per way a secret can be mis-specified
        self, raw: Mapping[str, Any], key: str, where: str, *, required: bool
    ) -> Secret | None:
        name = _join(where, key)
        if key in raw:
            self.fail(
                name, f"secrets are not read from the config text: use {key}_env or {key}_file"
            )
            return None
        env_key, file_key = f"{key}_env", f"{key}_file"
        if env_key in raw and file_key in raw:
            self.fail(name, f"give either {env_key} or {file_key}, not both")
            return None
        if env_key in raw:
            var = self.string(raw, env_key, where)
            if var and not self.env.get(var):
                self.fail(_join(where, env_key), f"environment variable {var} is not set or empty")
                return None
            return Secret(self.env[var], f"${var}") if var else None
        if file_key in raw:
            path = self.path(raw, file_key, where, must_exist=True)
            if not path.is_file():
                return None
            try:
                value = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "unreadable"
                self.fail(_join(where, file_key), f"{why}: {path}")
                return None
            if not value:
                self.fail(_join(where, file_key), f"file is empty: {path}")
                return None
            return Secret(value, str(path))
        if required:
            self.fail(name, f"is required: give {env_key} or {file_key}")
        return None

    # -- sections ----------------------------------------------------------------------------

    def settings(self, raw: dict[str, Any]) -> Settings | None:
        self.unknown(raw, {"connection", "state", "logging", "server", "webhooks"}, "")
        state_raw = self.table(raw, "state", "")
        self.unknown(
            state_raw,
            {"url", "password", "password_env", "password_file", "lease_ttl_seconds"},
            "state",
        )
        state = StateSettings(
            url=self.string(state_raw, "url", "state", default=DEFAULT_STATE_URL),
            password=self.secret(state_raw, "password", "state", required=False),
            lease_ttl_seconds=None
            if "lease_ttl_seconds" not in state_raw
            else self.number(
                state_raw, "lease_ttl_seconds", "state", default=30.0, minimum=3.0, maximum=3600.0
            ),
        )
        log_raw = self.table(raw, "logging", "")
        self.unknown(log_raw, {"level", "mask_customer_contacts"}, "logging")
        logging = LoggingSettings(
            level=self.choice(log_raw, "level", "logging", _LOG_LEVELS, "info"),
            mask_customer_contacts=self.boolean(
                log_raw, "mask_customer_contacts", "logging", default=True
            ),
        )
        conns_raw = raw.get("connection")
        if not isinstance(conns_raw, list) or not conns_raw:
            self.fail("connection", "at least one [[connection]] is required")
            return None
        connections: list[ConnectionSettings] = []
        for index, conn_raw in enumerate(conns_raw):
            conn = self.connection(conn_raw, f"connection[{index}]")
            if conn is not None:
                connections.append(conn)
        names = [c.name for c in connections]
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.fail("connection", f"the name {name!r} is used more than once")
        return Settings(
            source=self.file,
            connections=tuple(connections),
            state=state,
            logging=logging,
            server=self.server(self.table(raw, "server", "")),
            webhooks=self.webhooks(self.table(raw, "webhooks", "")),
        )

    def server(self, raw: dict[str, Any]) -> ServerSettings:
        self.unknown(raw, {"listen"}, "server")
        listen = self.string(raw, "listen", "server", default=DEFAULT_LISTEN)
        try:
            parse_listen(listen)
        except ValueError as exc:
            self.fail("server.listen", str(exc))
        return ServerSettings(listen=listen)

    def webhooks(self, raw: dict[str, Any]) -> WebhookSettings:
        where = "webhooks"
        self.unknown(
            raw,
            {"enabled", "public_url", "certificate_hosts", "trusted_ca", "max_age_seconds"},
            where,
        )
        enabled = self.boolean(raw, "enabled", where, default=False)
        hosts = raw.get("certificate_hosts", [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
            self.fail(_join(where, "certificate_hosts"), "must be a list of host names")
            hosts = []
        public_url = ""
        if enabled or "public_url" in raw:
            public_url = self.string(raw, "public_url", where).rstrip("/")
            if public_url and not _public_url_ok(public_url):
                self.fail(
                    _join(where, "public_url"),
                    f"must be an https:// URL (http:// only on loopback), got {public_url!r}",
                )
        if enabled and not hosts:
            self.fail(
                _join(where, "certificate_hosts"),
                "is required when webhooks are enabled: the host(s) Partner Center's "
                "X-MS-Certificate-Url names (a rejected delivery's log line shows it)",
            )
        trusted_ca = None
        if raw.get("trusted_ca") is not None:
            trusted_ca = self.path(raw, "trusted_ca", where, must_exist=True)
        return WebhookSettings(
            enabled=enabled,
            public_url=public_url,
            certificate_hosts=tuple(h.strip().lower() for h in hosts),
            trusted_ca=trusted_ca,
            max_age_seconds=self.number(
                raw, "max_age_seconds", where, default=600.0, minimum=30.0, maximum=86_400.0
            ),
        )

    def connection(self, raw: object, where: str) -> ConnectionSettings | None:
        if not isinstance(raw, dict):
            self.fail(where, "must be a table")
            return None
        self.unknown(
            raw,
            {
                "name", "crm", "interval_seconds", "mapping",
                "partner_center", "salesforce", "dynamics",
            },
            where,
        )  # fmt: skip
        name = self.string(raw, "name", where)
        if name and not _NAME.match(name):
            self.fail(_join(where, "name"), "use lowercase letters, digits, '-' and '_' only")
        crm = self.choice(raw, "crm", where, _CRMS, "salesforce")
        interval = self.number(
            raw, "interval_seconds", where, default=30.0, minimum=1.0, maximum=86_400.0
        )
        mapping = self.path(raw, "mapping", where, must_exist=True) if "mapping" in raw else None
        salesforce = None
        if raw.get("crm", "salesforce") == "salesforce" and "salesforce" not in raw:
            self.fail(_join(where, "salesforce"), "is required when crm = 'salesforce'")
        elif "salesforce" in raw:
            sf_where = _join(where, "salesforce")
            salesforce = self.salesforce(self.table(raw, "salesforce", where), sf_where)
        dynamics = None
        if raw.get("crm") == "dynamics" and "dynamics" not in raw:
            self.fail(_join(where, "dynamics"), "is required when crm = 'dynamics'")
        elif "dynamics" in raw:
            dv_where = _join(where, "dynamics")
            dynamics = self.dynamics(self.table(raw, "dynamics", where), dv_where)
        if "partner_center" not in raw:
            self.fail(_join(where, "partner_center"), "is required")
            return None
        return ConnectionSettings(
            name=name,
            crm=crm,
            salesforce=salesforce,
            dynamics=dynamics,
            interval_seconds=interval,
            mapping=mapping,
            partner_center=self.partner_center(
                self.table(raw, "partner_center", where), _join(where, "partner_center")
            ),
        )

    def partner_center(self, raw: dict[str, Any], where: str) -> PartnerCenterSettings:
        self.unknown(
            raw,
            {
                "base_url", "authority", "client_id", "scopes", "auth_mode", "token_cache",
                "username", "ca_bundle", "poll_overlap_seconds",
                "connect_timeout", "read_timeout", "retry",
                "client_secret", "client_secret_env", "client_secret_file",
                "password", "password_env", "password_file",
                "refresh_token", "refresh_token_file", "webhook_base_url", "write_concurrency",
            },
            where,
        )  # fmt: skip
        mode = self.choice(raw, "auth_mode", where, _AUTH_MODES, "device_code")
        scopes = raw.get("scopes", ["https://api.partner.microsoft.com/.default"])
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
            self.fail(_join(where, "scopes"), "must be a list of non-empty strings")
            scopes = []
        username = self.optional_string(raw, "username", where)
        if mode == "password" and username is None:
            self.fail(_join(where, "username"), "is required when auth_mode = 'password'")
        ca_bundle = None
        if raw.get("ca_bundle") is not None:
            ca_bundle = self.path(raw, "ca_bundle", where, must_exist=True)
        return PartnerCenterSettings(
            base_url=self.https_url(raw, "base_url", where),
            authority=self.https_url(raw, "authority", where),
            client_id=self.string(raw, "client_id", where),
            scopes=tuple(scopes),
            auth_mode=cast(AuthMode, mode),
            token_cache=self.path(
                {"token_cache": raw.get("token_cache", "state/partner-center-token-cache.json")},
                "token_cache",
                where,
                must_exist=False,
            ),
            client_secret=self.secret(raw, "client_secret", where, required=False),
            username=username,
            password=self.secret(raw, "password", where, required=mode == "password"),
            refresh_token_file=self.refresh_token_file(raw, where, mode),
            ca_bundle=ca_bundle,
            poll_overlap_seconds=self.number(
                raw, "poll_overlap_seconds", where, default=300.0, minimum=0.0, maximum=86_400.0
            ),
            connect_timeout=self.number(
                raw, "connect_timeout", where, default=10.0, minimum=0.1, maximum=300.0
            ),
            read_timeout=self.number(
                raw, "read_timeout", where, default=60.0, minimum=0.1, maximum=600.0
            ),
            retry=self.retry(self.table(raw, "retry", where), _join(where, "retry")),
            webhook_base_url=self.https_url(
                {"webhook_base_url": raw.get("webhook_base_url", DEFAULT_WEBHOOK_BASE_URL)},
                "webhook_base_url",
                where,
            ),
            write_concurrency=int(
                self.number(raw, "write_concurrency", where, default=8, minimum=1, maximum=32)
            ),
        )

    def salesforce(self, raw: dict[str, Any], where: str) -> SalesforceSettings:
        self.unknown(
            raw,
            {
                "instance_url", "token_url", "auth_mode", "client_id", "username",
                "private_key_file", "api_version", "external_id_field", "ca_bundle",
                "poll_overlap_seconds", "quota_wait_seconds", "connect_timeout", "read_timeout",
                "retry", "client_secret", "client_secret_env", "client_secret_file",
            },
            where,
        )  # fmt: skip
        mode = self.choice(raw, "auth_mode", where, _SF_AUTH_MODES, "client_credentials")
        instance_url = self.https_url(raw, "instance_url", where)
        token_url = instance_url + "/services/oauth2/token"
        if raw.get("token_url") is not None:
            token_url = self.https_url(raw, "token_url", where)
        username = self.optional_string(raw, "username", where)
        key_file = None
        if mode == "jwt":
            if username is None:
                self.fail(_join(where, "username"), "is required when auth_mode = 'jwt'")
            key_file = self.path(raw, "private_key_file", where, must_exist=True)
        version = str(raw.get("api_version", "62.0"))
        if not re.fullmatch(r"\d{2}\.0", version):
            self.fail(_join(where, "api_version"), f"must look like '62.0', got {version!r}")
        external_id = self.string(
            raw, "external_id_field", where, default="Partner_Center_Referral_Id__c"
        )
        if external_id and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*__c", external_id):
            self.fail(_join(where, "external_id_field"), "must be a custom field API name (…__c)")
        ca_bundle = None
        if raw.get("ca_bundle") is not None:
            ca_bundle = self.path(raw, "ca_bundle", where, must_exist=True)
        return SalesforceSettings(
            instance_url=instance_url,
            token_url=token_url,
            auth_mode=cast(SalesforceAuthMode, mode),
            client_id=self.string(raw, "client_id", where),
            client_secret=self.secret(
                raw, "client_secret", where, required=mode == "client_credentials"
            ),
            username=username,
            private_key_file=key_file,
            api_version=version,
            external_id_field=external_id,
            ca_bundle=ca_bundle,
            poll_overlap_seconds=self.number(
                raw, "poll_overlap_seconds", where, default=120.0, minimum=0.0, maximum=86_400.0
            ),
            quota_wait_seconds=self.number(
                raw, "quota_wait_seconds", where, default=900.0, minimum=1.0, maximum=86_400.0
            ),
            connect_timeout=self.number(
                raw, "connect_timeout", where, default=10.0, minimum=0.1, maximum=300.0
            ),
            read_timeout=self.number(
                raw, "read_timeout", where, default=60.0, minimum=0.1, maximum=600.0
            ),
            retry=self.retry(self.table(raw, "retry", where), _join(where, "retry")),
        )

    def dynamics(self, raw: dict[str, Any], where: str) -> DynamicsSettings | None:
        self.unknown(
            raw,
            {
                "base_url", "authority", "client_id", "scope", "ca_bundle", "poll_page_size",
                "connect_timeout", "read_timeout", "retry",
                "client_secret", "client_secret_env", "client_secret_file",
            },
            where,
        )  # fmt: skip
        base_url = self.https_url(raw, "base_url", where)
        if base_url and not re.search(r"/api/data/v\d+\.\d+$", base_url):
            self.fail(_join(where, "base_url"), "must end in /api/data/v9.2 (the Web API root)")
        scope = self.string(raw, "scope", where)
        if scope and not (scope.startswith("https://") and scope.endswith("/.default")):
            self.fail(_join(where, "scope"), "must be https://<org>.crm.dynamics.com/.default")
        ca_bundle = None
        if raw.get("ca_bundle") is not None:
            ca_bundle = self.path(raw, "ca_bundle", where, must_exist=True)
        secret = self.secret(raw, "client_secret", where, required=True)
        settings = DynamicsSettings(
            base_url=base_url,
            authority=self.https_url(raw, "authority", where),
            client_id=self.string(raw, "client_id", where),
            client_secret=secret or Secret("", "(missing)"),
            scope=scope,
            ca_bundle=ca_bundle,
            poll_page_size=int(
                self.number(raw, "poll_page_size", where, default=1000, minimum=1, maximum=5000)
            ),
            connect_timeout=self.number(
                raw, "connect_timeout", where, default=10.0, minimum=0.1, maximum=300.0
            ),
            read_timeout=self.number(
                raw, "read_timeout", where, default=60.0, minimum=0.1, maximum=600.0
            ),
            retry=self.retry(self.table(raw, "retry", where), _join(where, "retry")),
        )
        return settings if secret is not None else None

    def refresh_token_file(self, raw: dict[str, Any], where: str, mode: str) -> Path | None:
        """A file, read when needed: msal rotates refresh tokens, so the file is only the seed."""
        if "refresh_token" in raw:
            self.fail(
                _join(where, "refresh_token"),
                "secrets are not read from the config text: use refresh_token_file",
            )
        if "refresh_token_file" in raw:
            return self.path(raw, "refresh_token_file", where, must_exist=True)
        if mode == "refresh_token":
            self.fail(
                _join(where, "refresh_token_file"), "is required when auth_mode = 'refresh_token'"
            )
        return None

    def retry(self, raw: dict[str, Any], where: str) -> RetrySettings:
        self.unknown(raw, {"max_attempts", "max_seconds", "base_seconds", "cap_seconds"}, where)
        base = self.number(raw, "base_seconds", where, default=0.5, minimum=0.0, maximum=60.0)
        cap = self.number(raw, "cap_seconds", where, default=30.0, minimum=0.0, maximum=3600.0)
        if cap < base:
            self.fail(_join(where, "cap_seconds"), f"must be at least base_seconds ({base})")
        return RetrySettings(
            max_attempts=int(
                self.number(raw, "max_attempts", where, default=6, minimum=1, maximum=100)
            ),
            max_seconds=self.number(
                raw, "max_seconds", where, default=120.0, minimum=1.0, maximum=86_400.0
            ),
            base_seconds=base,
            cap_seconds=cap,
        )


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` → (host, port); a ValueError with the reason otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port (e.g. {DEFAULT_LISTEN}), got {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _public_url_ok(url: str) -> bool:
    """https anywhere; plain http only to this machine (the sandbox, a local proxy)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _https_url_problem(value: str) -> str | None:
    """Why ``value`` is no usable https endpoint, or None. Never echoes user:password@."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return "is not a valid URL"
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password (give secrets as *_env or *_file)"
    if parts.scheme != "https":
        return f"must be an https:// URL, got {value!r}"
    if not parts.hostname or any(c.isspace() for c in value):
        return f"must name a host, with no spaces, got {value!r}"
    return None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
