"""Helpers shared by the provider tests (fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aichat_backend.providers.base import (
    ChatMessage,
    ChatProvider,
    ChatRole,
    ModelEntry,
    ProviderEvent,
    ProviderRequest,
    TextChunk,
)
from aichat_backend.providers.catalogue import HttpClientKind, build_provider
from aichat_backend.providers.openai_adapter import OpenAIProvider
from aichat_devtools.fake_llm import FakeLLMServer

if TYPE_CHECKING:
    # The anthropic SDK costs every process that imports it ~1 s of CPU (3,300 modules);
    # the service imports it only for an Anthropic model, and so do these tests: a worker
    # that runs no Anthropic test collects without it.
    from aichat_backend.providers.anthropic_adapter import AnthropicProvider

# Short enough that the timeout tests finish quickly, long enough for a loaded CI box.
SDK_TIMEOUT = 0.5
# For the tests of anything but timeouts: a 20 KB request echoed back once missed 0.5 s
# in a CI run beside the whole suite.
PATIENT_TIMEOUT = 10.0
API_KEY = "sk-test-secret-0123456789"
# How long a test waits for the fake to see a request arrive or a client hang up: far
# below the scripted waits (5-30 s) a hang-up must cut short, and far above the 1 s in
# which a first request to a fresh fake once failed to arrive beside the whole suite.
HANG_UP_WITHIN = 3.0


def openai_provider(
    base_url: str, timeout: float = SDK_TIMEOUT, http: HttpClientKind = "aiohttp"
) -> OpenAIProvider:
    provider = _built("openai", base_url, timeout, http)
    assert isinstance(provider, OpenAIProvider)
    return provider


def anthropic_provider(
    root_url: str, timeout: float = SDK_TIMEOUT, http: HttpClientKind = "aiohttp"
) -> AnthropicProvider:
    from aichat_backend.providers.anthropic_adapter import AnthropicProvider

    provider = _built("anthropic", root_url, timeout, http)
    assert isinstance(provider, AnthropicProvider)
    return provider


def _built(family: str, url: str, timeout: float, http: HttpClientKind) -> ChatProvider:
    """Through the service's own builder: the same SDK client, options and HTTP client."""
    entry = ModelEntry(
        name="test-model", provider=family, model_name="test-model", base_url=url, api_key=API_KEY
    )
    return build_provider(entry, timeout, http_client=http)


def model_provider(
    fake: FakeLLMServer, family: str, model_name: str = "test-model", **options: Any
) -> OpenAIProvider | AnthropicProvider:
    """A catalogue entry's provider against ``fake``, with ``ModelEntry`` options (its
    limits, reasoning and caching), built by the service's own builder."""
    url = fake.root_url if family == "anthropic" else fake.base_url
    entry = ModelEntry(
        name=model_name,
        provider=family,
        model_name=model_name,
        base_url=url,
        api_key=API_KEY,
        **options,
    )
    provider = build_provider(entry, PATIENT_TIMEOUT)  # none of its users tests timeouts
    if family == "anthropic":
        from aichat_backend.providers.anthropic_adapter import AnthropicProvider

        assert isinstance(provider, AnthropicProvider)
    else:
        assert isinstance(provider, OpenAIProvider)
    return provider


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
