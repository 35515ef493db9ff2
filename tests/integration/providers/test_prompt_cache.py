"""Usage that says what was paid for: prompt caching measured over a multi-turn
conversation against the wire-true fake (which caches by prefix, as each API reports it)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from aichat_backend.providers.base import (
    ChatMessage,
    ChatRole,
    ProviderRequest,
    ReasoningBlock,
    StreamFinished,
    ToolCallRequest,
)
from aichat_backend.providers.openai_adapter import _finished
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.integration.providers.support import API_KEY, collect, model_provider

pytestmark = pytest.mark.timeout(20)

SYSTEM = "You answer questions about the solar system, briefly and precisely. " * 120  # ~2k
TURNS = 10


def provider_for(fake: FakeLLMServer, family: str, **options: Any) -> Any:
    return model_provider(fake, family, "m", **options)


async def conversation(fake: FakeLLMServer, provider: Any) -> list[StreamFinished]:
    """TURNS turns of a growing conversation: each sends everything said so far."""
    history: list[ChatMessage] = []
    usage: list[StreamFinished] = []
    for turn in range(TURNS):
        history.append(
            ChatMessage(ChatRole.USER, f"Question {turn}: tell me about planet {turn}. " * 20)
        )
        fake.enqueue(Script(text=f"Planet {turn} is far away and quite large. " * 15))
        events = await collect(provider, ProviderRequest("m", tuple(history), system_prompt=SYSTEM))
        answer = "".join(getattr(e, "text", "") for e in events if type(e).__name__ == "TextChunk")
        history.append(ChatMessage(ChatRole.ASSISTANT, answer))
        finished = events[-1]
        assert isinstance(finished, StreamFinished)
        usage.append(finished)
    return usage


def hit_rate(usage: list[StreamFinished]) -> float:
    return sum(u.cached_input_tokens for u in usage) / sum(u.input_tokens for u in usage)


async def test_anthropic_cache_points_make_each_turn_read_the_last(fake: FakeLLMServer) -> None:
    provider = provider_for(fake, "anthropic", prompt_caching=True)
    usage = await conversation(fake, provider)
    await provider.aclose()

    first = usage[0]  # nothing to read yet; the system prompt is written
    assert first.cached_input_tokens == 0 and first.cache_write_tokens > 2000
    for before, now in itertools.pairwise(usage):
        fresh_before = before.input_tokens - before.cached_input_tokens - before.cache_write_tokens
        # What the last turn cached (all but what followed its last cache point) is read.
        assert now.cached_input_tokens == before.input_tokens - fresh_before
        assert now.cache_write_tokens > 0
    rate = hit_rate(usage)
    print(f"anthropic prompt cache hit rate over {TURNS} turns: {rate:.3f}")
    assert rate > 0.75


async def test_anthropic_without_caching_reads_nothing(fake: FakeLLMServer) -> None:
    provider = provider_for(fake, "anthropic")
    usage = await conversation(fake, provider)
    await provider.aclose()
    assert hit_rate(usage) == 0 and all(u.cache_write_tokens == 0 for u in usage)
    assert "cache_control" not in str(fake.requests[-1].body)


async def test_openai_caches_by_itself_and_reports_it(fake: FakeLLMServer) -> None:
    provider = provider_for(fake, "openai")
    usage = await conversation(fake, provider)
    await provider.aclose()
    assert usage[0].cached_input_tokens == 0
    for before, now in itertools.pairwise(usage):
        # The longest prefix seen before (the last request but its reply priming), in
        # 128-token steps past the first 1024.
        seen = before.input_tokens - 3
        assert seen - 127 <= now.cached_input_tokens <= seen
        assert (now.cached_input_tokens - 1024) % 128 == 0
    rate = hit_rate(usage)
    print(f"openai automatic prompt cache hit rate over {TURNS} turns: {rate:.3f}")
    assert rate > 0.75


async def test_cache_points_sit_on_the_system_prompt_and_the_stable_prefix(
    fake: FakeLLMServer,
) -> None:
    provider = provider_for(fake, "anthropic", prompt_caching=True, thinking_budget_tokens=2048)
    fake.enqueue(Script(reasoning="Fine.", text="ok"))
    thought = (await collect(provider, ProviderRequest("m", (ChatMessage(ChatRole.USER, "q"),))))[
        -1
    ]
    assert isinstance(thought, StreamFinished)
    calls = (ToolCallRequest("t1", "calc", {}),)
    history = (
        ChatMessage(ChatRole.USER, "first"),
        ChatMessage(ChatRole.ASSISTANT, "", tool_calls=calls, reasoning=thought.reasoning),
        ChatMessage(ChatRole.TOOL, "4", tool_call_id="t1"),
    )
    fake.enqueue(Script(text="done"))
    await collect(provider, ProviderRequest("m", history, system_prompt="Be brief."))
    await provider.aclose()
    body = fake.requests[-1].body
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    marked = [
        (n, b["type"])
        for n, m in enumerate(body["messages"])
        for b in m["content"]
        if "cache_control" in b
    ]
    # The message before the new one, on its last block (never on a thinking block).
    assert marked == [(1, "tool_use")]
    assert body["messages"][1]["content"][0]["type"] == "thinking"


async def test_the_fake_refuses_more_than_four_cache_points(fake: FakeLLMServer) -> None:
    import anthropic

    client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake.root_url, max_retries=0)
    point: Any = {"type": "ephemeral"}
    content: Any = [{"type": "text", "text": f"part {i}", "cache_control": point} for i in range(5)]
    try:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model="m", max_tokens=10, messages=[{"role": "user", "content": content}]
            )
    finally:
        await client.close()
    assert "A maximum of 4 blocks with cache_control may be provided. Found 5." in str(caught.value)


def test_deepseek_reports_cache_hits_at_the_top_level() -> None:
    usage = {
        "prompt_tokens": 1500,
        "completion_tokens": 40,
        "prompt_cache_hit_tokens": 1280,
        "prompt_cache_miss_tokens": 220,
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    done = _finished("stop", usage, ["thinking"])
    assert (done.input_tokens, done.cached_input_tokens, done.reasoning_tokens) == (1500, 1280, 30)
    assert done.reasoning == (ReasoningBlock("openai", text="thinking"),)


def test_a_cache_point_reads_back_at_most_twenty_blocks() -> None:
    # The lookback the real API documents: a prefix written more than 20 blocks before
    # any of a request's cache points is not found (a long tool loop loses its cache).
    from aichat_devtools.fake_llm.prompt_cache import PromptCache
    from aichat_devtools.fake_llm.tokens import Unit

    def blocks(count: int, point: int) -> list[Unit]:
        return [Unit(f"block {i}", 100, cache_point=i == point) for i in range(count)]

    near, far = PromptCache(min_tokens=1024), PromptCache(min_tokens=1024)
    for cache in (near, far):
        assert cache.anthropic("m", blocks(15, 14)).written == 1500
    assert near.anthropic("m", blocks(40, 34)).read == 1500  # 20 blocks back: found
    assert far.anthropic("m", blocks(40, 35)).read == 0  # 21 back: not found
