"""Fixtures: a fake LLM upstream on a free port and both real SDK adapters pointed at it.

Nothing is patched: the SDKs speak HTTP to ``FakeLLMServer``, which answers in each
API's real wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from aichat_devtools.fake_llm import FakeLLMServer
from tests.integration.providers.support import (
    PATIENT_TIMEOUT,
    SDK_TIMEOUT,
    Upstream,
    anthropic_provider,
    openai_provider,
)

if TYPE_CHECKING:  # the SDK only where a test uses it (support.py says why)
    from aichat_backend.providers.anthropic_adapter import AnthropicProvider
    from aichat_backend.providers.openai_adapter import OpenAIProvider


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


async def _upstream(
    family: str, fake: FakeLLMServer, http: str = "aiohttp", timeout: float = PATIENT_TIMEOUT
) -> AsyncIterator[Upstream]:
    provider: OpenAIProvider | AnthropicProvider
    if family == "openai":
        provider = openai_provider(fake.base_url, timeout, http=http)
    else:
        provider = anthropic_provider(fake.root_url, timeout, http=http)
    yield Upstream(family, provider, fake)
    await provider.aclose()


EVERY_ADAPTER = [
    ("openai", "aiohttp"),
    ("anthropic", "aiohttp"),
    # The SDKs' default HTTP client, which AICHAT_LLM_HTTP_CLIENT=httpx selects.
    ("openai", "httpx"),
    ("anthropic", "httpx"),
]


@pytest.fixture(params=EVERY_ADAPTER, ids=lambda p: "-".join(p))
async def upstream(request: pytest.FixtureRequest, fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    """Each adapter over each HTTP client in turn: tests that hold for all of them.

    Patient: a first request over a fresh httpx client missed a 0.5 s timeout in a CI run
    beside the whole suite, so only the tests of timeouts use the short one."""
    family, http = request.param
    async for up in _upstream(family, fake, http):
        yield up


@pytest.fixture(params=EVERY_ADAPTER, ids=lambda p: "-".join(p))
async def hasty_upstream(
    request: pytest.FixtureRequest, fake: FakeLLMServer
) -> AsyncIterator[Upstream]:
    """As ``upstream``, with the short SDK_TIMEOUT: for the tests of timeouts."""
    family, http = request.param
    async for up in _upstream(family, fake, http, SDK_TIMEOUT):
        yield up


@pytest.fixture
async def openai_upstream(fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    async for up in _upstream("openai", fake):
        yield up


@pytest.fixture
async def anthropic_upstream(fake: FakeLLMServer) -> AsyncIterator[Upstream]:
    async for up in _upstream("anthropic", fake):
        yield up
