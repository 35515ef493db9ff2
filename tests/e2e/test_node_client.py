"""The contract from another language: a Node @grpc/grpc-js client against the real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import google.api
import pytest

from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.reasoning_models import reasoning_stack
from tests.support.tools import ROOT, run

pytestmark = pytest.mark.timeout(60)

NODE_DIR = ROOT / "tests" / "e2e" / "node"
GOOGLE_PROTOS = Path(google.api.__path__[0]).parent.parent


@pytest.fixture
async def stack(sqlite_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack("openai", sqlite_url) as s:
        yield s


async def node(stack: ChatStack, scenario: str, user: str) -> dict:  # type: ignore[type-arg]
    env = {
        "TARGET": stack.server.target,
        "AICHAT_USER": user,
        "PROTO_ROOT": str(ROOT / "proto"),
        "GOOGLE_PROTOS": str(GOOGLE_PROTOS),
    }
    code, out, err = await run("node", str(NODE_DIR / "client.js"), scenario, limit=30, env=env)
    assert code == 0, err
    return json.loads(out)


async def test_node_streams_a_turn(stack: ChatStack, user: str) -> None:
    stack.fake.enqueue(Script(tokens=["Hi ", "from ", "Python"]))
    result = await node(stack, "turn", user)
    turn = result["turn"]
    assert turn["code"] == "OK"
    assert turn["kinds"][0] == "turn_started" and turn["kinds"][-1] == "turn_ended"
    assert turn["text"] == "Hi from Python"
    assert turn["outcome"] == "TURN_OUTCOME_COMPLETED"


async def test_node_cancels_a_stream(stack: ChatStack, user: str) -> None:
    stack.fake.enqueue(Script(tokens=[f"t{i} " for i in range(300)], token_delay=0.01))
    result = await node(stack, "cancel", user)
    assert result["turn"]["code"] == "CANCELLED"
    await stack.fake.wait_disconnect(within=2.0)


async def test_node_hits_a_deadline(stack: ChatStack, user: str) -> None:
    stack.fake.enqueue(Script(tokens=["stuck"], hang_after=1))
    result = await node(stack, "deadline", user)
    assert result["turn"]["code"] == "DEADLINE_EXCEEDED"


async def test_node_reads_error_info(stack: ChatStack, user: str) -> None:
    result = await node(stack, "errors", user)
    assert result["error"]["code"] == "NOT_FOUND"
    assert result["error"]["errorInfo"]["reason"] == "SESSION_NOT_FOUND"
    assert result["error"]["errorInfo"]["domain"] == "aichat.example.com"


async def test_node_reads_a_resumed_stream(stack: ChatStack, user: str) -> None:
    import asyncio

    from tests.support.resume import TOKENS_200, paced_200

    gate = asyncio.Event()
    stack.fake.enqueue(paced_200(gate))

    async def open_gate_once_resumed() -> None:
        # Held until Node's resumed stream reads the running turn: then the rest comes.
        log = stack.server.app.turn_log
        while not log._turns:  # noqa: ASYNC110 - the server's own state, no event to wait on
            await asyncio.sleep(0.005)
        buf = next(iter(log._turns.values()))
        caller = buf.readers[0]  # the detached turn's own caller, there from its start
        while not (buf.next_seq > 50 and any(r is not caller for r in buf.readers)):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        gate.set()

    opener = asyncio.create_task(open_gate_once_resumed())
    try:
        result = (await node(stack, "resume", user))["resume"]
    finally:
        gate.set()
        opener.cancel()
    assert result["seen"] == list(range(1, 51))
    assert result["rest"] == list(range(51, 51 + len(result["rest"])))
    assert result["kinds"][-1] == "turn_ended" and len(result["turns"]) == 1
    assert result["text"] == "".join(TOKENS_200) == result["stored"]


async def test_node_reads_reasoning_usage_and_cost(
    sqlite_url: str, tmp_path: Path, user: str
) -> None:
    thought = "Two and two make four."
    async with reasoning_stack(sqlite_url, tmp_path) as stack:
        stack.fake.enqueue(
            Script(reasoning=thought, text="Four.", input_tokens=1000, output_tokens=500)
        )
        result = (await node(stack, "reasoning", user))["reasoning"]
        assert stack.fake.requests[-1].body["thinking"]["budget_tokens"] == 1500
    assert result["code"] == "OK" and result["text"] == "Four."
    assert result["kinds"][1] == "reasoning_delta" and result["thought"] == thought
    usage = result["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == ("1000", "500")  # longs: String
    assert int(usage["reasoning_tokens"]) > 0
    assert usage["cost"] == {"currency_code": "EUR", "units": "0", "nanos": 10_500_000}
    assert result["stored"] == {"text": thought, "redacted_blocks": 0}
    assert result["today"]["cost"] == usage["cost"] and result["today"]["model_calls"] == "1"


async def test_node_branches_a_conversation(stack: ChatStack, user: str) -> None:
    """Issue 25 from Node: RegenerateAnswer and EditMessage stream like StreamChat, every
    message carries its parent and its place among its siblings, SwitchBranch, ForkSession."""
    for answer in ("A1", "A2", "A2 again", "A2 edited"):
        stack.fake.enqueue(Script(text=answer))
    tree = (await node(stack, "tree", user))["tree"]
    assert tree["again"]["code"] == "OK" and tree["again"]["kinds"][-1] == "turn_ended"
    assert tree["again"]["user_message"] == tree["q2"]  # no new user message
    assert tree["again"]["stored"] == "A2 again" and tree["again"]["text"] == "A2 again"
    assert tree["edited"]["outcome"] == "TURN_OUTCOME_COMPLETED"
    after_edit = tree["afterEdit"]
    assert [m["text"] for m in after_edit] == ["Q1", "A1", "Q2 edited", "A2 edited"]
    assert (after_edit[2]["index"], after_edit[2]["count"]) == (1, 2)
    assert (
        after_edit[2]["previous"] == tree["q2"] and after_edit[2]["parent"] == after_edit[1]["name"]
    )
    # Back to the first Q2: its newest descendant is the regenerated answer.
    after_switch = tree["afterSwitch"]
    assert [m["text"] for m in after_switch] == ["Q1", "A1", "Q2", "A2 again"]
    assert (after_switch[3]["index"], after_switch[3]["count"]) == (1, 2)
    assert tree["active"] == after_switch[3]["name"]
    assert tree["forked"] == ["Q1", "A1", "Q2", "A2"]
    assert tree["missing"]["code"] == "NOT_FOUND"
    assert tree["missing"]["errorInfo"]["reason"] == "MESSAGE_NOT_FOUND"
    assert tree["all"] == ["Q1", "A1", "Q2", "A2", "A2 again", "Q2 edited", "A2 edited"]
