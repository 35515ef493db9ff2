"""What hangs off a message stays with it when the conversation branches (issue 25, item
5), and what happens to what is still open: a pending approval when the user regenerates
or edits above it, a running turn when the user switches branch. Real server, real MCP
tasks server, SQLite and PostgreSQL.

Defined here:
- A regenerate or an edit supersedes every call still waiting for approval in the session:
  the new turn's stream shows them DENIED, they stay (denied) with the answer that asked,
  on its branch, and a later ResolveToolCalls on them is refused FAILED_PRECONDITION
  TOOL_CALL_SUPERSEDED.
- A turn keeps running when its user switches branch: it ends on its own branch, and the
  active path stays where the user switched to.
- Feedback, files and tool calls stay with their message on its branch; an edit without
  files sends the edited message's files again (unless drop_attachments).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import Script
from tests.integration.test_conversation_tree import edit, listed, regenerate, say, seen, texts
from tests.support.chat import ChatStack
from tests.support.grpc_helpers import error_info, md
from tests.support.tool_stack import tool_stack

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def stack(database_url: str, tmp_path: Path) -> AsyncIterator[ChatStack]:
    async with tool_stack("openai", database_url, tmp_path) as s:
        yield s


async def _ask_approval(stack: ChatStack, user: str, session: str, call_id: str) -> list[str]:
    stack.fake.enqueue(Script(tool_calls=[(call_id, "tasks__add_task", {"title": "milk"})]))
    events = await stack.turn(user, session, "remind me to buy milk")
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_AWAITING_APPROVAL
    started = events[0].turn_started
    return [started.user_message, started.answer_message]


async def _refused_resolution(stack: ChatStack, user: str, session: str, call_id: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        call = stack.server.chat.ResolveToolCalls(
            cpb.ResolveToolCallsRequest(
                session=session,
                decisions=[cpb.ToolCallDecision(tool_call_id=call_id, approved=True)],
            ),
            metadata=md(user),
        )
        async for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    return error_info(err.value).reason


@pytest.mark.parametrize("how", ["regenerate", "edit"])
async def test_a_pending_approval_above_which_the_user_branches_is_superseded(
    stack: ChatStack, user: str, how: str
) -> None:
    session = await stack.new_session(user)
    await say(stack, user, session, "Q1", "A1")
    question, asking = await _ask_approval(stack, user, session, "p1")
    if how == "regenerate":
        events = await regenerate(stack, user, asking, "No task then.")
    else:
        events = await edit(stack, user, question, "never mind the milk", "OK.")
    denied = [e.tool_call for e in events if e.HasField("tool_call")]
    assert [(c.id, c.state) for c in denied] == [("p1", rpb.TOOL_CALL_STATE_DENIED)]
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    assert await _refused_resolution(stack, user, session, "p1") == "TOOL_CALL_SUPERSEDED"
    # The call stays, denied, with the answer that asked, on that answer's branch.
    old = await listed(stack, user, session, branch=asking)
    assert old[-1].name == asking
    assert [(c.id, c.state) for c in old[-1].tool_calls] == [("p1", rpb.TOOL_CALL_STATE_DENIED)]
    # A plain new message still denies as before (TOOL_CALL_NOT_PENDING, not superseded).
    await _ask_approval(stack, user, session, "p2")
    await say(stack, user, session, "something else", "Sure.")
    assert await _refused_resolution(stack, user, session, "p2") == "TOOL_CALL_NOT_PENDING"


async def test_a_pending_approval_on_another_branch_can_still_be_resolved(
    stack: ChatStack, user: str
) -> None:
    """Switching away does not decide anything: the waiting call's branch goes on when it
    is approved, and the active path stays where the user is."""
    session = await stack.new_session(user)
    events = await say(stack, user, session, "Q1", "A1")
    a1 = events[0].turn_started.answer_message
    _, asking = await _ask_approval(stack, user, session, "p1")
    await stack.server.sessions.SwitchBranch(
        spb.SwitchBranchRequest(name=a1, exact=True), metadata=md(user)
    )
    stack.fake.enqueue(Script(text="Added."))
    call = stack.server.chat.ResolveToolCalls(
        cpb.ResolveToolCallsRequest(
            session=session, decisions=[cpb.ToolCallDecision(tool_call_id="p1", approved=True)]
        ),
        metadata=md(user),
    )
    resumed = [e async for e in call]
    assert resumed[-1].turn_ended.message.text == "Added."
    got = await stack.server.sessions.GetSession(
        spb.GetSessionRequest(name=session), metadata=md(user)
    )
    assert got.active_message == a1
    branch = await listed(stack, user, session, branch=asking)
    assert texts(branch)[-1] == "Added." and branch[-1].parent == asking


async def test_a_running_turn_ends_on_its_branch_when_the_user_switches(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    events = await say(stack, user, session, "Q1", "A1")
    a1 = events[0].turn_started.answer_message
    gate = asyncio.Event()
    stack.fake.enqueue(Script(tokens=["slow ", "answer"], gate_after=1, gate=gate))
    call = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text="Q2", options=cpb.ChatOptions(detached=True)),
        metadata=md(user),
    )
    first = await call.read()
    answer = first.turn_started.answer_message
    while (await call.read()).WhichOneof("event") != "text_delta":
        pass
    # While it runs: the user goes back to A1 (and may read it); a new message must wait.
    switched = await stack.server.sessions.SwitchBranch(
        spb.SwitchBranchRequest(name=a1, exact=True), metadata=md(user)
    )
    assert switched.active_message == a1 and switched.active_turn == first.turn
    assert texts(await listed(stack, user, session)) == ["Q1", "A1"]
    with pytest.raises(grpc.aio.AioRpcError) as busy:
        await say(stack, user, session, "Q2 again", "x")
    assert error_info(busy.value).reason == "SESSION_BUSY"
    stack.fake._scripts.clear()
    gate.set()
    rest = []
    while (event := await call.read()) is not grpc.aio.EOF:
        rest.append(event)
    assert rest[-1].turn_ended.message.text == "slow answer"
    got = await stack.server.sessions.GetSession(
        spb.GetSessionRequest(name=session), metadata=md(user)
    )
    assert got.active_message == a1  # not pulled back to the turn's branch
    branch = await listed(stack, user, session, branch=answer)
    assert texts(branch) == ["Q1", "A1", "Q2", "slow answer"]


async def test_feedback_and_files_stay_with_their_message(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    notes = rpb.Attachment(filename="notes.txt", mime_type="text/plain", content=b"feed the cat")
    stack.fake.enqueue(Script(text="A1"))
    events = [
        e
        async for e in stack.server.chat.StreamChat(
            cpb.StreamChatRequest(session=session, text="Summarize", attachments=[notes]),
            metadata=md(user),
        )
    ]
    q1, a1 = events[0].turn_started.user_message, events[0].turn_started.answer_message
    await stack.server.sessions.SetMessageFeedback(
        spb.SetMessageFeedbackRequest(name=a1, rating=rpb.FEEDBACK_RATING_THUMBS_DOWN),
        metadata=md(user),
    )
    await regenerate(stack, user, a1, "A1 again")
    assert "feed the cat" in str(seen(stack))  # the question's file, sent again
    # An edit without files sends the edited message's files again...
    edited = await edit(stack, user, q1, "Summarize briefly", "Short.")
    assert "feed the cat" in str(seen(stack))
    path = await listed(stack, user, session)
    assert [a.filename for a in path[0].attachments] == ["notes.txt"]
    assert path[0].name == edited[0].turn_started.user_message
    # ... unless told not to.
    await edit(stack, user, q1, "Just say hi", "Hi.", drop_attachments=True)
    assert "feed the cat" not in str(seen(stack))
    assert list((await listed(stack, user, session))[0].attachments) == []
    # The first answer keeps its feedback on its own branch.
    old = await listed(stack, user, session, branch=a1)
    assert old[-1].name == a1
    assert old[-1].feedback.rating == rpb.FEEDBACK_RATING_THUMBS_DOWN
    assert [a.filename for a in old[0].attachments] == ["notes.txt"]
    assert base64  # the files travel as bytes in gRPC, base64 only in JSON


async def test_a_regenerate_with_a_request_id_calls_the_model_once(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    events = await say(stack, user, session, "Q1", "A1")
    a1 = events[0].turn_started.answer_message
    before = len(stack.fake.requests)
    first = await regenerate(stack, user, a1, "A1 again", request_id="regen-1")
    again = await regenerate(stack, user, a1, "never used", request_id="regen-1")
    assert len(stack.fake.requests) == before + 1
    assert again[-1].turn_ended.message.name == first[-1].turn_ended.message.name
    assert len(again) == 1  # the first turn's result, not a second turn
    stack.fake._scripts.clear()
    # The same request_id for another request is refused.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await edit(stack, user, events[0].turn_started.user_message, "x", "x", request_id="regen-1")
    assert error_info(err.value).reason == "REQUEST_ID_REUSED"
    stack.fake._scripts.clear()
    assert texts(await listed(stack, user, session, all_branches=True)) == ["Q1", "A1", "A1 again"]
