"""Fixtures: a fake LLM upstream on a free port and both real SDK adapters pointed at it.

Nothing is patched: the SDKs speak HTTP to ``FakeLLMServer``, which answers in each
API's real wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aichat_backend.providers.anthropic_adapter import AnthropicProvider
from aichat_backend.providers.openai_adapter import OpenAIProvider
from aichat_devtools.fake_llm import FakeLLMServer
from tests.integration.providers.support import Upstream, anthropic_provider, openai_provider


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


async def _upstream(
    family: str, fake: FakeLLMServer, http: str = "aiohttp"
) -> AsyncIterator[Upstream]:
    provider: OpenAIProvider | AnthropicProvider
    if family == "openai":
        provider = openai_provider(fake.base_url, http=http)
    else:
        provider = anthropic_provider(fake.root_url, http=http)
    yield Upstream(family, provider, fake)
    await provider.aclose()


@pytest.fixture(
    params=[
        ("openai", "aiohttp"),
        ("anthropic", "aiohttp"),
        # The SDKs' default HTTP client, which AICHAT_LLM_HTTP_CLIENT=httpx selects.
        ("openai", "httpx"),
        ("anthropic", "httpx"),
    ],
    ids=lambda p: "-".join(p),
)
async def upstream(request: pytest.FixtureRequest, fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    """Each adapter over each HTTP client in turn: tests that hold for all of them."""
    family, http = request.param
    async for up in _upstream(family, fake, http):
        yield up


@pytest.fixture
async def openai_upstream(fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    async for up in _upstream("openai", fake):
        yield up


@pytest.fixture
async def anthropic_upstream(fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    async for up in _upstream("anthropic", fake):
        yield up
