"""The turn rules, driven on the engine itself (no gRPC): see conftest.py."""

from __future__ import annotations

import pytest

from aichat_backend.domain import MessageState, Role, ToolCallState
from aichat_backend.engine.approvals import Decision
from aichat_backend.engine.chat import ResolveRequest
from aichat_backend.engine.events import (
    ApprovalRequired,
    TextDelta,
    ToolCallUpdate,
    TurnEnded,
    TurnOutcome,
    TurnStarted,
)
from aichat_backend.errors import Aborted, FailedPrecondition
from aichat_devtools.fake_llm import Script
from tests.engine.conftest import EngineStack

pytestmark = pytest.mark.timeout(20)


async def test_a_turn_streams_its_answer_and_stores_it_once(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["Hel", "lo ", "there"], token_delay=0.01))
    events = await stack.turn(user, session, "hi")
    assert isinstance(events[0], TurnStarted)
    assert events[0].user_message.text == "hi"
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "Hello there"
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.outcome is TurnOutcome.COMPLETED
    assert ended.message.name == events[0].answer_name
    assert ended.output_tokens == 3
    stored = await stack.messages(user, session)
    assert [(m.role, m.text, m.state) for m in stored] == [
        (Role.USER, "hi", MessageState.COMPLETE),
        (Role.ASSISTANT, "Hello there", MessageState.COMPLETE),
    ]
    # The last write counted the usage once, under the model that answered.
    assert stack.usage() == [("gpt-test", 3, 1)]


async def test_a_cancelled_turn_keeps_its_partial_answer(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["one ", "two ", "three"], hang_after=2))
    turn = stack.engine.stream_turn(stack.request(user, session, "count"))
    seen = ""
    async for event in turn:
        if isinstance(event, TextDelta):
            seen += event.text
            if seen == "one two ":
                break  # the client goes away mid-answer
    await turn.aclose()
    await stack.fake.wait_disconnect(within=5.0)  # the upstream call was closed
    await stack.engine.drain_writes()
    answer = (await stack.messages(user, session))[-1]
    assert (answer.text, answer.state, answer.finish_reason) == (
        "one two ",
        MessageState.INCOMPLETE,
        "cancelled",
    )
    assert stack.engine.active_turns == 0
    # The session was freed: the next message is answered.
    stack.fake.enqueue(Script(text="again"))
    assert (await stack.turn(user, session, "again?"))[-1].outcome is TurnOutcome.COMPLETED  # type: ignore[union-attr]


async def test_the_model_reads_only_the_memory_window(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user, memory_limit=2)
    for i in range(3):
        stack.fake.enqueue(Script(text=f"answer {i}"))
        await stack.turn(user, session, f"question {i}")
    stack.fake.enqueue(Script(text="last"))
    await stack.turn(user, session, "question 3")
    sent = stack.fake.requests[-1].body["messages"]
    contents = [(m["role"], m["content"]) for m in sent if m["role"] != "system"]
    # The last two stored messages, then the new one.
    assert contents == [
        ("user", "question 2"),
        ("assistant", "answer 2"),
        ("user", "question 3"),
    ]
    # A turn may ask for its own window; one cut mid-exchange still opens with the user.
    stack.fake.enqueue(Script(text="wider"))
    await stack.turn(user, session, "question 4", memory_limit=3)
    sent = stack.fake.requests[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] != "system"] == [
        "question 3",
        "last",
        "question 4",
    ]


async def test_a_tool_round_runs_the_call_and_the_model_reads_its_result(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tool_calls=[("call_1", "srv__look", {"x": 7})]))
    stack.fake.enqueue(Script(text="seven it is"))
    events, updates = [], []
    async for event in stack.engine.stream_turn(stack.request(user, session, "look at 7")):
        events.append(event)
        if isinstance(event, ToolCallUpdate):  # the call's state as each update is sent
            updates.append(event.call.state)
    assert updates == [ToolCallState.RUNNING, ToolCallState.SUCCEEDED]
    assert stack.tools.calls == [("look", {"x": 7}, user)]
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.outcome is TurnOutcome.COMPLETED
    assert ended.message.text == "seven it is"
    tool_message = stack.fake.requests[-1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "look says 7" in tool_message["content"]
    stored = await stack.messages(user, session)
    assert [m.role for m in stored] == [Role.USER, Role.ASSISTANT, Role.ASSISTANT]
    assert stored[1].tool_calls[0].state is ToolCallState.SUCCEEDED
    assert stored[2].text == "seven it is"


async def test_a_call_that_changes_things_waits_for_approval_then_resumes(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tool_calls=[("call_9", "srv__change", {"x": 1})]))
    events = await stack.turn(user, session, "change 1")
    assert any(isinstance(e, ApprovalRequired) for e in events)
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.outcome is TurnOutcome.AWAITING_APPROVAL
    assert [c.id for c in ended.pending] == ["call_9"]
    assert stack.tools.calls == []  # nothing ran before the user said so

    stack.fake.enqueue(Script(text="changed"))
    resolved = [
        e
        async for e in stack.engine.resolve(
            ResolveRequest(user, session, [Decision(tool_call_id="call_9", approved=True)])
        )
    ]
    assert stack.tools.calls == [("change", {"x": 1}, user)]
    last = resolved[-1]
    assert isinstance(last, TurnEnded) and last.outcome is TurnOutcome.COMPLETED
    assert last.message.text == "changed"


async def test_a_repeated_request_id_replays_the_first_result(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(text="only once"))
    first = await stack.turn(user, session, "hello", request_id="req-1")
    again = await stack.turn(user, session, "hello", request_id="req-1")
    assert len(again) == 1 and isinstance(again[0], TurnEnded)
    assert isinstance(first[-1], TurnEnded)
    assert again[0].outcome is TurnOutcome.COMPLETED
    assert again[0].message.name == first[-1].message.name
    assert again[0].message.text == "only once"
    assert stack.fake.request_count == 1  # the model was not asked twice
    assert len(await stack.messages(user, session)) == 2


async def test_a_second_turn_on_a_busy_session_is_refused(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["a", "b"], hang_after=1))
    turn = stack.engine.stream_turn(stack.request(user, session, "first"))
    assert isinstance(await anext(turn), TurnStarted)
    with pytest.raises(Aborted) as refused:
        await stack.turn(user, session, "second")
    assert refused.value.reason == "SESSION_BUSY"
    await turn.aclose()


async def _await_approval(stack: EngineStack, user: str, session: str, call_id: str) -> None:
    stack.fake.enqueue(Script(tool_calls=[(call_id, "srv__change", {"x": 1})]))
    ended = (await stack.turn(user, session, "change 1"))[-1]
    assert isinstance(ended, TurnEnded) and ended.outcome is TurnOutcome.AWAITING_APPROVAL


async def test_a_denied_call_never_runs_and_the_model_hears_why(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    await _await_approval(stack, user, session, "call_d")
    stack.fake.enqueue(Script(text="fine, not changed"))
    decision = Decision(tool_call_id="call_d", approved=False, reason="not today")
    events = [e async for e in stack.engine.resolve(ResolveRequest(user, session, [decision]))]
    assert stack.tools.calls == []
    denied = [e.call for e in events if isinstance(e, ToolCallUpdate)]
    assert [(c.id, c.state) for c in denied] == [("call_d", ToolCallState.DENIED)]
    tool_message = stack.fake.requests[-1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "not today" in tool_message["content"]
    last = events[-1]
    assert isinstance(last, TurnEnded) and last.outcome is TurnOutcome.COMPLETED


async def test_a_new_message_denies_what_waits_and_a_late_decision_is_refused(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    await _await_approval(stack, user, session, "call_n")
    stack.fake.enqueue(Script(text="ok"))
    events = await stack.turn(user, session, "never mind")
    denied = [e.call for e in events if isinstance(e, ToolCallUpdate)]
    assert [(c.id, c.state) for c in denied] == [("call_n", ToolCallState.DENIED)]
    late = stack.engine.resolve(
        ResolveRequest(user, session, [Decision(tool_call_id="call_n", approved=True)])
    )
    with pytest.raises(FailedPrecondition) as refused:
        await anext(late)
    assert refused.value.reason == "TOOL_CALL_NOT_PENDING"
    assert stack.tools.calls == []


async def test_an_approval_past_its_ttl_expires(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    await _await_approval(stack, user, session, "call_e")
    stack.engine_config.approval_ttl_seconds = 0  # every waiting call is now too old
    late = stack.engine.resolve(
        ResolveRequest(user, session, [Decision(tool_call_id="call_e", approved=True)])
    )
    with pytest.raises(FailedPrecondition) as refused:
        await anext(late)
    assert refused.value.reason == "TOOL_CALL_NOT_PENDING"
    stored = (await stack.messages(user, session))[-1].tool_calls[0]
    assert (stored.state, stored.result_text) == (
        ToolCallState.DENIED,
        "Not approved: the approval request expired.",
    )


async def test_a_repeated_resolution_replays_and_runs_the_tool_once(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    await _await_approval(stack, user, session, "call_r")
    stack.fake.enqueue(Script(text="changed once"))
    decisions = [Decision(tool_call_id="call_r", approved=True)]
    request = ResolveRequest(user, session, decisions, request_id="res-1")
    first = [e async for e in stack.engine.resolve(request)]
    again = [e async for e in stack.engine.resolve(request)]
    assert stack.tools.calls == [("change", {"x": 1}, user)]
    assert len(again) == 1 and isinstance(again[0], TurnEnded)
    assert isinstance(first[-1], TurnEnded)
    assert again[0].outcome is TurnOutcome.COMPLETED
    assert again[0].message.name == first[-1].message.name


async def test_another_engine_on_the_same_store_resumes_a_waiting_turn(
    stack: EngineStack, user: str
) -> None:
    """Approvals outlive the process that asked: any replica resolves them."""
    session = await stack.new_session(user)
    await _await_approval(stack, user, session, "call_x")
    other = stack.another_engine()
    stack.fake.enqueue(Script(text="done elsewhere"))
    decisions = [Decision(tool_call_id="call_x", approved=True)]
    events = [e async for e in other.resolve(ResolveRequest(user, session, decisions))]
    last = events[-1]
    assert isinstance(last, TurnEnded) and last.outcome is TurnOutcome.COMPLETED
    assert last.message.text == "done elsewhere"
    assert stack.tools.calls == [("change", {"x": 1}, user)]
    other.stop_all()
    await other.drain_writes()


async def test_shutdown_ends_a_running_turn_cancelled_with_its_partial_answer(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["part ", "of it", " never"], hang_after=2))
    turn = stack.engine.stream_turn(stack.request(user, session, "go"))
    seen = ""
    async for event in turn:
        if isinstance(event, TextDelta):
            seen += event.text
            if seen == "part of it":
                stack.engine.stop_all()  # what SIGTERM does past the grace period
        if isinstance(event, TurnEnded):
            ended = event
            break
    assert ended.outcome is TurnOutcome.CANCELLED
    assert ended.error is not None and ended.error.reason == "SERVER_SHUTTING_DOWN"
    await stack.engine.drain_writes()
    answer = (await stack.messages(user, session))[-1]
    assert (answer.text, answer.state) == ("part of it", MessageState.INCOMPLETE)
