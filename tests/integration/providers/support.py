"""Helpers shared by the provider tests (fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic
import openai

from aichat_backend.devtools.fake_llm import FakeLLMServer
from aichat_backend.providers.anthropic_adapter import AnthropicProvider
from aichat_backend.providers.base import (
    ChatMessage,
    ChatProvider,
    ChatRole,
    ProviderEvent,
    ProviderRequest,
    TextChunk,
)
from aichat_backend.providers.catalogue import sdk_http_client
from aichat_backend.providers.openai_adapter import OpenAIProvider

# Short enough that the timeout tests finish quickly, long enough for a loaded CI box.
SDK_TIMEOUT = 0.5
API_KEY = "sk-test-secret-0123456789"


def openai_provider(
    base_url: str, timeout: float = SDK_TIMEOUT, http: str = "aiohttp"
) -> OpenAIProvider:
    client = openai.AsyncOpenAI(
        api_key=API_KEY,
        base_url=base_url,
        max_retries=0,
        timeout=timeout,
        http_client=sdk_http_client("openai", http),
    )
    return OpenAIProvider(client)


def anthropic_provider(
    root_url: str, timeout: float = SDK_TIMEOUT, http: str = "aiohttp"
) -> AnthropicProvider:
    client = anthropic.AsyncAnthropic(
        api_key=API_KEY,
        base_url=root_url,
        max_retries=0,
        timeout=timeout,
        http_client=sdk_http_client("anthropic", http),
    )
    return AnthropicProvider(client)


@dataclass
class Upstream:
    """One adapter and the fake it talks to; ``family`` names the wire format."""

    family: str
    provider: OpenAIProvider | AnthropicProvider
    server: FakeLLMServer

    @property
    def last_body(self) -> dict[str, Any]:
        body = self.server.requests[-1].body
        assert isinstance(body, dict)
        return body


def ask(text: str = "hello", **fields: Any) -> ProviderRequest:
    return ProviderRequest(
        model=fields.pop("model", "test-model"),
        messages=(ChatMessage(ChatRole.USER, text),),
        **fields,
    )


async def collect(provider: ChatProvider, request: ProviderRequest) -> list[ProviderEvent]:
    async with provider.stream(request) as events:
        return [event async for event in events]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextChunk))
