"""Settings: a TOML file plus `SYNCD_<SECTION>__<KEY>` environment variables, validated once.

Precedence, highest first: environment variables, the TOML file (`--config FILE`, else
`SYNCD_CONFIG`, else `syncd.toml` in the working directory if present), the defaults below.
Every setting is documented, with its default, in `config/syncd.example.toml` (and the whole
table in `docs/interfaces.md`). A bad value raises `ConfigError` naming the setting and both ways
of setting it, with the file actually read; the CLI turns that into exit 2.

An environment variable that starts with `SYNCD_` but names no setting is an error too (a typo
such as `SYNCD_DATABASE_URL` would otherwise be silently ignored and a fresh `./syncd.db` used);
the message names the nearest valid variable. Variables that are not settings but belong to
syncd's own tools stay allowed: `SYNCD_CONFIG`, and anything under `SYNCD_TEST_` or
`SYNCD_BENCH_` (test and benchmark harnesses, e.g. `SYNCD_TEST_POSTGRES_URL`).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from syncd.domain.fieldmap import FieldMap
from syncd.errors import ConfigError

ENV_PREFIX = "SYNCD_"
DEFAULT_CONFIG_NAME = "syncd.toml"
# SYNCD_* variables that are not settings: the config file's path, and the namespaces of the
# test and benchmark harnesses (SYNCD_TEST_POSTGRES_URL, SYNCD_BENCH_POSTGRES_URL, ...).
ENV_NOT_SETTINGS = frozenset({"SYNCD_CONFIG"})
ENV_TOOL_PREFIXES = ("SYNCD_TEST_", "SYNCD_BENCH_")

AuthFlow = Literal["client_credentials", "jwt", "refresh_token", "password"]
Policy = Literal["crm", "pardot", "recent", "opt_out_wins", "to_pardot", "to_crm", "none"]


_CUSTOM_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*__c")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///syncd.db"
    auto_migrate: bool = True
    busy_timeout_ms: int = Field(default=10_000, ge=0)

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                "(for example sqlite+aiosqlite:///syncd.db)"
            )
        return v


class SalesforceSettings(_Section):
    login_url: str = "https://login.salesforce.com"
    auth_flow: AuthFlow = "client_credentials"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    private_key_file: Path | None = None
    refresh_token: SecretStr | None = None
    api_version: str = "60.0"
    timeout_s: float = Field(default=60.0, gt=0)
    verify_tls: bool = True

    @field_validator("login_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str) -> str:
        head, _, tail = v.partition(".")
        if not (head.isdigit() and tail.isdigit()):
            raise ValueError("must look like 60.0")
        return v

    def missing_credentials(self) -> list[str]:
        """The settings the chosen `auth_flow` needs that are not set."""
        need: dict[str, tuple[str, ...]] = {
            "client_credentials": ("client_id", "client_secret"),
            "jwt": ("client_id", "username", "private_key_file"),
            "refresh_token": ("client_id", "refresh_token"),
            "password": ("client_id", "client_secret", "username", "password"),
        }
        return [name for name in need[self.auth_flow] if getattr(self, name) in (None, "")]


class PardotSettings(_Section):
    base_url: str = "https://pi.pardot.com"
    business_unit_id: str | None = None
    daily_api_limit: int = Field(default=25_000, gt=0)
    max_concurrency: int = Field(default=5, ge=1, le=5)
    timeout_s: float = Field(default=60.0, gt=0)
    verify_tls: bool = True
    # Pardot writes of one batch through ONE Import API upsert (by matchId) when at least this
    # many prospects carry the same set of fields; fewer are PATCHed. 0 turns imports off.
    import_min_rows: int = Field(default=50, ge=0)
    # How long a batch waits for its import to complete; then its works retry later, asking
    # first what became of the import (kept in the store). Keep it under `sync.lease_s`.
    import_wait_s: float = Field(default=120.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)


class SyncSettings(_Section):
    poll_interval_s: float = Field(default=30.0, gt=0)
    email_activities: bool = True
    auto_create_prospects: bool = False
    api_budget_share: float = Field(default=0.5, gt=0, le=1)
    assignment: Literal["user", "queue", "rule"] = "user"
    assignment_queue_id: str | None = None
    batch_size: int = Field(default=200, ge=1, le=2000)
    workers: int = Field(default=2, ge=1, le=64)
    lease_s: float = Field(default=300.0, gt=0)
    overlap_s: float = Field(default=300.0, ge=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_s: float = Field(default=30.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    login_backoff_s: float = Field(default=300.0, gt=0)
    login_refusals_at_start: int = Field(default=1, ge=1)
    login_refusals_later: int = Field(default=3, ge=1)
    start_at: str | None = None
    # The Salesforce custom field on Lead and Contact that mirrors the link (the prospect id).
    crm_link_field: str | None = None
    # A linked CRM record deleted (not merged) in Salesforce: "mark" the prospect crm_deleted, or
    # "recycle" it too (send it to Pardot's recycle bin, as Salesforce's own connector does).
    crm_delete_action: Literal["mark", "recycle"] = "mark"
    # Whose opt-in (clearing an email opt-out) travels for `opt_out_wins` fields.
    opt_in_owner: Literal["pardot", "crm"] = "pardot"

    @field_validator("crm_link_field")
    @classmethod
    def _custom_field(cls, v: str | None) -> str | None:
        if v is None or v.strip() == "":
            return None
        if not _CUSTOM_FIELD.fullmatch(v.strip()):
            raise ValueError(
                "must be the API name of a custom text field on Lead and Contact, such as "
                "Pardot_Prospect_Id__c"
            )
        return v.strip()

    @model_validator(mode="after")
    def _queue_needs_id(self) -> SyncSettings:
        if self.assignment == "queue" and not self.assignment_queue_id:
            raise ValueError(
                "sync.assignment = 'queue' needs sync.assignment_queue_id (the 00G... queue id)"
            )
        return self


class OpsSettings(_Section):
    listen: str | None = None
    bearer_token: SecretStr | None = None
    viewer_token: SecretStr | None = None  # read-only console and API access
    tls_cert_file: Path | None = None  # serve the console over HTTPS (PEM certificate chain)
    tls_key_file: Path | None = None  # and its PEM private key
    heartbeat_stale_s: float = Field(default=120.0, gt=0)
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto the console believes (comma
    # list of addresses or networks); unset, those headers are ignored.
    trusted_proxies: str | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        out = []
        for entry in (e.strip() for e in v.split(",")):
            if not entry:
                continue
            try:
                out.append(
                    str(ipaddress.ip_network(entry, strict=False))
                    if "/" in entry
                    else str(ipaddress.ip_address(entry))
                )
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network: give the proxy's address "
                    "(10.0.0.5) or network (10.0.0.0/8), comma-separated"
                ) from None
        return ",".join(out) or None

    def proxies(self) -> list[str]:
        """The trusted proxies' addresses and networks (empty: trust no forwarded header)."""
        return self.trusted_proxies.split(",") if self.trusted_proxies else []

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not (0 < int(port) < 65536):
            raise ValueError("must be host:port, for example 127.0.0.1:9108")
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> OpsSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both ops.tls_cert_file and ops.tls_key_file, or neither")
        return self

    def tls(self) -> tuple[str, str] | None:
        """(certificate file, key file) when the console is served over HTTPS."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return str(self.tls_cert_file), str(self.tls_key_file)


class AlertSettings(_Section):
    webhook_url: SecretStr | None = None  # Slack-compatible incoming webhook (a secret URL)
    error_queue_threshold: int = Field(default=100, ge=1)
    check_interval_s: float = Field(default=60.0, gt=0)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class FieldSetting(_Section):
    """One entry of `[fields]`: how a Pardot prospect field maps to the CRM and who wins."""

    crm: str | None = None
    policy: Policy = "crm"
    blank_overwrites: bool = False


class Settings(BaseSettings):
    """All of syncd's settings; see `config/syncd.example.toml` for each one's meaning."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database: DatabaseSettings = DatabaseSettings()
    salesforce: SalesforceSettings = SalesforceSettings()
    pardot: PardotSettings = PardotSettings()
    sync: SyncSettings = SyncSettings()
    ops: OpsSettings = OpsSettings()
    alerts: AlertSettings = AlertSettings()
    log: LogSettings = LogSettings()
    fields: dict[str, FieldSetting] = Field(default_factory=dict)

    # The TOML file these settings were read from (None: defaults and environment only).
    _config_path: Path | None = PrivateAttr(default=None)

    @property
    def config_path(self) -> Path | None:
        """The TOML file that was read, for messages that say where to fix a setting."""
        return self._config_path

    @model_validator(mode="after")
    def _field_map_is_valid(self) -> Settings:
        # A [fields] entry the real APIs would refuse (a read-only Pardot field written, one
        # Salesforce field mapped twice) is a configuration error at start, not a crash later.
        FieldMap.default().with_overrides(self.fields)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_PATH.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def require_salesforce(self) -> None:
        """Raise `ConfigError` unless the credentials of the chosen auth flow are all set."""
        missing = self.salesforce.missing_credentials()
        if missing:
            hints = "; ".join(
                _how_to_set("salesforce", name, self._config_path) for name in missing
            )
            raise ConfigError(
                f"salesforce.auth_flow = {self.salesforce.auth_flow!r} needs "
                f"{', '.join('salesforce.' + m for m in missing)}: {hints}"
            )
        key = self.salesforce.private_key_file
        if self.salesforce.auth_flow == "jwt" and key is not None and not key.is_file():
            raise ConfigError(
                f"salesforce.private_key_file: no file at {key}; point it at the connected "
                "app's PEM private key"
            )

    def require_pardot(self) -> None:
        """Raise `ConfigError` unless the Pardot business unit is set."""
        if not self.pardot.business_unit_id:
            raise ConfigError(
                "pardot.business_unit_id is not set (the 0Uv... id from Account Engagement "
                f"Settings): {_how_to_set('pardot', 'business_unit_id', self._config_path)}"
            )


# pydantic-settings sources are chosen per class, so the file path travels in this small holder.
_CONFIG_PATH: dict[str, Path | None] = {"path": None}


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """`--config`, else `SYNCD_CONFIG`, else `./syncd.toml` if present, else None."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        return path
    env = os.environ.get("SYNCD_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"SYNCD_CONFIG={path}: no such file")
        return path
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings; `ConfigError` names every bad setting and how to fix it."""
    path = resolve_config_path(config)
    check_environment(os.environ, path)
    _CONFIG_PATH["path"] = path
    try:
        settings = Settings(**overrides)
        settings._config_path = path
        return settings
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    finally:
        _CONFIG_PATH["path"] = None


def _explain(exc: ValidationError, path: Path | None) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        name = ".".join(loc) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        hint = _how_to_set(loc[0], ".".join(loc[1:]), path) if len(loc) >= 2 else ""
        if err["type"] == "extra_forbidden":
            msg, hint = _unknown_key(loc, path)
        lines.append(f"{name}: {msg}" + (f" ({hint})" if hint else ""))
    where = f" in {path} or the environment" if path else " in the environment"
    return f"invalid settings{where}:\n  " + "\n  ".join(lines)


def _unknown_key(loc: list[str], path: Path | None) -> tuple[str, str]:
    """The message for a key the file (or the overrides) has but no setting is called."""
    where = str(path) if path else "the settings"
    if loc and loc[0] == "fields" and len(loc) == 3:
        keys = sorted(FieldSetting.model_fields)
        near = difflib.get_close_matches(loc[2], keys, n=1)
        better = f"did you mean {near[0]}? " if near else ""
        return f"unknown key in {where}; {better}a [fields] entry takes {', '.join(keys)}", ""
    valid = sorted(".".join(p) for p in _setting_paths() if "*" not in p)
    near = difflib.get_close_matches(".".join(loc), valid, n=1, cutoff=0.6)
    if not near:
        return (
            f"unknown setting in {where} (config/syncd.example.toml lists every setting)",
            "",
        )
    right = near[0].split(".")
    if len(right) == 1:
        return f"unknown section in {where}; did you mean [{right[0]}]?", ""
    return (
        f"unknown setting in {where}; did you mean {near[0]}?",
        _how_to_set(right[0], ".".join(right[1:]), path),
    )


def _how_to_set(section: str, key: str, path: Path | None = None) -> str:
    env = f"{ENV_PREFIX}{section.upper()}__{key.upper().replace('.', '__')}"
    return f"set {env} or [{section}] {key} in {path or DEFAULT_CONFIG_NAME}"


def _setting_paths(
    model: type[BaseModel] | None = None, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every settable path: sections, their keys, and `*` where a table takes any name."""
    for name, field in (model or Settings).model_fields.items():
        path = (*prefix, name)
        yield path
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _setting_paths(kind, path)
        elif getattr(kind, "__origin__", None) is dict:
            value = kind.__args__[1]  # type: ignore[union-attr]  # dict[str, X] -> X
            yield (*path, "*")
            if isinstance(value, type) and issubclass(value, BaseModel):
                yield from _setting_paths(value, (*path, "*"))


def setting_env_names() -> list[str]:
    """Every environment variable that names a setting (`*`: a table's entry name)."""
    return sorted(
        ENV_PREFIX + "__".join(p.upper() if p != "*" else "*" for p in path)
        for path in _setting_paths()
    )


def check_environment(environ: Mapping[str, str], path: Path | None = None) -> None:
    """Raise `ConfigError` for every `SYNCD_*` variable that names no setting.

    pydantic-settings ignores such a variable, so `SYNCD_DATABASE_URL` (one underscore) would
    quietly leave the default database in use. Names are matched case-insensitively, as
    pydantic-settings reads them.
    """
    patterns = [name.split("__") for name in setting_env_names()]
    exact = {name for name in setting_env_names() if "*" not in name}
    unknown: list[str] = []
    for raw in environ:
        name = raw.upper()
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS or name in exact:
            continue
        if name.startswith(ENV_TOOL_PREFIXES):
            continue
        parts = name.split("__")
        if any(_matches(parts, pat) for pat in patterns):
            continue
        unknown.append(raw)
    if not unknown:
        return
    lines = []
    for raw in sorted(unknown):
        near = difflib.get_close_matches(raw.upper(), sorted(exact), n=1, cutoff=0.6)
        fix = f"did you mean {near[0]}?" if near else "no setting has a name close to it"
        lines.append(f"environment variable {raw} is not a setting; {fix}")
    where = f", read from {path}" if path else ""
    tail = f"(config/syncd.example.toml lists every setting{where}; rename or unset it)"
    if len(lines) == 1:
        raise ConfigError(f"{lines[0]} {tail}")
    raise ConfigError(f"{len(lines)} unknown SYNCD_* variables {tail}:\n  " + "\n  ".join(lines))


def _matches(parts: list[str], pattern: list[str]) -> bool:
    return len(parts) == len(pattern) and all(
        want == "*" or got == want for got, want in zip(parts, pattern, strict=True)
    )


def _http_url(v: str) -> str:
    if not v.startswith(("https://", "http://")) or len(v.split("://", 1)[1]) == 0:
        raise ValueError("must be an http(s) URL: https://host (http:// for a local simulator)")
    return v.rstrip("/")
