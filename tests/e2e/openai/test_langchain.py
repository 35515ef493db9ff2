"""LangChain's ``ChatOpenAI`` (langchain-openai from PyPI), pointed at aichat through Envoy.

LangChain is imported by the tests, not the module: it costs ~0.7 s of CPU to import, and
every parallel worker collects this module while only one runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import openai
import pytest

from aichat_devtools.fake_llm import Script
from tests.e2e.openai.conftest import MODEL
from tests.support.chat import ChatStack

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"12 C in {city}"


def chat(base_url: str, token: str, **kw: object) -> ChatOpenAI:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=base_url, api_key=token, model=MODEL, max_retries=0, **kw)  # type: ignore[arg-type]


async def test_chatopenai_invokes_and_streams(base_url: str, token: str, stack: ChatStack) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage

    stack.fake.enqueue(
        Script(tokens=["Bonjour", "!"], input_tokens=6),
        Script(tokens=["Stre", "amed"], token_delay=0.02),
    )
    llm = chat(base_url, token, temperature=0.2)
    reply = await llm.ainvoke([SystemMessage("Speak French."), HumanMessage("Hello")])
    assert reply.content == "Bonjour!"
    assert reply.response_metadata["finish_reason"] == "stop"
    assert reply.usage_metadata is not None and reply.usage_metadata["input_tokens"] == 6
    body = stack.fake.requests[-1].body
    assert body["temperature"] == 0.2
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    parts = [chunk.content async for chunk in llm.astream("Stream please")]
    assert "".join(str(p) for p in parts) == "Streamed"


async def test_chatopenai_tool_calling_round_trip(
    base_url: str, token: str, stack: ChatStack
) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool

    weather = tool(get_weather)
    llm = chat(base_url, token).bind_tools([weather])
    stack.fake.enqueue(Script(tool_calls=[("call_lc", "get_weather", {"city": "Oslo"})]))
    question = HumanMessage("Weather in Oslo?")
    asked = await llm.ainvoke([question])
    assert isinstance(asked, AIMessage)
    assert [(c["id"], c["name"], c["args"]) for c in asked.tool_calls] == [
        ("call_lc", "get_weather", {"city": "Oslo"})
    ]
    result = ToolMessage(weather.invoke({"city": "Oslo"}), tool_call_id="call_lc")
    stack.fake.enqueue(Script(text="It is 12 C."))
    final = await llm.ainvoke([question, asked, result])
    assert final.content == "It is 12 C."
    assert "12 C in Oslo" in str(stack.fake.requests[-1].body["messages"][-1]["content"])


async def test_chatopenai_raises_the_sdks_errors(base_url: str, token: str) -> None:
    from langchain_openai import ChatOpenAI

    with pytest.raises(openai.NotFoundError):
        await ChatOpenAI(
            base_url=base_url,
            api_key=token,
            model="no-such-model",
            max_retries=0,  # type: ignore[arg-type]
        ).ainvoke("hi")
