"""A models file of priced reasoning models on the wire-true fake, and a stack serving it.

``claude`` thinks (Anthropic extended thinking, 2048 tokens), ``gpt`` reasons the
OpenAI-compatible way (``reasoning_content``), both priced in EUR; ``free`` has no prices.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aichat_devtools.fake_llm import FakeLLMServer
from tests.support.chat import ChatStack
from tests.support.server import make_settings, running_server


def reasoning_models(fake: FakeLLMServer) -> str:
    return f"""
currency: EUR
default: claude
models:
  - name: claude
    provider: anthropic
    model_name: claude-test
    base_url: {fake.root_url}
    api_key: k
    max_output_tokens: 8192
    thinking: true
    thinking_budget_tokens: 2048
    prices: {{input: 3, cached_input: 0.30, cache_write: 3.75, output: 15}}
  - name: gpt
    provider: openai
    model_name: gpt-test
    base_url: {fake.base_url}
    api_key: k
    prices: {{input: "0.15", cached_input: "0.075", output: "0.60"}}
  - name: free
    provider: openai
    model_name: free-test
    base_url: {fake.base_url}
    api_key: k
"""


@asynccontextmanager
async def reasoning_stack(
    database_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[ChatStack]:
    """A real server on ``reasoning_models``; its fake caches prompts of 64 tokens or more."""
    async with FakeLLMServer(min_cache_tokens=64) as fake:
        path = tmp_path / "models.yml"
        path.write_text(reasoning_models(fake))
        settings = make_settings(database_url, models_file=path, **overrides)
        async with running_server(settings) as server:
            # Each model's SDK client is made now, not in a test's first turn, as a default
            # deployment's start-up model check makes them in the background (tests turn the
            # check off: they count what their upstreams see). The first import of the
            # anthropic SDK compiles its 3,300 modules in a fresh clone, about 10 s of CPU on
            # a loaded 2-core machine, which fell inside a page test's bound.
            catalogue = server.app.catalogue
            for entry in catalogue.entries():
                if catalogue.is_configured(entry.name):
                    catalogue.provider_for(entry.name)
            yield ChatStack(server=server, fake=fake, provider="catalogue")
