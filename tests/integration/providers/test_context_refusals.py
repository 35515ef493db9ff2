"""A provider's context-length refusal, as each server words it, becomes ContextTooLong
(INVALID_ARGUMENT, CONTEXT_TOO_LONG) with the sizes it said; the fake enforces windows."""

from __future__ import annotations

from typing import Any

import pytest

from aichat_backend.api.errors import to_status
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import ChatMessage, ChatRole, ProviderRequest
from aichat_backend.providers.context_errors import ContextTooLong
from aichat_devtools.fake_llm import FakeLLMServer, Script
from aichat_devtools.fake_llm.tokens import count_text
from tests.integration.providers.support import collect, model_provider, text_of

pytestmark = pytest.mark.timeout(10)

WINDOW = 4096
LONG = "word " * 4000  # 20,000 bytes: 5,000 tokens by the fake's rule
SHORT = "hello"


def provider_for(fake: FakeLLMServer, family: str) -> Any:
    # As the catalogue would give a 4,096-token model: an answer ceiling that fits it
    # (Anthropic counts the default max_tokens against the window).
    return model_provider(fake, family, "small", max_output_tokens=1024)


def request(text: str, max_output_tokens: int | None = None) -> ProviderRequest:
    return ProviderRequest(
        "small", (ChatMessage(ChatRole.USER, text),), max_output_tokens=max_output_tokens
    )


async def refused(provider: Any, req: ProviderRequest) -> ContextTooLong:
    with pytest.raises(ContextTooLong) as caught:
        await collect(provider, req)
    await provider.aclose()
    return caught.value


# The fake's count of ``request(LONG)``: the text, its message's overhead (3), and on the
# OpenAI wire the reply priming (3).
LONG_INPUT = {"openai": count_text(LONG) + 6, "anthropic": count_text(LONG) + 3}


@pytest.mark.parametrize(
    ("family", "style", "sizes"),
    [
        ("openai", "openai", ("input_tokens", "context_window")),
        ("openai", "vllm", ("input_tokens", "context_window")),
        ("openai", "llama.cpp", ("input_tokens", "context_window")),
        ("openai", "ollama", ()),
        ("anthropic", "openai", ("input_tokens", "context_window")),
    ],
)
async def test_an_over_long_prompt_is_context_too_long(
    family: str, style: Any, sizes: tuple[str, ...]
) -> None:
    async with FakeLLMServer(context_windows={"small": WINDOW}, openai_context_style=style) as fake:
        error = await refused(provider_for(fake, family), request(LONG))
    assert isinstance(error, InvalidArgument)  # INVALID_ARGUMENT at the API edge
    assert error.reason == "CONTEXT_TOO_LONG"
    assert error.metadata["provider"] == family and error.metadata["upstream_status"] == "400"
    said = {k: int(error.metadata[k]) for k in sizes}
    assert said == {
        k: {"input_tokens": LONG_INPUT[family], "context_window": WINDOW}[k] for k in sizes
    }
    assert error.input_tokens == said.get("input_tokens")
    assert error.context_window == said.get("context_window")
    status = to_status(error)
    assert status.code == 3  # INVALID_ARGUMENT
    assert "context window" in status.message


@pytest.mark.parametrize(
    ("family", "style"), [("openai", "openai"), ("openai", "vllm"), ("anthropic", "openai")]
)
async def test_a_prompt_that_fits_but_not_with_its_answer(family: str, style: Any) -> None:
    text = "word " * 3000  # 3,750 tokens: fits 4,096, not with 1,000 more to write
    async with FakeLLMServer(context_windows={"small": WINDOW}, openai_context_style=style) as fake:
        error = await refused(provider_for(fake, family), request(text, max_output_tokens=1000))
    assert error.max_output_tokens == 1000 and error.context_window == WINDOW
    assert error.input_tokens == count_text(text) + (6 if family == "openai" else 3)
    assert error.metadata["max_output_tokens"] == "1000"


@pytest.mark.parametrize("family", ["openai", "anthropic"])
async def test_the_window_is_per_model_and_refusals_use_up_no_script(family: str) -> None:
    async with FakeLLMServer(context_windows={"small": WINDOW}) as fake:
        fake.enqueue(Script(text="kept for the request that fits"))
        provider = provider_for(fake, family)
        with pytest.raises(ContextTooLong):
            await collect(provider, request(LONG))
        assert fake.pending_scripts == 1  # refused before any script was played
        assert text_of(await collect(provider, request(SHORT))) == "kept for the request that fits"
        other = ProviderRequest("big", (ChatMessage(ChatRole.USER, LONG),))
        assert text_of(await collect(provider, other)).startswith("Echo: word")  # no window
        await provider.aclose()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # TGI's OpenAI-compatible 422.
        (
            {
                "error": {
                    "message": "Input validation error: `inputs` tokens + `max_new_tokens` "
                    "must be <= 4096. Given: 4000 `inputs` tokens and 1000 `max_new_tokens`"
                }
            },
            {"input_tokens": 4000, "max_output_tokens": 1000, "context_window": 4096},
        ),
        # A server that says so in words of its own, without sizes.
        ({"error": {"message": "Prompt exceeds the model's context window."}}, {}),
    ],
)
async def test_other_wordings(body: dict[str, Any], expected: dict[str, int]) -> None:
    from aichat_backend.providers.context_errors import context_too_long

    error = context_too_long(body["error"]["message"], body, "vllm", {})
    assert error is not None
    assert {
        k: v
        for k, v in (
            ("input_tokens", error.input_tokens),
            ("max_output_tokens", error.max_output_tokens),
            ("context_window", error.context_window),
        )
        if v is not None
    } == expected


@pytest.mark.parametrize(
    "message",
    ["messages.0.content: Input should be a valid list", "max_tokens must be at least 1"],
)
async def test_other_bad_requests_are_not_context_errors(message: str) -> None:
    from aichat_backend.providers.context_errors import context_too_long

    assert context_too_long(message, {"error": {"message": message}}, "openai", {}) is None
