from __future__ import annotations

from pathlib import Path

import pytest

from aichat_backend.config import ConfigError, Settings, load_settings, normalize_database_url


def test_defaults_are_embedded_sqlite_on_loopback() -> None:
    s = load_settings(environ={})
    assert s.grpc_address == "127.0.0.1:50051"
    assert s.sqlalchemy_url().startswith("sqlite+pysqlite:///")
    assert s.sqlalchemy_url().endswith("/var/aichat.db")
    assert s.shutdown_grace_seconds == 10
    assert s.max_message_bytes == 16 * 1024 * 1024
    assert s.auth_header == "x-user-id"


def test_empty_api_key_counts_as_none() -> None:
    assert load_settings(environ={"AICHAT_API_KEY": "  "}).api_key is None
    assert load_settings(environ={"AICHAT_API_KEY": "sk-1"}).api_key == "sk-1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://u:p@h:5432/db?sslmode=disable",
            "postgresql+asyncpg://u:p@h:5432/db?ssl=disable",
        ),
        ("postgres://h/db", "postgresql+asyncpg://h/db"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db"),
        ("sqlite:////abs/path.db", "sqlite+pysqlite:////abs/path.db"),
        ("sqlite+aiosqlite:///rel.db", "sqlite+pysqlite:///rel.db"),
        ("sqlite+pysqlite:///rel.db", "sqlite+pysqlite:///rel.db"),
    ],
)
def test_database_urls_from_the_seeds(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_db_parts_variables() -> None:
    s = load_settings(
        environ={
            "AICHAT_DB_HOST": "127.0.0.1",
            "AICHAT_DB_PORT": "6543",
            "AICHAT_DB_NAME": "ai_chat",
            "AICHAT_DB_USERNAME": "ai_chat_user",
            "AICHAT_DB_PASSWORD": "p@ss/word",
            "AICHAT_DB_SSL_MODE": "disable",
        }
    )
    assert s.sqlalchemy_url() == (
        "postgresql+asyncpg://ai_chat_user:p%40ss%2Fword@127.0.0.1:6543/ai_chat?ssl=disable"
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AICHAT_DB_PORT": "abc"}, "AICHAT_DB_PORT"),
        ({"AICHAT_SHUTDOWN_GRACE_SECONDS": "-1"}, "AICHAT_SHUTDOWN_GRACE_SECONDS"),
        ({"AICHAT_LOG_FORMAT": "xml"}, "AICHAT_LOG_FORMAT"),
        ({"AICHAT_DATABASE_URL": "mysql://h/db"}, "mysql"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert variable in str(err.value)


def test_yaml_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "aichat.yaml"
    cfg.write_text("llm_model: from-yaml\nmemory_default: 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AICHAT_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("AICHAT_MEMORY_DEFAULT", "9")
    s = load_settings()
    assert s.llm_model == "from-yaml"
    assert s.memory_default == 9  # the environment wins over the file
    # --env-only ignores the file entirely.
    assert load_settings(env_only=True).llm_model == "gpt-4o-mini"


def test_the_default_replica_id_is_unique_per_process_and_bounds_crash_recovery() -> None:
    """Issue 23 items 5 and 6: two processes on one host never share a replica id unless
    told to, and a crashed turn ends within a lease and a sweep, 15 s at most by default."""
    import os
    import socket

    first, second = Settings.model_validate({}), Settings.model_validate({})
    assert first.replica_id != second.replica_id
    assert first.replica_id.startswith(f"{socket.gethostname()}-{os.getpid()}-")
    assert first.turn_lease_seconds + first.turn_sweep_seconds <= 15
    assert Settings.model_validate({"replica_id": "pod-1"}).replica_id == "pod-1"
