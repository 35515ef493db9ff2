"""Context that never overflows (issue 26), through the engine against the wire-true fake
that enforces each model's window and refuses past it as OpenAI and Anthropic do.

History is chosen by tokens, compaction folds what no longer fits into a stored summary
(said by ContextCompacted), a refusal gets one compaction and one retry, and a message
that alone is bigger than the window fails with MESSAGE_EXCEEDS_CONTEXT_WINDOW.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aichat_backend import names
from aichat_backend.engine.approvals import Decision
from aichat_backend.engine.chat import ChatConfig, ResolveRequest
from aichat_backend.engine.compaction import INSTRUCTIONS, CompactionConfig
from aichat_backend.engine.context_budget import ContextConfig
from aichat_backend.engine.events import (
    ContextCompacted,
    TurnEnded,
    TurnEvent,
    TurnOutcome,
    TurnStarted,
)
from aichat_backend.providers.catalogue import parse_catalogue
from aichat_devtools.fake_llm import FakeLLMServer, RecordedRequest, Script, echo_behaviour
from tests.engine.conftest import EngineStack, engine_stack

pytestmark = pytest.mark.timeout(60)

WINDOW = 4096
# Upstream model ids → the windows the fake enforces. ``roomy`` is listed in the
# catalogue with four times the window its upstream has: our count then lets through
# what the upstream refuses, as a catalogue entry set too large would.
UPSTREAM = {"small-4k": WINDOW, "claude-4k": WINDOW, "cheap-4k": WINDOW}


def catalogue_text(fake: FakeLLMServer) -> str:
    return f"""
default: small
models:
  - name: small
    provider: openai
    model_name: small-4k
    base_url: {fake.base_url}
    api_key: k
    context_window: {WINDOW}
  - name: claude
    provider: anthropic
    model_name: claude-4k
    base_url: {fake.root_url}
    api_key: k
    context_window: {WINDOW}
    max_output_tokens: 1024
  - name: cheap
    provider: openai
    model_name: cheap-4k
    base_url: {fake.base_url}
    api_key: k
    context_window: {WINDOW}
  - name: roomy
    provider: openai
    model_name: small-4k
    base_url: {fake.base_url}
    api_key: k
    context_window: {WINDOW * 4}
  - name: roomy-claude
    provider: anthropic
    model_name: claude-4k
    base_url: {fake.root_url}
    api_key: k
    context_window: {WINDOW * 4}
    max_output_tokens: 1024
"""


@asynccontextmanager
async def make_stack(
    fake: FakeLLMServer, context: ContextConfig | None = None, **compaction: Any
) -> AsyncIterator[EngineStack]:
    catalogue = parse_catalogue(catalogue_text(fake), {}, timeout_seconds=10)
    config = ChatConfig(
        heartbeat_seconds=5.0,
        context=context or ContextConfig(),
        compaction=CompactionConfig(**compaction),
    )
    async with engine_stack(fake, catalogue, config) as built:
        yield built


@pytest.fixture
async def stack() -> AsyncIterator[EngineStack]:
    async with FakeLLMServer(context_windows=UPSTREAM) as fake, make_stack(fake) as built:
        yield built


def ended(events: list[TurnEvent]) -> TurnEnded:
    last = events[-1]
    assert isinstance(last, TurnEnded)
    return last


def compactions(events: list[TurnEvent]) -> list[ContextCompacted]:
    return [e for e in events if isinstance(e, ContextCompacted)]


def words(turn: int, n: int = 100) -> str:
    """About ``n`` words that say which turn they belong to."""
    return " ".join(f"t{turn}w{i}" for i in range(n))


def chat_requests(fake: FakeLLMServer) -> list[dict[str, Any]]:
    """The turns' model calls (not the summarizer's)."""
    return [
        r.body for r in fake.requests if isinstance(r.body, dict) and not _is_summary_call(r.body)
    ]


def _is_summary_call(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    system = body.get("system") or (messages[0].get("content") if messages else "")
    return INSTRUCTIONS in str(system)


async def test_history_is_chosen_by_tokens_and_the_gauge_says_how_full(user: str) -> None:
    """Without compaction the newest messages that fit are sent: every turn of a
    conversation far longer than the window is answered, none is refused."""
    async with (
        FakeLLMServer(context_windows=UPSTREAM) as fake,
        make_stack(fake, ContextConfig(compaction=False)) as stack,
    ):
        session = await stack.new_session(user)
        for turn in range(12):
            events = await stack.turn(user, session, words(turn), model="small")
            assert ended(events).outcome is TurnOutcome.COMPLETED, ended(events).error
            assert not compactions(events)
        assert stack.fake.request_count == 12  # none refused, none retried
    started = next(e for e in events if isinstance(e, TurnStarted))
    assert started.context is not None
    assert started.context.window_tokens == WINDOW
    assert 0 < started.context.tokens <= WINDOW - started.context.output_reserve_tokens
    end = ended(events)
    assert end.context is not None and 0 < end.context.tokens < WINDOW
    last = chat_requests(stack.fake)[-1]
    sent = " ".join(str(m.get("content")) for m in last["messages"])
    assert "t11w0" in sent and "t0w0 " not in sent  # the newest, not the oldest


async def test_compaction_folds_older_messages_into_a_stored_summary_once_per_need(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    seen: list[ContextCompacted] = []
    turn = 0
    while not seen:
        events = await stack.turn(user, session, words(turn), model="small")
        assert ended(events).outcome is TurnOutcome.COMPLETED, ended(events).error
        seen = compactions(events)
        turn += 1
        assert turn < 20, "the conversation never outgrew the window"
    compacted = seen[0]
    # TurnStarted, then the compaction, then the answer.
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("TurnStarted") < kinds.index("ContextCompacted") < kinds.index("TextDelta")
    assert compacted.tokens_after < compacted.tokens_before
    assert compacted.folded_messages >= 2 and not compacted.after_refusal
    stored = await stack.messages(user, session)
    marked = [m for m in stored if m.context_summary is not None]
    assert [m.name for m in marked] == [compacted.through_name]
    assert marked[0].context_summary == compacted.summary
    # The originals stay: every message of every turn is still listed.
    assert len(stored) == 2 * turn
    # The next turn sends the summary and what came after it, and does not compact again.
    events = await stack.turn(user, session, "and now?", model="small")
    assert ended(events).outcome is TurnOutcome.COMPLETED and not compactions(events)
    last = chat_requests(stack.fake)[-1]
    system = str(last["messages"][0]["content"])
    assert "<conversation_summary>" in system
    sent = " ".join(str(m.get("content")) for m in last["messages"][1:])
    assert "t0w0 " not in sent


async def test_a_cheaper_model_writes_the_summary_when_configured(user: str) -> None:
    async with (
        FakeLLMServer(context_windows=UPSTREAM) as fake,
        make_stack(fake, model="cheap") as stack,
    ):
        session = await stack.new_session(user)
        for turn in range(10):
            events = await stack.turn(user, session, words(turn), model="small")
            if compactions(events):
                break
        assert compactions(events)[0].summary.model == "cheap"
        summary_calls = [
            r.body for r in fake.requests if isinstance(r.body, dict) and _is_summary_call(r.body)
        ]
        assert summary_calls and {b["model"] for b in summary_calls} == {"cheap-4k"}


@pytest.mark.parametrize("model", ["roomy", "roomy-claude"])
async def test_a_context_refusal_gets_one_compaction_and_one_retry(user: str, model: str) -> None:
    """The catalogue says 16k, the upstream holds 4k: it refuses (OpenAI
    ``context_length_exceeded``, Anthropic "prompt is too long"), the turn compacts and
    is answered on its retry."""
    async with (
        FakeLLMServer(context_windows=UPSTREAM) as fake,
        make_stack(fake, model="cheap") as stack,
    ):
        session = await stack.new_session(user)
        refused: list[ContextCompacted] = []
        for turn in range(14):
            events = await stack.turn(user, session, words(turn, 200), model=model)
            assert ended(events).outcome is TurnOutcome.COMPLETED, ended(events).error
            refused += [c for c in compactions(events) if c.after_refusal]
        assert refused, "the upstream never refused: the test proves nothing"
        assert refused[0].summary.model == "cheap"


async def test_one_message_bigger_than_the_window_fails_with_its_sizes(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    await stack.turn(user, session, "hello", model="small")
    events = await stack.turn(user, session, words(0, 3000), model="roomy")
    end = ended(events)
    assert end.outcome is TurnOutcome.FAILED and end.error is not None
    assert end.error.reason == "MESSAGE_EXCEEDS_CONTEXT_WINDOW"
    meta = end.error.metadata
    assert int(meta["message_tokens"]) > WINDOW
    assert meta["input_tokens"] and meta["context_window"] == str(WINDOW)
    assert meta["model"] == "roomy"


async def test_two_hundred_turns_on_a_4096_token_model(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    folded = 0
    for turn in range(200):
        events = await stack.turn(user, session, words(turn, 150), model="small")
        assert ended(events).outcome is TurnOutcome.COMPLETED, (turn, ended(events).error)
        for c in compactions(events):
            assert not c.after_refusal  # our count kept every request inside the window
            folded += c.folded_messages
    assert folded > 0
    await stack.engine.settle()
    stored = await stack.messages(user, session)
    assert len(stored) == 400  # every original kept
    summaries = [m.context_summary for m in stored if m.context_summary is not None]
    assert len(summaries) > 10 and summaries[-1].folded_messages > 300
    system = str(chat_requests(stack.fake)[-1]["messages"][0]["content"])
    assert "<conversation_summary>" in system
    assert names.parse_session(session)


async def test_the_round_after_an_approval_is_chosen_by_tokens_too(user: str) -> None:
    """ResolveToolCalls' next round reads the history again: the newest that fits the
    window, the turn's own messages always (before issue 26 it sent the last 100
    messages whatever their size, and the 4k upstream refused it)."""
    async with (
        FakeLLMServer(context_windows=UPSTREAM) as fake,
        make_stack(fake, ContextConfig(compaction=False)) as stack,
    ):
        session = await stack.new_session(user)
        for turn in range(12):
            events = await stack.turn(user, session, words(turn), model="small")
            assert ended(events).outcome is TurnOutcome.COMPLETED
        fake.enqueue(Script(tool_calls=[("call_w", "srv__change", {"x": 1})]))
        events = await stack.turn(user, session, "change 1", model="small")
        assert ended(events).outcome is TurnOutcome.AWAITING_APPROVAL
        fake.enqueue(Script(text="changed"))
        decision = Decision(tool_call_id="call_w", approved=True)
        resolved = [
            e async for e in stack.engine.resolve(ResolveRequest(user, session, [decision]))
        ]
        last = ended(resolved)
        assert last.outcome is TurnOutcome.COMPLETED, last.error
        assert last.message.text == "changed"
        sent = chat_requests(fake)[-1]["messages"]
        assert any("change 1" in str(m.get("content")) for m in sent)  # the turn's own
        assert "t0w0 " not in " ".join(str(m.get("content")) for m in sent)


async def test_the_summary_is_carried_on_before_it_leaves_the_messages_read(user: str) -> None:
    """The count bound (here 10 messages) still bounds what a turn reads: a summary about to
    fall out of it is folded on, so later turns never lose what it stands for."""
    async with FakeLLMServer(context_windows=UPSTREAM) as fake:
        catalogue = parse_catalogue(catalogue_text(fake), {}, timeout_seconds=10)
        config = ChatConfig(heartbeat_seconds=5.0, memory_default=10)
        async with engine_stack(fake, catalogue, config) as stack:
            session = await stack.new_session(user)
            turn = 0
            while not compactions(await stack.turn(user, session, words(turn, 300))):
                turn += 1
                assert turn < 10
            before_answer = 0
            for short in range(12):
                events = await stack.turn(user, session, f"short {short}", model="small")
                assert ended(events).outcome is TurnOutcome.COMPLETED
                before_answer += len(compactions(events))
                system = str(chat_requests(fake)[-1]["messages"][0]["content"])
                assert "<conversation_summary>" in system, short
                await stack.engine.settle()
            assert before_answer <= 1  # carried on beside the answers, two turns ahead
            stored = await stack.messages(user, session)
            assert len([m for m in stored if m.context_summary is not None]) >= 3


async def test_a_compaction_cut_off_midway_stores_nothing_and_is_made_again(user: str) -> None:
    """Resumable: the caller hangs up while the summary is being written; nothing is
    stored, and the next turn that needs it compacts again and is answered."""
    hung = asyncio.Event()
    echo = echo_behaviour()

    def upstream(request: RecordedRequest) -> Script:
        body = request.body if isinstance(request.body, dict) else {}
        if _is_summary_call(body) and not hung.is_set():
            hung.set()
            return Script(text="never", hang_after=0)
        return echo(request)

    async with (
        FakeLLMServer(default=upstream, context_windows=UPSTREAM) as fake,
        make_stack(fake) as stack,
    ):
        session = await stack.new_session(user)
        for turn in range(20):
            running = asyncio.create_task(stack.turn(user, session, words(turn, 300)))
            hanging = asyncio.create_task(hung.wait())
            await asyncio.wait({running, hanging}, return_when=asyncio.FIRST_COMPLETED)
            hanging.cancel()
            if hung.is_set():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                break
            assert ended(running.result()).outcome is TurnOutcome.COMPLETED
        assert hung.is_set(), "no compaction was needed: the test proves nothing"
        assert await stack.engine.wait_idle(5)
        assert not [m for m in await stack.messages(user, session) if m.context_summary]
        events = await stack.turn(user, session, words(99, 300))
        assert ended(events).outcome is TurnOutcome.COMPLETED, ended(events).error
        assert compactions(events)
        assert [m for m in await stack.messages(user, session) if m.context_summary]


async def test_a_summarizer_that_fails_leaves_older_messages_out_and_the_turn_answers(
    user: str,
) -> None:
    def upstream(request: RecordedRequest) -> Script:
        body = request.body if isinstance(request.body, dict) else {}
        if _is_summary_call(body):
            return Script(text="never", hang_after=0)  # silent until the timeout
        return echo_behaviour()(request)

    async with (
        FakeLLMServer(default=upstream, context_windows=UPSTREAM) as fake,
        make_stack(fake, timeout_seconds=0.2) as stack,
    ):
        session = await stack.new_session(user)
        for turn in range(8):
            events = await stack.turn(user, session, words(turn, 300))
            end = ended(events)
            assert end.outcome is TurnOutcome.COMPLETED, end.error
            assert not compactions(events)
        assert end.context is not None and end.context.omitted_messages > 0
        assert not [m for m in await stack.messages(user, session) if m.context_summary]
