"""Tools through the OpenAI-compatible API: the caller's own functions come back as
``tool_calls``; the session's MCP tools run inside, and one that needs approval stops the
turn with the pending call named, resolvable through our API."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from aichat.v1 import resources_pb2 as rpb

from aichat_devtools.fake_llm import Script
from tests.e2e.openai.conftest import MODEL
from tests.support.chat import ChatStack
from tests.support.http import TLS

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "Weather in Oslo?"}]


async def test_the_callers_function_comes_back_as_tool_calls(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    stack.fake.enqueue(Script(tool_calls=[("call_1", "get_weather", {"city": "Oslo"})]))
    reply = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])  # type: ignore[list-item]
    offered = {t["function"]["name"] for t in stack.fake.requests[-1].body["tools"]}
    assert "get_weather" in offered and "tasks__calculate" in offered  # beside the MCP tools
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.type, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("call_1", "function", "get_weather", {"city": "Oslo"})
    ]

    # The caller runs it and sends the whole conversation back with the result.
    stack.fake.enqueue(Script(text="Rain, 12 C."))
    follow_up = await client.chat.completions.create(
        model=MODEL,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            *ASK,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_1", "content": "12 C, rain"},
        ],
    )
    assert follow_up.choices[0].message.content == "Rain, 12 C."
    body = stack.fake.requests[-1].body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool"]
    assert body["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert "12 C, rain" in body["messages"][2]["content"]
    # Stored like a tool-using StreamChat turn: user, the round with its call, the answer.
    session = (follow_up.model_extra or {})["aichat"]["session"]
    stored = await stack.messages(user, session)
    assert [m.role for m in stored] == [rpb.ROLE_USER, rpb.ROLE_ASSISTANT, rpb.ROLE_ASSISTANT]
    assert stored[1].tool_calls[0].result_text == "12 C, rain"
    assert stored[1].tool_calls[0].state == rpb.TOOL_CALL_STATE_SUCCEEDED
    first = await stack.messages(user, (reply.model_extra or {})["aichat"]["session"])
    assert first[-1].tool_calls[0].state == rpb.TOOL_CALL_STATE_RETURNED


async def test_the_callers_function_streams_as_tool_call_deltas(
    client: openai.AsyncOpenAI, stack: ChatStack
) -> None:
    stack.fake.enqueue(
        Script(text="Let me look. ", tool_calls=[("call_9", "get_weather", {"city": "Rome"})])
    )
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        stream=True,  # type: ignore[list-item]
    )
    text, calls, finish = "", {}, None
    async for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or ():
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += call.function.name or "" if call.function else ""
            entry["arguments"] += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Let me look. "
    assert finish == "tool_calls"
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("call_9", "get_weather", {"city": "Rome"})
    ]


async def test_mcp_tools_run_inside(client: openai.AsyncOpenAI, stack: ChatStack) -> None:
    stack.fake.enqueue(
        Script(text="Computing. ", tool_calls=[("c1", "tasks__calculate", {"expression": "6*7"})]),
        Script(text="It is 42."),
    )
    reply = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "calculate 6*7"}]
    )
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == "Computing. It is 42."
    assert reply.choices[0].message.tool_calls is None  # run here, not the caller's
    assert "42" in str(stack.fake.requests[-1].body["messages"][-1]["content"])


async def test_a_tool_that_needs_approval_stops_the_turn_with_the_call_named(
    base_url: str, client: openai.AsyncOpenAI, stack: ChatStack, token: str, user: str
) -> None:
    stack.fake.enqueue(
        Script(tool_calls=[("c-add", "tasks__add_task", {"title": "water the plants"})])
    )
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "add a task"}], stream=True
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "tasks__add_task (call c-add)" in text and "approval" in text
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    extra = (last.model_extra or {})["aichat"]
    assert extra["outcome"] == "awaiting_approval"
    assert [(c["id"], c["function"]["name"]) for c in extra["pending_tool_calls"]] == [
        ("c-add", "tasks__add_task")
    ]
    # Resolved through our API (the REST binding, same token), the turn goes on there.
    session_id = extra["session"].removeprefix("sessions/")
    stack.fake.enqueue(Script(text="Added."))
    async with httpx2.AsyncClient(verify=TLS, timeout=20) as http:
        resolved = await http.post(
            f"{base_url}/chat/sessions/{session_id}:resolveToolCalls",
            json={"decisions": [{"toolCallId": "c-add", "approved": True}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert resolved.status_code == 200, resolved.text
    stored = await stack.messages(user, extra["session"])
    assert stored[-1].text == "Added."
    assert stored[1].tool_calls[0].state == rpb.TOOL_CALL_STATE_SUCCEEDED


async def test_the_callers_tools_need_no_session(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],  # type: ignore[list-item]
            extra_headers={"X-Aichat-Session": session},
        )
    assert (refused.value.param, refused.value.code) == ("tools", "unsupported_parameter")


async def test_a_function_may_not_take_an_mcp_tools_name(client: openai.AsyncOpenAI) -> None:
    clash = {**WEATHER, "function": {**WEATHER["function"], "name": "tasks__calculate"}}
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=MODEL, messages=ASK, tools=[clash])  # type: ignore[list-item]
    assert refused.value.param == "tools"


async def test_tool_choice_none_offers_no_tools(
    client: openai.AsyncOpenAI, stack: ChatStack
) -> None:
    stack.fake.enqueue(Script(text="no tools"))
    await client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER],
        tool_choice="none",  # type: ignore[list-item]
    )
    assert "tools" not in stack.fake.requests[-1].body
