"""Reasoning, cached tokens and cost through the engine (no gRPC): see conftest.py.

Against the wire-true fake through the real SDKs: Anthropic thinking (signed and redacted
blocks that the fake checks when they come back) and OpenAI-compatible reasoning fields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from aichat_backend.domain import MessageState, ToolCallState
from aichat_backend.engine.approvals import Decision
from aichat_backend.engine.chat import ResolveRequest
from aichat_backend.engine.events import (
    ApprovalRequired,
    ReasoningDelta,
    TextDelta,
    TurnEnded,
    TurnEvent,
    TurnOutcome,
)
from aichat_backend.engine.sessions import SessionLimits, SessionManager
from aichat_backend.errors import InvalidArgument
from aichat_backend.money import Cost
from aichat_backend.providers.catalogue import parse_catalogue
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.engine.conftest import EngineStack, engine_stack
from tests.support.reasoning_models import reasoning_models

pytestmark = pytest.mark.timeout(30)

THOUGHT = "The user wants to look at seven. I should call the look tool first."


@pytest.fixture
async def stack() -> AsyncIterator[EngineStack]:
    async with FakeLLMServer(min_cache_tokens=64) as fake:
        models = reasoning_models(fake)
        catalogue = parse_catalogue(models, {}, timeout_seconds=10, prompt_caching=True)
        async with engine_stack(fake, catalogue) as built:
            yield built


def ended_of(events: list[TurnEvent]) -> TurnEnded:
    last = events[-1]
    assert isinstance(last, TurnEnded)
    return last


def kinds(events: list[TurnEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def reasoning_of(events: list[TurnEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ReasoningDelta))


def first_assistant_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    assistant = [m for m in body["messages"] if m["role"] == "assistant"]
    content: list[dict[str, Any]] = assistant[-1]["content"]
    return content


def eur(text: str) -> Cost:
    return Cost.of(Decimal(text), "EUR")


async def test_openai_reasoning_streams_before_the_answer_and_is_kept_with_it(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user, model="gpt")
    stack.fake.enqueue(
        Script(reasoning="Two and two make four.", text="It is 4.", token_delay=0.01)
    )
    events = await stack.turn(user, session, "2+2?")
    answer_events = [e for e in events if isinstance(e, ReasoningDelta | TextDelta)]
    first_text = next(i for i, e in enumerate(answer_events) if isinstance(e, TextDelta))
    assert first_text > 0 and all(isinstance(e, ReasoningDelta) for e in answer_events[:first_text])
    assert not any(isinstance(e, ReasoningDelta) for e in answer_events[first_text:])
    assert reasoning_of(events) == "Two and two make four."
    ended = ended_of(events)
    assert ended.message.text == "It is 4." and ended.message.reasoning_text == reasoning_of(events)
    stored = (await stack.messages(user, session))[-1]
    assert stored.reasoning_text == "Two and two make four."
    assert [b.family for b in stored.reasoning] == ["openai"]
    assert stored.reasoning_tokens == ended.reasoning_tokens > 0
    assert stored.output_tokens > stored.reasoning_tokens  # reasoning is part of output
    # DeepSeek refuses reasoning in its input: the next turn sends the answer without it.
    stack.fake.enqueue(Script(text="ok"))
    await stack.turn(user, session, "thanks")
    sent = str(stack.fake.requests[-1].body["messages"])
    assert "Two and two make four" not in sent and "It is 4." in sent


async def test_reasoning_that_piled_up_goes_out_before_the_text_after_it(
    stack: EngineStack, user: str
) -> None:
    """A caller that reads the answer whole (SendMessage) gets the round's reasoning and
    text at once, in the order the model wrote them."""
    session = await stack.new_session(user, model="gpt")
    stack.fake.enqueue(
        Script(reasoning="first this", reasoning_field="reasoning", text="then that")
    )
    events = await stack.turn(user, session, "go", relay_text=False)
    assert kinds(events)[1:] == ["ReasoningDelta", "TextDelta", "TurnEnded"]
    assert reasoning_of(events) == "first this"  # Ollama's and OpenRouter's field too


async def test_thinking_blocks_go_back_signed_on_the_tool_round(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user, model="claude")
    stack.fake.enqueue(
        Script(
            reasoning=THOUGHT,
            redacted_thinking=1,
            text="Let me look.",
            tool_calls=[("toolu_1", "srv__look", {"x": 7})],
        ),
        Script(reasoning="The tool said seven.", text="It is seven."),
    )
    events = await stack.turn(user, session, "look at 7")
    ended = ended_of(events)
    # The fake refuses (400) a tool round whose thinking blocks were not sent back intact.
    assert ended.outcome is TurnOutcome.COMPLETED, ended.error
    assert reasoning_of(events) == THOUGHT + "The tool said seven."
    second = stack.fake.requests[-1].body
    assert second["thinking"]["type"] == "enabled"
    blocks = first_assistant_blocks(second)
    assert [b["type"] for b in blocks[:2]] == ["thinking", "redacted_thinking"]
    assert blocks[0]["thinking"] == THOUGHT and blocks[0]["signature"]
    stored = await stack.messages(user, session)
    asked = stored[1]
    assert asked.tool_calls[0].state is ToolCallState.SUCCEEDED
    assert [(b.redacted, b.text) for b in asked.reasoning] == [(False, THOUGHT), (True, "")]
    assert asked.reasoning[0].signature == blocks[0]["signature"]  # stored as it came
    assert asked.reasoning[1].data == blocks[1]["data"]
    assert stored[2].reasoning_text == "The tool said seven."


async def test_thinking_survives_an_approval_and_goes_back_from_storage(
    stack: EngineStack, user: str
) -> None:
    """The round that asked for approval is read back from the store when the user
    decides: its signed blocks must come with it, or the round after the tool runs
    without thinking (the adapter's only way to avoid the API's refusal)."""
    session = await stack.new_session(user, model="claude")
    stack.fake.enqueue(Script(reasoning=THOUGHT, tool_calls=[("toolu_9", "srv__change", {"x": 1})]))
    events = await stack.turn(user, session, "change 1")
    assert any(isinstance(e, ApprovalRequired) for e in events)
    assert ended_of(events).outcome is TurnOutcome.AWAITING_APPROVAL

    stack.fake.enqueue(Script(reasoning="Done, it changed.", text="Changed."))
    decision = Decision(tool_call_id="toolu_9", approved=True)
    request = ResolveRequest(user, session, [decision])
    resolved = [e async for e in stack.engine.resolve(request)]
    ended = ended_of(resolved)
    assert ended.outcome is TurnOutcome.COMPLETED, ended.error
    body = stack.fake.requests[-1].body
    assert body["thinking"]["type"] == "enabled"  # thinking stayed on for this round
    blocks = first_assistant_blocks(body)
    assert blocks[0]["type"] == "thinking" and blocks[0]["thinking"] == THOUGHT
    assert reasoning_of(resolved) == "Done, it changed."


async def test_a_turn_can_set_its_own_reasoning(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user, model="gpt")
    await stack.turn(user, session, "think hard", reasoning_effort="high")
    assert stack.fake.requests[-1].body["reasoning_effort"] == "high"
    await stack.turn(user, session, "do not", model="claude", thinking_budget_tokens=0)
    assert "thinking" not in stack.fake.requests[-1].body
    await stack.turn(user, session, "a little", model="claude", thinking_budget_tokens=1500)
    assert stack.fake.requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 1500}


@pytest.mark.parametrize(
    ("model", "options", "field"),
    [
        ("gpt", {"reasoning_effort": "extreme"}, "options.reasoning_effort"),
        ("claude", {"reasoning_effort": "low"}, "options.reasoning_effort"),
        ("gpt", {"thinking_budget_tokens": 2048}, "options.thinking_budget_tokens"),
        ("claude", {"thinking_budget_tokens": -1}, "options.thinking_budget_tokens"),
    ],
)
async def test_reasoning_options_a_model_would_not_read_are_refused(
    stack: EngineStack, user: str, model: str, options: dict[str, Any], field: str
) -> None:
    session = await stack.new_session(user, model=model)
    with pytest.raises(InvalidArgument) as refused:
        await stack.turn(user, session, "hi", **options)
    assert (refused.value.reason, refused.value.field) == ("INVALID_REASONING_OPTION", field)
    assert stack.fake.request_count == 0  # refused before the model was asked
    assert await stack.messages(user, session) == []  # and nothing was stored


async def test_a_turn_says_what_it_used_and_what_that_cost(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user, model="claude")
    stack.fake.enqueue(
        Script(reasoning=THOUGHT, text="ok", input_tokens=1000, output_tokens=500),
        Script(reasoning_tokens=0, text="fine", input_tokens=2000, output_tokens=10),
    )
    first = ended_of(await stack.turn(user, session, "one"))
    # 1000 * 3 + 500 * 15 per million, in the catalogue's currency, exactly.
    assert first.cost == eur("0.0105") and first.message.cost == first.cost
    assert first.reasoning_tokens > 0 and first.message.reasoning_tokens == first.reasoning_tokens
    second = ended_of(await stack.turn(user, session, "two"))
    assert second.cost == eur("0.00615")
    rows = [day for (who, _, model), day in stack.store.usage_days() if who == user]
    assert len(rows) == 1
    row = rows[0]
    assert (row.input_tokens, row.output_tokens, row.turns) == (3000, 510, 2)
    assert row.reasoning_tokens == first.reasoning_tokens
    assert (row.cost_nanos, row.currency) == (16_650_000, "EUR")
    # A model without prices counts its tokens and no money.
    free = ended_of(await stack.turn(user, session, "three", model="free"))
    assert free.cost is None and free.output_tokens > 0


async def test_cached_prompt_tokens_are_counted_and_priced_apart(
    stack: EngineStack, user: str
) -> None:
    system = "You answer questions about the following long manual. " * 40
    session = await stack.new_session(user, model="gpt", system_prompt=system)
    ended = [ended_of(await stack.turn(user, session, f"question {i}")) for i in range(2)]
    assert ended[0].cached_input_tokens == 0
    hit = ended[1]
    assert 0 < hit.cached_input_tokens < hit.input_tokens  # the system prompt, read cached
    fresh = hit.input_tokens - hit.cached_input_tokens
    expected = (
        Decimal(fresh) * Decimal("0.15")
        + Decimal(hit.cached_input_tokens) * Decimal("0.075")
        + Decimal(hit.output_tokens) * Decimal("0.60")
    ) / 1_000_000
    assert hit.cost == Cost.of(expected, "EUR")
    assert (await stack.messages(user, session))[-1].cached_input_tokens == hit.cached_input_tokens


async def test_anthropic_cache_writes_and_reads_are_counted(stack: EngineStack, user: str) -> None:
    system = "You answer questions about the following long manual. " * 40
    session = await stack.new_session(user, model="claude", system_prompt=system)
    ended = [
        ended_of(await stack.turn(user, session, f"q{i}", thinking_budget_tokens=0))
        for i in range(2)
    ]
    assert ended[0].cache_write_tokens > 0 and ended[0].cached_input_tokens == 0
    assert ended[1].cached_input_tokens >= ended[0].cache_write_tokens
    for e in ended:
        written, read = e.cache_write_tokens, e.cached_input_tokens
        fresh = e.input_tokens - written - read
        expected = (
            Decimal(fresh) * 3
            + Decimal(read) * Decimal("0.30")
            + Decimal(written) * Decimal("3.75")
            + Decimal(e.output_tokens) * 15
        ) / 1_000_000
        assert e.cost == Cost.of(expected, "EUR")


async def test_a_cut_off_turn_keeps_the_reasoning_it_streamed(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user, model="gpt")
    stack.fake.enqueue(Script(reasoning="one two three four five six", hang_after=3))
    turn = stack.engine.stream_turn(stack.request(user, session, "think"))
    seen = ""
    async for event in turn:
        if isinstance(event, ReasoningDelta):
            seen += event.text
            if seen.split() == ["one", "two", "three"]:
                break  # the client goes away mid-thought
    await turn.aclose()
    await stack.fake.wait_disconnect(within=5.0)
    await stack.engine.drain_writes()
    answer = (await stack.messages(user, session))[-1]
    assert (answer.state, answer.reasoning_text) == (MessageState.INCOMPLETE, seen)
    assert [b.signature for b in answer.reasoning] == [""]  # unsigned: never sent back


async def test_another_replica_answers_after_a_thinking_round_it_did_not_make(
    stack: EngineStack, user: str
) -> None:
    """History read by a fresh engine carries the stored blocks too."""
    session = await stack.new_session(user, model="claude")
    stack.fake.enqueue(Script(reasoning=THOUGHT, tool_calls=[("toolu_5", "srv__change", {"x": 2})]))
    await stack.turn(user, session, "change 2")
    other = stack.another_engine()
    stack.fake.enqueue(Script(text="Changed."))
    request = ResolveRequest(user, session, [Decision(tool_call_id="toolu_5", approved=True)])
    ended = ended_of([e async for e in other.resolve(request)])
    assert ended.outcome is TurnOutcome.COMPLETED, ended.error
    assert first_assistant_blocks(stack.fake.requests[-1].body)[0]["signature"]
    await other.drain_writes()


async def test_a_listed_page_counts_the_reasoning_it_carries(stack: EngineStack, user: str) -> None:
    """Reasoning is often longer than the answer: a ListMessages page bounded by bytes must
    count it, or a page of thinking answers would pass the gRPC message limit."""
    session = await stack.new_session(user, model="gpt")
    thought = " ".join(f"{n:06d}-thinking-aloud-about-it" for n in range(2000))  # ~62 KB
    for i in range(3):
        stack.fake.enqueue(Script(reasoning=thought, text=f"answer {i}"))
        await stack.turn(user, session, f"question {i}")
    bounded = SessionManager(
        stack.store,
        SessionLimits(memory_max=100, idempotency_ttl_seconds=60, page_max_bytes=100_000),
    )
    page = await bounded.list_messages(user, session, 50, "")
    carried = sum(len(m.reasoning_text) for m in page.items)
    assert page.next_page_token and len(page.items) < 6
    assert 0 < carried <= 100_000


async def test_a_fallback_is_priced_at_its_own_prices(user: str) -> None:
    """The model that answered is the one paid: a fallback's prices, not the primary's."""
    async with (
        FakeLLMServer(default=Script(error_status=503)) as dead,
        FakeLLMServer() as alive,
    ):
        models = f"""
models:
  - {{name: main, provider: openai, base_url: "{dead.base_url}", api_key: k,
     model_name: main-model, fallbacks: [backup], prices: {{input: 10, output: 10}}}}
  - {{name: backup, provider: openai, base_url: "{alive.base_url}", api_key: k,
     model_name: backup-model, prices: {{input: 1, output: 2}}}}
"""
        async with engine_stack(alive, parse_catalogue(models, {}, timeout_seconds=10)) as stack:
            session = await stack.new_session(user)
            alive.enqueue(Script(text="from the backup", input_tokens=1000, output_tokens=1000))
            ended = ended_of(await stack.turn(user, session, "hi"))
    assert (ended.outcome, ended.model) == (TurnOutcome.COMPLETED, "backup")
    assert ended.cost == Cost.of(Decimal("0.003"), "USD")  # 1000 * 1 + 1000 * 2 per million
    assert ended.message.cost == ended.cost and dead.request_count >= 1
