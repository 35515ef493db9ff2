"""Fixtures: a fake LLM upstream on a free port and both real SDK adapters pointed at it.

Nothing is patched: the SDKs speak HTTP to ``FakeLLMServer``, which answers in each
API's real wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aichat_backend.devtools.fake_llm import FakeLLMServer
from aichat_backend.providers.anthropic_adapter import AnthropicProvider
from aichat_backend.providers.openai_adapter import OpenAIProvider
from tests.integration.providers.support import Upstream, anthropic_provider, openai_provider


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


async def _upstream(family: str, fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    provider: OpenAIProvider | AnthropicProvider
    if family == "openai":
        provider = openai_provider(fake.base_url)
    else:
        provider = anthropic_provider(fake.root_url)
    yield Upstream(family, provider, fake)
    await provider.aclose()


@pytest.fixture(params=["openai", "anthropic"])
async def upstream(request: pytest.FixtureRequest, fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    """Each adapter in turn: tests that hold for both API families."""
    async for up in _upstream(request.param, fake):
        yield up


@pytest.fixture
async def openai_upstream(fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    async for up in _upstream("openai", fake):
        yield up


@pytest.fixture
async def anthropic_upstream(fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    async for up in _upstream("anthropic", fake):
        yield up
