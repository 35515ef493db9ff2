"""request_id (AIP-155) under concurrency and misuse (issue 23 items 8 and 9).

A concurrent duplicate of a turn joins the first turn's stream instead of calling the
model itself: exactly one upstream call, counted by the fake upstream, whether both
requests reach one replica or two (PostgreSQL). A request_id reused for a different
request is refused (INVALID_ARGUMENT, REQUEST_ID_REUSED), and nothing of it is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc
from aichat.v1 import tool_service_pb2 as tpb

from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import error_info, md
from tests.support.replicas import cluster, read_rest
from tests.support.tool_stack import tool_stack

pytestmark = pytest.mark.timeout(90)

PAIRS = 10


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack("openai", database_url) as s:
        yield s


def gated(gate: asyncio.Event) -> Script:
    return Script(tokens=[f"t{i:02d} " for i in range(20)], gate_after=5, gate=gate)


async def duplicate_pair(
    fake: FakeLLMServer,
    first: chat_service_pb2_grpc.ChatServiceStub,
    second: chat_service_pb2_grpc.ChatServiceStub,
    user: str,
    session: str,
    request_id: str,
) -> tuple[list[cpb.StreamChatResponse], list[cpb.StreamChatResponse]]:
    """The same request sent twice at once (through ``first`` and ``second``); each
    stream read whole once both have begun."""
    gate = asyncio.Event()
    fake.enqueue(gated(gate))
    request = cpb.StreamChatRequest(session=session, text="same question", request_id=request_id)
    calls = [stub.StreamChat(request, metadata=md(user)) for stub in (first, second)]
    try:
        heads = await asyncio.gather(*(c.read() for c in calls))  # both streams began
    finally:
        gate.set()
    tails = await asyncio.gather(*(read_rest(c) for c in calls))
    return [heads[0], *tails[0]], [heads[1], *tails[1]]


def check_pair(a: list[cpb.StreamChatResponse], b: list[cpb.StreamChatResponse]) -> None:
    # The duplicate got the first turn's own events: same turn, same numbers, same bytes.
    assert [e.SerializeToString() for e in a] == [e.SerializeToString() for e in b]
    assert [e.sequence for e in a] == list(range(1, len(a) + 1))
    ended = a[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    assert ended.message.text == "".join(f"t{i:02d} " for i in range(20))


async def test_concurrent_duplicates_on_one_replica_call_the_model_once(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    for i in range(PAIRS):
        before = stack.fake.request_count
        a, b = await duplicate_pair(
            stack.fake, stack.server.chat, stack.server.chat, user, session, f"dup-{i}"
        )
        assert stack.fake.request_count - before == 1, f"pair {i}"
        check_pair(a, b)
    stored = await stack.messages(user, session)
    assert len(stored) == 2 * PAIRS  # one user message and one answer per pair


async def test_a_concurrent_send_message_duplicate_waits_for_the_first_turn(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    gate = asyncio.Event()
    stack.fake.enqueue(gated(gate))
    request: dict[str, Any] = {"session": session, "text": "same", "request_id": "mixed-1"}
    streamed = stack.server.chat.StreamChat(cpb.StreamChatRequest(**request), metadata=md(user))
    try:
        first = await streamed.read()
        unary = asyncio.ensure_future(
            stack.server.chat.SendMessage(cpb.SendMessageRequest(**request), metadata=md(user))
        )
        done, _ = await asyncio.wait({unary}, timeout=0.5)
        assert not done  # it waits for the first turn (ABORTED was the old answer)
    finally:
        gate.set()
    events = [first, *await read_rest(streamed)]
    response = await unary
    assert stack.fake.request_count == 1
    ended = events[-1].turn_ended
    assert response.outcome == cpb.TURN_OUTCOME_COMPLETED
    assert response.message == ended.message
    assert response.user_message.name == first.turn_started.user_message


async def test_concurrent_duplicates_across_two_replicas_call_the_model_once(
    pg_database_url: str, tmp_path: Path, user: str
) -> None:
    async with cluster(pg_database_url, tmp_path) as c:
        a = await c.start("a", replica_id="replica-a")
        b = await c.start("b", replica_id="replica-b")
        session = await a.new_session(user)
        for i in range(PAIRS):
            before = c.fake.request_count
            first, second = (a, b) if i % 2 else (b, a)
            x, y = await duplicate_pair(c.fake, first.chat, second.chat, user, session, f"x-{i}")
            assert c.fake.request_count - before == 1, f"pair {i}"
            check_pair(x, y)


async def test_a_request_id_reused_for_another_request_is_refused(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["first"]))
    first = await stack.turn(user, session, "one", request_id="reuse-1")
    assert first[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    other_session = await stack.new_session(user)
    for request in (
        cpb.StreamChatRequest(session=session, text="two", request_id="reuse-1"),
        cpb.StreamChatRequest(
            session=session,
            text="one",
            request_id="reuse-1",
            options=cpb.ChatOptions(model="gpt-test", temperature=0.5),
        ),
        cpb.StreamChatRequest(session=other_session, text="one", request_id="reuse-1"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.turn(user, request.session, request.text, **_rest(request))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(refused.value)
        assert info.reason == "REQUEST_ID_REUSED"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.server.chat.SendMessage(
            cpb.SendMessageRequest(session=session, text="two", request_id="reuse-1"),
            metadata=md(user),
        )
    assert error_info(refused.value).reason == "REQUEST_ID_REUSED"
    # The same request again still replays its result; nothing else was stored or sent.
    again = await stack.turn(user, session, "one", request_id="reuse-1")
    assert again[-1].turn_ended.message == first[-1].turn_ended.message
    assert stack.fake.request_count == 1
    assert len(await stack.messages(user, session)) == 2
    assert await stack.messages(user, other_session) == []


def _rest(request: cpb.StreamChatRequest) -> dict[str, Any]:
    extra: dict[str, Any] = {"request_id": request.request_id}
    if request.HasField("options"):
        extra["options"] = request.options
    return extra


async def test_a_resolution_request_id_reused_for_other_decisions_is_refused(
    sqlite_url: str, tmp_path: Path, user: str
) -> None:
    async with tool_stack("openai", sqlite_url, tmp_path) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(
            Script(tool_calls=[("c1", "tasks__add_task", {"title": "milk"})]),
            Script(tokens=["Added."]),
        )
        asked = await stack.turn(user, session, "add milk")
        assert asked[-1].turn_ended.outcome == cpb.TURN_OUTCOME_AWAITING_APPROVAL

        def resolve(approved: bool) -> Any:
            return stack.server.chat.ResolveToolCalls(
                cpb.ResolveToolCallsRequest(
                    session=session,
                    decisions=[cpb.ToolCallDecision(tool_call_id="c1", approved=approved)],
                    request_id="res-reuse",
                ),
                metadata=md(user),
            )

        done = [e async for e in resolve(True)]
        assert done[-1].turn_ended.message.text == "Added."
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            [e async for e in resolve(False)]
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(refused.value).reason == "REQUEST_ID_REUSED"
        again = [e async for e in resolve(True)]  # the same decisions: the stored result
        assert again[-1].turn_ended.message == done[-1].turn_ended.message
        assert stack.fake.request_count == 2


async def test_concurrent_resolution_duplicates_run_once_and_share_a_stream(
    sqlite_url: str, tmp_path: Path, user: str
) -> None:
    """Two ResolveToolCalls with one request_id at once: the tool runs and the model is
    called once, and the duplicate reads the first resolution's own stream."""
    async with tool_stack("openai", sqlite_url, tmp_path) as stack:
        session = await stack.new_session(user)
        gate = asyncio.Event()
        stack.fake.enqueue(
            Script(tool_calls=[("c1", "tasks__add_task", {"title": "once"})]), gated(gate)
        )
        asked = await stack.turn(user, session, "add it once")
        assert asked[-1].turn_ended.outcome == cpb.TURN_OUTCOME_AWAITING_APPROVAL
        request = cpb.ResolveToolCallsRequest(
            session=session,
            decisions=[cpb.ToolCallDecision(tool_call_id="c1", approved=True)],
            request_id="res-dup",
        )
        calls = [stack.server.chat.ResolveToolCalls(request, metadata=md(user)) for _ in "ab"]
        try:
            heads = await asyncio.gather(*(c.read() for c in calls))
        finally:
            gate.set()
        a, b = [[head, *await read_rest(c)] for head, c in zip(heads, calls, strict=True)]
        check_pair(a, b)
        assert stack.fake.request_count == 2  # the turn that asked, and one resolution
        listing = await stack.server.tools.CallTool(
            tpb.CallToolRequest(name="toolServers/tasks/tools/list_tasks"), metadata=md(user)
        )
        assert listing.result_text.count("once") == 1  # the tool ran once
