"""The one settings object: every knob of the service, read once at start-up.

Sources, strongest first: process environment (``AICHAT_*``), a ``.env`` file, a YAML
file named by ``AICHAT_CONFIG_FILE``, then the defaults below. ``serve --env-only``
(seed 001's flag) reads the environment alone. Nothing else in the package reads
``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from aichat_backend.config_chat import ChatFields
from aichat_backend.config_policy import PolicyFields
from aichat_backend.config_server import MIB, ServerFields

ENV_PREFIX = "AICHAT_"
__all__ = ["MIB", "ConfigError", "Settings", "load_settings"]


class Settings(ServerFields, ChatFields, PolicyFields):
    """Every field is declared in config_server, config_chat and config_policy."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

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
