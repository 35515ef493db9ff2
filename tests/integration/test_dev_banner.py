"""`make run`'s banner says what the backend actually runs on, read from the backend itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aichat_devtools import dev_banner
from aichat_devtools.dev_run import DevSettings
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(30)

MODELS = """
llms:
  - name: "Local Ollama"
    provider: "ollama"
    base_url: "http://localhost:11434/v1"
    api_key: "not-required"
    model_name: "llama2"
  - name: "Claude"
    provider: "anthropic"
    api_key: "${NO_SUCH_VARIABLE_HERE}"
    model_name: "claude-3-5-sonnet-20241022"
"""


async def banner(env: dict[str, str], *, envoy: bool) -> str:
    # The banner's client is synchronous (as in `make run`); the server is on this loop.
    return await asyncio.to_thread(
        dev_banner.render, DevSettings.from_env(env), env, fake=False, envoy=envoy
    )


async def test_a_models_file_is_named_with_its_models(tmp_path: Path) -> None:
    models = tmp_path / "llms.yml"
    models.write_text(MODELS)
    db = tmp_path / "chat.db"
    settings = make_settings(f"sqlite:///{db}", models_file=models)
    async with running_server(settings) as server:
        env = {
            "AICHAT_GRPC_ADDRESS": server.target,
            "AICHAT_MODELS_FILE": str(models),
            "AICHAT_DATABASE_URL": f"sqlite:///{db}",
        }
        text = await banner(env, envoy=False)
    assert "embedded defaults" not in text
    assert f"SQLite at {db}" in text
    listed = "Local Ollama (default), Claude (not configured)"
    assert f"{listed} from AICHAT_MODELS_FILE={models}" in text
    assert f"-plaintext {server.target} list" in text


async def test_the_environments_single_model_and_postgres_are_named(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'chat.db'}", llm_model="gpt-test")
    async with running_server(settings) as server:
        env = {
            "AICHAT_GRPC_ADDRESS": server.target,
            "AICHAT_LLM_MODEL": "gpt-test",
            "AICHAT_LLM_BASE_URL": "http://127.0.0.1:9/v1",
            "AICHAT_DATABASE_URL": "postgresql://u:secret@db.example:5433/chat?sslmode=disable",
        }
        text = await banner(env, envoy=True)
    assert "PostgreSQL at db.example:5433/chat" in text and "secret" not in text
    assert "gpt-test" in text and "AICHAT_LLM_" in text
    assert "REST      http://127.0.0.1:8080" in text
    assert "base_url=http://127.0.0.1:8080/v1" in text  # the OpenAI-compatible API
