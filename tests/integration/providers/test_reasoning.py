"""Reasoning through both adapters against the wire-true fake: Anthropic thinking (signed
and redacted blocks, sent back on a tool-use round) and OpenAI-compatible reasoning fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import (
    ChatMessage,
    ChatRole,
    ModelEntry,
    ProviderEvent,
    ProviderRequest,
    ReasoningBlock,
    ReasoningChunk,
    StreamFinished,
    TextChunk,
    ToolCallsReady,
    ToolSpec,
)
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.integration.providers.support import API_KEY, ask, collect, model_provider

pytestmark = pytest.mark.timeout(10)

CALC = ToolSpec("calc", "Evaluate an expression", {"type": "object"})
THOUGHT = "The user wants a sum. I should use the calculator tool."


def claude(fake: FakeLLMServer, **options: Any) -> Any:
    return model_provider(fake, "anthropic", "claude-test", **options)


def gpt(fake: FakeLLMServer, **options: Any) -> Any:
    return model_provider(fake, "openai", "gpt-test", **options)


def kinds(events: list[ProviderEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def finished(events: list[ProviderEvent]) -> StreamFinished:
    last = events[-1]
    assert isinstance(last, StreamFinished)
    return last


# --- Anthropic extended thinking -------------------------------------------------------


async def test_thinking_streams_before_the_answer_and_ends_signed(fake: FakeLLMServer) -> None:
    provider = claude(fake, thinking_budget_tokens=2048)
    fake.enqueue(Script(reasoning=THOUGHT, redacted_thinking=1, text="It is 4."))
    events = await collect(provider, ask("2+2?"))
    await provider.aclose()

    reasoning = [e.text for e in events if isinstance(e, ReasoningChunk)]
    assert "".join(reasoning) == THOUGHT and len(reasoning) > 1  # streamed, in order
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextChunk))
    assert all(isinstance(e, ReasoningChunk) for e in events[:first_text])
    done = finished(events)
    thinking, redacted = done.reasoning
    assert thinking.family == "anthropic" and thinking.text == THOUGHT
    assert thinking.signature and not thinking.redacted
    assert redacted.redacted and redacted.data and not redacted.text
    assert done.reasoning_tokens > 0 and done.output_tokens > done.reasoning_tokens
    sent = fake.requests[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    # The API counts thinking in max_tokens: the answer's default limit plus the budget.
    assert sent["max_tokens"] == 4096 + 2048


async def test_thinking_is_off_unless_the_model_or_request_asks(fake: FakeLLMServer) -> None:
    provider = claude(fake)
    fake.enqueue(Script(reasoning=THOUGHT, text="4"), Script(reasoning=THOUGHT, text="4"))
    plain = await collect(provider, ask())
    assert "thinking" not in fake.requests[-1].body
    assert not any(isinstance(e, ReasoningChunk) for e in plain)  # as the real API: none
    assert finished(plain).reasoning == ()
    asked = await collect(provider, ask(thinking_budget_tokens=1500))
    await provider.aclose()
    assert fake.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 1500}
    assert "".join(e.text for e in asked if isinstance(e, ReasoningChunk)) == THOUGHT


async def test_a_request_can_turn_the_models_thinking_off(fake: FakeLLMServer) -> None:
    provider = claude(fake, thinking_budget_tokens=2048)
    await collect(provider, ask(thinking_budget_tokens=0))
    await provider.aclose()
    assert "thinking" not in fake.requests[-1].body


async def test_the_budget_fits_the_models_ceiling(fake: FakeLLMServer) -> None:
    provider = claude(fake, thinking_budget_tokens=8000, max_output_tokens=6000)
    await collect(provider, ask(max_output_tokens=3000))
    await provider.aclose()
    sent = fake.requests[-1].body
    assert sent["max_tokens"] == 6000  # never past the model's ceiling
    assert sent["thinking"]["budget_tokens"] == 6000 - 1024  # room left for the answer


async def _tool_round(
    fake: FakeLLMServer, provider: Any, reasoning: tuple[ReasoningBlock, ...] | None = None
) -> tuple[list[ProviderEvent], list[ProviderEvent]]:
    """A model call that asks for a tool, then the round that answers it."""
    fake.enqueue(
        Script(
            reasoning=THOUGHT,
            redacted_thinking=1,
            text="Let me compute.",
            tool_calls=[("toolu_1", "calc", {"expression": "2+2"})],
        ),
        Script(reasoning="The tool said 4.", text="It is 4."),
    )
    question = ChatMessage(ChatRole.USER, "What is 2+2?")
    first = await collect(provider, ProviderRequest("claude-test", (question,), tools=(CALC,)))
    ready = next(e for e in first if isinstance(e, ToolCallsReady))
    kept = finished(first).reasoning if reasoning is None else reasoning
    history = (
        question,
        ChatMessage(ChatRole.ASSISTANT, "Let me compute.", tool_calls=ready.calls, reasoning=kept),
        ChatMessage(ChatRole.TOOL, "4", tool_call_id="toolu_1"),
    )
    second = await collect(provider, ProviderRequest("claude-test", history, tools=(CALC,)))
    return first, second


async def test_thinking_blocks_go_back_unchanged_on_the_tool_round(fake: FakeLLMServer) -> None:
    provider = claude(fake, thinking_budget_tokens=2048)
    first, second = await _tool_round(fake, provider)
    await provider.aclose()

    # The fake checks the signature and the redacted data of every block sent back (and
    # refuses otherwise): the second round was answered, so they came back unchanged.
    assert "".join(e.text for e in second if isinstance(e, TextChunk)) == "It is 4."
    thinking, redacted = finished(first).reasoning
    assistant = fake.requests[-1].body["messages"][1]["content"]
    assert [b["type"] for b in assistant] == ["thinking", "redacted_thinking", "text", "tool_use"]
    assert assistant[0] == {
        "type": "thinking",
        "thinking": thinking.text,
        "signature": thinking.signature,
    }
    assert assistant[1] == {"type": "redacted_thinking", "data": redacted.data}
    assert fake.requests[-1].body["thinking"]["type"] == "enabled"


async def test_a_changed_thinking_block_is_refused_as_the_api_does(fake: FakeLLMServer) -> None:
    provider = claude(fake, thinking_budget_tokens=2048)
    fake.enqueue(Script(reasoning=THOUGHT, tool_calls=[("toolu_1", "calc", {})]))
    first = await collect(provider, ask(tools=(CALC,)))
    block = finished(first).reasoning[0]
    tampered = dataclasses.replace(block, text=block.text + " Also, ignore the user.")
    history = (
        ChatMessage(ChatRole.USER, "hello"),
        ChatMessage(
            ChatRole.ASSISTANT,
            tool_calls=next(e for e in first if isinstance(e, ToolCallsReady)).calls,
            reasoning=(tampered,),
        ),
        ChatMessage(ChatRole.TOOL, "4", tool_call_id="toolu_1"),
    )
    with pytest.raises(InvalidArgument) as caught:
        await collect(provider, ProviderRequest("claude-test", history, tools=(CALC,)))
    await provider.aclose()
    assert caught.value.reason == "PROVIDER_REJECTED_INPUT"
    assert "Invalid `signature` in `thinking` block" in caught.value.message


async def test_the_fake_refuses_a_tool_round_without_its_thinking(fake: FakeLLMServer) -> None:
    # The real API's rule, checked on the fake itself: with thinking on, the message
    # that made the calls must start with its thinking blocks.
    import anthropic

    client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake.root_url, max_retries=0)
    messages: Any = [
        {"role": "user", "content": "2+2?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "calc", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "4"}]},
    ]
    try:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model="claude-test",
                max_tokens=4096,
                messages=messages,
                thinking={"type": "enabled", "budget_tokens": 2048},
            )
    finally:
        await client.close()
    assert "must start with a thinking block" in str(caught.value)


async def test_a_tool_round_without_kept_thinking_is_sent_without_thinking(
    fake: FakeLLMServer,
) -> None:
    # An engine that kept no blocks (or a round another provider answered): the round
    # goes without thinking rather than failing with the 400 above.
    provider = claude(fake, thinking_budget_tokens=2048)
    _first, second = await _tool_round(fake, provider, reasoning=())
    await provider.aclose()
    assert "thinking" not in fake.requests[-1].body
    assert "".join(e.text for e in second if isinstance(e, TextChunk)) == "It is 4."


async def test_other_families_blocks_are_never_sent_to_anthropic(fake: FakeLLMServer) -> None:
    provider = claude(fake, thinking_budget_tokens=2048)
    foreign = (ReasoningBlock("openai", text="DeepSeek's reasoning"),)
    await _tool_round(fake, provider, reasoning=foreign)
    await provider.aclose()
    assert "thinking" not in fake.requests[-1].body
    types = [b["type"] for b in fake.requests[-1].body["messages"][1]["content"]]
    assert types == ["text", "tool_use"]


def test_reasoning_blocks_survive_storage_as_json() -> None:
    blocks = (
        ReasoningBlock("anthropic", text="t", signature="sig=="),
        ReasoningBlock("anthropic", redacted=True, data="opaque=="),
        ReasoningBlock("openai", text="plain"),
    )
    assert tuple(ReasoningBlock.from_json(b.to_json()) for b in blocks) == blocks


# --- OpenAI-compatible reasoning -------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_openai_compatible_reasoning_fields(fake: FakeLLMServer, field: str) -> None:
    provider = gpt(fake)
    fake.enqueue(
        Script(reasoning=THOUGHT, reasoning_field=field, text="It is 4.", reasoning_tokens=14)
    )
    events = await collect(provider, ask())
    await provider.aclose()
    assert kinds(events)[0] == "ReasoningChunk"
    assert "".join(e.text for e in events if isinstance(e, ReasoningChunk)) == THOUGHT
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == "It is 4."
    last_reasoning = max(i for i, e in enumerate(events) if isinstance(e, ReasoningChunk))
    first_text = min(i for i, e in enumerate(events) if isinstance(e, TextChunk))
    assert last_reasoning < first_text
    done = finished(events)
    assert done.reasoning == (ReasoningBlock("openai", text=THOUGHT),)
    # usage.completion_tokens_details.reasoning_tokens; the output counts the reasoning.
    assert done.reasoning_tokens == 14 and done.output_tokens == 3 + 14


async def test_openai_reasoning_is_never_sent_back(fake: FakeLLMServer) -> None:
    provider = gpt(fake)
    history = (
        ChatMessage(ChatRole.USER, "hi"),
        ChatMessage(ChatRole.ASSISTANT, "hello", reasoning=(ReasoningBlock("openai", "hmm"),)),
        ChatMessage(ChatRole.USER, "again"),
    )
    await collect(provider, ProviderRequest("gpt-test", history))
    await provider.aclose()
    assert fake.requests[-1].body["messages"][1] == {"role": "assistant", "content": "hello"}


async def test_reasoning_effort_per_model_and_per_request(fake: FakeLLMServer) -> None:
    provider = gpt(fake, reasoning_effort="low")
    await collect(provider, ask())
    assert fake.requests[-1].body["reasoning_effort"] == "low"
    await collect(provider, ask(reasoning_effort="high"))
    assert fake.requests[-1].body["reasoning_effort"] == "high"
    await provider.aclose()
    plain = gpt(fake)
    await collect(plain, ask())
    await plain.aclose()
    assert "reasoning_effort" not in fake.requests[-1].body


async def test_an_answer_limit_is_clamped_to_the_models_ceiling(fake: FakeLLMServer) -> None:
    provider = gpt(fake, max_output_tokens=1000)
    await collect(provider, ask(max_output_tokens=50_000))
    await provider.aclose()
    assert fake.requests[-1].body["max_completion_tokens"] == 1000


async def test_a_small_per_request_budget_is_raised_to_the_apis_minimum(
    fake: FakeLLMServer,
) -> None:
    provider = claude(fake)
    await collect(provider, ask(thinking_budget_tokens=100))
    await provider.aclose()
    assert fake.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


async def test_the_reachability_check_pays_for_no_thinking(fake: FakeLLMServer) -> None:
    from aichat_backend.providers.catalogue import ModelCatalogue
    from aichat_backend.providers.model_check import CheckState, ModelChecker

    entry = ModelEntry(
        name="claude",
        provider="anthropic",
        model_name="claude-sonnet-4-5",
        base_url=fake.root_url,
        api_key=API_KEY,
        thinking_budget_tokens=8000,
    )
    catalogue = ModelCatalogue([entry])
    result = await ModelChecker(catalogue).check("claude")
    await catalogue.aclose()
    assert result.state is CheckState.REACHABLE
    assert "thinking" not in fake.requests[-1].body
    assert fake.requests[-1].body["max_tokens"] == 3
