"""The OpenAI-compatible API's turns on the engine: a conversation given whole, the caller's
own functions handed back, stop sequences and the end user passed upstream."""

from __future__ import annotations

import pytest

from aichat_backend.domain import MessageState, Role, ToolCall, ToolCallState
from aichat_backend.engine.events import TextDelta, ToolCallUpdate, TurnEnded, TurnOutcome
from aichat_backend.engine.requests import Conversation, GivenMessage
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import ToolSpec
from aichat_backend.reasons import Reason
from aichat_devtools.fake_llm import Script
from tests.engine.conftest import EngineStack

pytestmark = pytest.mark.timeout(20)

WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
)


def _sent(stack: EngineStack) -> list[tuple[str, object]]:
    body = stack.fake.requests[-1].body
    return [(m["role"], m.get("content")) for m in body["messages"]]


async def test_a_given_conversation_is_what_the_model_reads_and_what_is_stored(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user, system_prompt="Be brief.")
    # Stored history of the session is NOT what the model reads when one is given.
    stack.fake.enqueue(Script(text="stored answer"))
    await stack.turn(user, session, "stored question")
    conversation = Conversation(
        earlier=[
            GivenMessage(Role.USER, "What is 2+2?"),
            GivenMessage(Role.ASSISTANT, "4."),
        ]
    )
    stack.fake.enqueue(Script(text="6."))
    events = await stack.turn(user, session, "And 3+3?", conversation=conversation)
    assert isinstance(events[-1], TurnEnded) and events[-1].outcome is TurnOutcome.COMPLETED
    assert _sent(stack) == [
        ("system", "Be brief."),
        ("user", "What is 2+2?"),
        ("assistant", "4."),
        ("user", "And 3+3?"),
    ]
    stored = await stack.messages(user, session)
    assert [(m.role, m.text) for m in stored[2:]] == [
        (Role.USER, "What is 2+2?"),
        (Role.ASSISTANT, "4."),
        (Role.USER, "And 3+3?"),
        (Role.ASSISTANT, "6."),
    ]
    assert [m.seq for m in stored] == list(range(1, 7))


async def test_the_callers_function_is_handed_back_not_run(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(
        Script(text="Checking. ", tool_calls=[("call_w1", "get_weather", {"city": "Oslo"})])
    )
    events = await stack.turn(user, session, "Weather in Oslo?", client_tools=(WEATHER,))
    sent = stack.fake.requests[-1].body
    # Offered beside the session's own tools.
    assert {t["function"]["name"] for t in sent["tools"]} == {
        "srv__look",
        "srv__change",
        "get_weather",
    }
    updates = [e.call for e in events if isinstance(e, ToolCallUpdate)]
    assert [(c.id, c.tool_name, c.arguments, c.state) for c in updates] == [
        ("call_w1", "get_weather", {"city": "Oslo"}, ToolCallState.RETURNED)
    ]
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.outcome is TurnOutcome.COMPLETED
    assert ended.message.finish_reason == "tool_calls"
    assert ended.message.text == "Checking. "
    assert stack.tools.calls == []  # nothing ran here
    stored = (await stack.messages(user, session))[-1]
    assert stored.state is MessageState.COMPLETE
    assert stored.finish_reason == "tool_calls"
    assert [(c.id, c.state) for c in stored.tool_calls] == [("call_w1", ToolCallState.RETURNED)]
    assert stack.engine.active_turns == 0


async def test_a_round_mixing_both_kinds_runs_neither_server_tool(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(
        Script(tool_calls=[("c1", "srv__look", {"x": 1}), ("c2", "get_weather", {"city": "X"})])
    )
    events = await stack.turn(user, session, "both", client_tools=(WEATHER,))
    calls = {e.call.id: e.call for e in events if isinstance(e, ToolCallUpdate)}
    assert calls["c2"].state is ToolCallState.RETURNED
    assert calls["c1"].state is ToolCallState.FAILED and "not run" in calls["c1"].result_text
    assert stack.tools.calls == []


async def test_the_callers_results_continue_the_turn(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    answered = ToolCall(
        id="call_w1",
        tool_name="get_weather",
        arguments={"city": "Oslo"},
        state=ToolCallState.SUCCEEDED,
        result_text="12 C and rain",
    )
    conversation = Conversation(rounds=[GivenMessage(Role.ASSISTANT, "", tool_calls=[answered])])
    stack.fake.enqueue(Script(text="It rains, 12 C."))
    events = await stack.turn(
        user, session, "Weather in Oslo?", conversation=conversation, client_tools=(WEATHER,)
    )
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It rains, 12 C."
    body = stack.fake.requests[-1].body
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assert body["messages"][1]["tool_calls"][0]["id"] == "call_w1"
    assert body["messages"][2]["tool_call_id"] == "call_w1"
    assert "12 C and rain" in body["messages"][2]["content"]
    stored = await stack.messages(user, session)
    assert [(m.role, m.finish_reason) for m in stored] == [
        (Role.USER, ""),
        (Role.ASSISTANT, "tool_calls"),
        (Role.ASSISTANT, "stop"),
    ]
    assert stored[1].tool_calls[0].result_text == "12 C and rain"


async def test_stop_and_end_user_reach_the_provider(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(text="one two"))
    await stack.turn(user, session, "count", stop=("three", "END"), end_user="customer-7")
    body = stack.fake.requests[-1].body
    assert body["stop"] == ["three", "END"]
    assert body["user"] == "customer-7"


async def test_no_tools_are_offered_when_the_caller_says_none(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(text="ok"))
    await stack.turn(user, session, "hi", client_tools=(WEATHER,), offer_tools=False)
    assert "tools" not in stack.fake.requests[-1].body


async def test_a_callers_function_may_not_take_a_session_tools_name(
    stack: EngineStack, user: str
) -> None:
    session = await stack.new_session(user)
    clash = ToolSpec(name="srv__look", description="mine", input_schema={"type": "object"})
    with pytest.raises(InvalidArgument) as refused:
        await stack.turn(user, session, "hi", client_tools=(clash,))
    assert refused.value.field == "tools"
    assert stack.fake.requests == []


async def test_rounds_must_be_answers_with_calls(stack: EngineStack, user: str) -> None:
    session = await stack.new_session(user)
    conversation = Conversation(rounds=[GivenMessage(Role.ASSISTANT, "just text")])
    with pytest.raises(InvalidArgument) as refused:
        await stack.turn(user, session, "hi", conversation=conversation)
    assert refused.value.reason == Reason.INVALID_CONVERSATION
    assert await stack.messages(user, session) == []
