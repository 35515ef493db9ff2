"""Which message is which in a turn that used tools (issue 18, item 6).

Each round of a turn is a message of its own: the first holds the first round's text
and its tool calls, the last is the final answer. turn_started names the first,
turn_ended carries the last, and turn_ended.answer_messages names every one in order,
the same resources ListMessages shows (and a replay reports the same).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aichat.v1 import resources_pb2 as rpb

from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack
from tests.support.tool_stack import tool_stack

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def stack(sqlite_url: str, tmp_path: Path) -> AsyncIterator[ChatStack]:
    async with tool_stack("openai", sqlite_url, tmp_path) as s:
        yield s


async def test_a_tool_turn_names_each_answer_message(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(
        Script(
            tokens=["Let me compute. "],
            tool_calls=[("c1", "tasks__calculate", {"expression": "6*7"})],
        ),
        Script(tokens=["It is ", "42."]),
    )
    events = await stack.turn(user, session, "what is 6*7?", request_id="calc-1")
    started, ended = events[0].turn_started, events[-1].turn_ended

    stored = [m for m in await stack.messages(user, session) if m.role == rpb.ROLE_ASSISTANT]
    assert [m.text for m in stored] == ["Let me compute. ", "It is 42."]
    assert stored[0].tool_calls[0].tool_name == "tasks__calculate"
    # turn_started names the first answer message, turn_ended carries the last.
    assert started.answer_message == stored[0].name
    assert ended.message.name == stored[1].name
    assert list(ended.answer_messages) == [m.name for m in stored]

    replay = (await stack.turn(user, session, "what is 6*7?", request_id="calc-1"))[-1]
    assert list(replay.turn_ended.answer_messages) == [m.name for m in stored]


async def test_a_turn_without_tools_has_one_answer_message(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(text="hello"))
    events = await stack.turn(user, session, "hi")
    started, ended = events[0].turn_started, events[-1].turn_ended
    assert list(ended.answer_messages) == [started.answer_message] == [ended.message.name]
