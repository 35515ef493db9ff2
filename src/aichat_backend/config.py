"""The one settings object: every knob of the service, read once at start-up.

Sources, strongest first: process environment (``AICHAT_*``), a ``.env`` file, a YAML
file named by ``AICHAT_CONFIG_FILE``, then the defaults below. ``serve --env-only``
(seed 001's flag) reads the environment alone. Nothing else in the package reads
``os.environ``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "AICHAT_"
MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

    # --- server ---------------------------------------------------------------------
    # Loopback by default: whoever reaches this port directly is trusted to name the user.
    grpc_address: str = "127.0.0.1:50051"
    auth_header: str = "x-user-id"
    max_user_id_length: int = Field(256, ge=1, le=256)  # the user_id columns hold 256
    max_message_bytes: int = Field(16 * MIB, ge=1024)
    # A ListMessages page (and each read of an export) stops early past this many bytes.
    list_page_max_bytes: int = Field(4 * MIB, ge=1024)
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    # Clients may ping this often on idle streams without being cut off.
    keepalive_min_ping_interval_seconds: float = Field(10.0, gt=0)
    keepalive_time_seconds: float = Field(30.0, gt=0)
    keepalive_timeout_seconds: float = Field(10.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    # host:port for Prometheus /metrics; unset = off. Keep it private like the gRPC port.
    metrics_address: str | None = None
    data_dir: Path = Path("./var")
    # Names this process's running turns, so a restart marks its own unfinished ones.
    replica_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    config_file: Path | None = None

    # --- database ---------------------------------------------------------------------
    database_url: str | None = None
    db_host: str | None = None
    db_port: int = Field(5432, ge=1, le=65535)
    db_name: str | None = None
    db_username: str | None = None
    db_password: str | None = None
    db_ssl_mode: str | None = None
    db_pool_size: int = Field(10, ge=1)
    # Together these bound how long a request waits on a frozen or unreachable database.
    db_connect_timeout_seconds: float = Field(2.0, gt=0)
    db_statement_timeout_seconds: float = Field(3.0, gt=0)
    db_request_timeout_seconds: float = Field(4.5, gt=0)
    idempotency_ttl_hours: float = Field(24.0, ge=24.0)

    # --- chat -------------------------------------------------------------------------
    llm_provider: str = "openai"
    llm_model: str = "gpt-4o-mini"
    api_key: str | None = None
    llm_base_url: str | None = None
    llm_temperature: float | None = Field(None, ge=0, le=2)
    provider_timeout_seconds: float = Field(30.0, gt=0)
    # The HTTP client under the provider SDKs: aiohttp (their `aiohttp` extra, C-parsed,
    # ~40% less CPU per streamed chunk here) or httpx (their default).
    llm_http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    provider_max_retries: int = Field(2, ge=0, le=10)
    models_file: Path | None = None
    # The env-configured model's limits and reasoning (a models file says them per model);
    # unset limits come from the table of known models (providers/model_limits.py).
    llm_context_window: int | None = Field(None, gt=0)
    llm_max_output_tokens: int | None = Field(None, gt=0)
    llm_reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    llm_thinking_budget_tokens: int = Field(0, ge=0)  # Anthropic extended thinking; 0: off
    # Cache points on the system prompt and the conversation so far, for Anthropic models
    # whose catalogue entry does not say `prompt_caching`.
    anthropic_prompt_caching: bool = True
    default_system_prompt: str = ""
    memory_default: int = Field(20, ge=1)
    memory_max: int = Field(100, ge=1)
    max_attachment_bytes: int = Field(10 * MIB, ge=1)
    max_attachments_per_message: int = Field(10, ge=0)
    heartbeat_seconds: float = Field(5.0, gt=0, le=60)
    # The web page's title (seed 003's APP_NAME and its default); see web_config.py.
    app_name: str = Field("Galaxy Chat", min_length=1, max_length=100)
    # PDF text extraction (worker processes; a PDF over any bound is refused, not cut).
    pdf_max_pages: int = Field(100, ge=1)
    pdf_max_chars: int = Field(200_000, ge=1)  # extracted text per PDF
    pdf_cpu_seconds: float = Field(5.0, gt=0)
    pdf_timeout_seconds: float = Field(10.0, gt=0)  # wall clock, waiting for a reader too
    pdf_max_memory_mib: int = Field(1024, ge=128)
    pdf_workers: int = Field(1, ge=1, le=16)

    # --- limits -----------------------------------------------------------------------
    rate_rps: float = Field(5.0, ge=0)  # per user; 0 turns the rate limit off
    rate_burst: int = Field(20, ge=1)
    max_concurrent_turns_per_user: int = Field(2, ge=0)  # 0 = unlimited
    daily_token_budget: int = Field(0, ge=0)  # input + output tokens per user per UTC day
    # What a user's model calls may cost per UTC day, in the models file's currency, exact
    # (e.g. "2.50"); 0 = unlimited. Calls of models without prices cost nothing here.
    daily_cost_budget: Decimal = Field(Decimal(0), ge=0, max_digits=18, decimal_places=9)
    # Identities exempt from every limit (internal services), comma separated.
    limits_exempt_users: str = ""
    redis_url: str | None = None  # shares the limits between replicas

    # --- operator API -------------------------------------------------------------------
    # Callers whose verified token carries this role (Envoy forwards the claim in
    # admin_role_header, after removing any client-sent one), or listed here.
    admin_users: str = ""
    admin_role_header: str = "x-aichat-role"
    admin_role: str = "admin"
    # The API key a caller used, when the edge names one (for the rate-limit bypass list).
    api_key_header: str = "x-api-key-id"
    # Each replica re-reads the bypass list this often: how soon a change made on another
    # replica applies here.
    bypass_refresh_seconds: float = Field(2.0, gt=0, le=300)
    # A tiny request to each model at start-up (off for deployments that pay per call).
    model_check: bool = True
    model_check_timeout_seconds: float = Field(10.0, gt=0, le=120)

    # --- tools ------------------------------------------------------------------------
    mcp_servers_file: Path | None = None
    tool_timeout_seconds: float = Field(30.0, gt=0)
    max_tool_rounds: int = Field(8, ge=1, le=100)
    approval_ttl_seconds: float = Field(24 * 3600.0, gt=0)
    turn_lease_seconds: float = Field(60.0, ge=3)

    # --- resumable turns (turns/) ---------------------------------------------------------
    # Whether a turn whose caller hangs up runs on (resumable) when the request does not say.
    turn_detached_default: bool = False
    turn_detached_max_seconds: float = Field(600.0, gt=0)  # a detached turn's own deadline
    # Events are stored this long after they are made (at most; a crash loses no more).
    turn_events_flush_seconds: float = Field(0.1, gt=0, le=5)
    turn_events_retention_seconds: float = Field(3600.0, gt=0)  # after the turn ended
    turn_events_max_bytes: int = Field(8 * MIB, ge=64 * 1024)  # stored per turn

    @field_validator(
        "api_key",
        "database_url",
        "llm_base_url",
        "llm_reasoning_effort",
        "metrics_address",
        "redis_url",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # An empty AICHAT_API_KEY counts as none (seed 002's "unconfigured" provider).
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        yaml_file = os.environ.get(ENV_PREFIX + "CONFIG_FILE")
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    # --- derived ----------------------------------------------------------------------

    def exempt_users(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.limits_exempt_users.split(",") if u.strip())

    def admin_user_ids(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.admin_users.split(",") if u.strip())

    def sqlalchemy_url(self) -> str:
        """The SQLAlchemy URL, from AICHAT_DATABASE_URL, AICHAT_DB_* or the default."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        if self.db_host:
            user = quote(self.db_username or "", safe="")
            password = quote(self.db_password or "", safe="")
            auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
            query = f"?ssl={self.db_ssl_mode}" if self.db_ssl_mode else ""
            return (
                f"postgresql+asyncpg://{auth}{self.db_host}:{self.db_port}/"
                f"{self.db_name or 'ai_chat'}{query}"
            )
        return f"sqlite+pysqlite:///{(self.data_dir / 'aichat.db').resolve()}"


def normalize_database_url(url: str) -> str:
    """Accept the seeds' plain ``postgresql://…?sslmode=…`` URLs as well as async ones."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        scheme = "postgresql+asyncpg"
    elif scheme in ("sqlite", "sqlite+aiosqlite"):
        # SQLite runs inline on the event loop (store/database.py), not through aiosqlite;
        # the aiosqlite spelling of earlier configurations still names the same file.
        scheme = "sqlite+pysqlite"
    if scheme not in ("postgresql+asyncpg", "sqlite+pysqlite"):
        raise ValueError(
            f"unsupported database URL scheme {parts.scheme!r}: "
            "use postgresql://, postgresql+asyncpg:// or sqlite://"
        )
    if scheme == "sqlite+pysqlite":
        # urlunsplit would fold "sqlite:////abs/path" into a host name: swap the scheme only.
        return scheme + url[len(parts.scheme) :]
    query = parse_qsl(parts.query, keep_blank_values=True)
    if scheme == "postgresql+asyncpg":
        # libpq spells it sslmode; asyncpg takes the same values as `ssl`.
        query = [("ssl", v) if k == "sslmode" else (k, v) for k, v in query]
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def process_environment() -> dict[str, str]:
    """The environment, for ``${VAR}`` substitution in the model catalogue file."""
    return dict(os.environ)


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """An environment for a child of ours: this one without its ``AICHAT_*`` values, plus
    ``settings`` (names without the prefix). The child sees those settings and no others."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update((ENV_PREFIX + name.upper(), value) for name, value in settings.items())
    return env


class ConfigError(Exception):
    """A setting has a bad value; the message names the variable."""


def load_settings(*, env_only: bool = False, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings once, turning validation errors into one readable message."""
    env = os.environ if environ is None else environ
    try:
        settings: Settings
        if env_only or environ is not None:
            # An explicit mapping (or --env-only): nothing but these values counts.
            values = {
                k[len(ENV_PREFIX) :].lower(): v
                for k, v in env.items()
                if k.startswith(ENV_PREFIX) and not (env_only and k == ENV_PREFIX + "CONFIG_FILE")
            }
            settings = _EnvOnlySettings.model_validate(values)
        else:
            settings = Settings()
        settings.sqlalchemy_url()  # validate the database URL now, not at first use
        return settings
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


class _EnvOnlySettings(Settings):
    """Settings validated from an explicit mapping only: no .env, no YAML."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
