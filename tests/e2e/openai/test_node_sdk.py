"""The official ``openai`` npm package, unchanged, against aichat through Envoy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb

from aichat_devtools.fake_llm import Script
from tests.e2e.openai.conftest import MODEL, turn_ended
from tests.support.chat import ChatStack
from tests.support.tools import ROOT, run

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

SCRIPT = ROOT / "tests" / "e2e" / "node" / "openai_client.js"


async def node(scenario: str, base_url: str, token: str, **env: str) -> dict[str, Any]:
    variables = {"BASE_URL": base_url, "TOKEN": token, "MODEL": MODEL, **env}
    code, out, err = await run("node", str(SCRIPT), scenario, limit=30, env=variables)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


async def test_node_lists_answers_and_streams(base_url: str, token: str, stack: ChatStack) -> None:
    stack.fake.enqueue(
        Script(tokens=["Hello", " Node"], input_tokens=5),
        Script(tokens=["Streamed", " to", " Node"], token_delay=0.02),
    )
    result = await node("chat", base_url, token)
    assert result["models"] == [MODEL]
    whole = result["whole"]
    assert (whole["object"], whole["content"], whole["finish"]) == (
        "chat.completion",
        "Hello Node",
        "stop",
    )
    assert whole["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert whole["session"].startswith("sessions/")
    streamed = result["stream"]
    assert streamed["objects"] == ["chat.completion.chunk"]
    assert (streamed["text"], streamed["finish"]) == ("Streamed to Node", "stop")
    assert streamed["lastChoices"] == 0 and streamed["usage"]["completion_tokens"] == 3


async def test_node_raises_its_own_error_classes(
    base_url: str, token: str, stack: ChatStack, other_user: str
) -> None:
    theirs = await stack.new_session(other_user)
    result = await node("errors", base_url, token, OTHER_SESSION=theirs)
    assert result["unknownModel"]["class"] == "NotFoundError"
    assert result["unknownModel"]["code"] == "model_not_found"
    assert result["unsupported"]["class"] == "BadRequestError"
    assert result["unsupported"]["param"] == "n"
    assert result["badToken"]["class"] == "AuthenticationError"
    assert result["badToken"]["status"] == 401
    assert result["otherSession"]["class"] == "NotFoundError"
    assert result["otherSession"]["code"] == "session_not_found"


async def test_node_gets_its_functions_back(base_url: str, token: str, stack: ChatStack) -> None:
    stack.fake.enqueue(Script(tool_calls=[("call_n", "get_weather", {"city": "Oslo"})]))
    result = await node("tools", base_url, token)
    assert result == {
        "finish": "tool_calls",
        "calls": [["call_n", "get_weather", {"city": "Oslo"}]],
    }


async def test_node_hanging_up_cancels_the_turn(
    base_url: str, token: str, stack: ChatStack, user: str
) -> None:
    stack.fake.enqueue(Script(tokens=["first ", "second ", "third"], hang_after=2))
    result = await node("cancel", base_url, token)
    assert result["aborted"] is True and result["text"].startswith("first")
    assert result["raised"] in (None, "APIUserAbortError")
    await stack.fake.wait_disconnect(within=10.0)
    ended = await turn_ended(stack, user, result["session"], result["id"])
    assert ended.outcome == cpb.TURN_OUTCOME_CANCELLED
    answer = (await stack.messages(user, result["session"]))[-1]
    assert (answer.state, answer.finish_reason) == (rpb.MESSAGE_STATE_INCOMPLETE, "cancelled")
    assert answer.text.startswith("first")
