"""CancelTurn (issue 28): a detached turn stops at once, its answer so far stored as
INCOMPLETE and its log ending CANCELLED; owner only, idempotent; Session.active_turn
says which turn is answering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import error_info, md
from tests.support.resume import TOKENS_200, cut_after, resume, text_of

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack("openai", database_url) as s:
        yield s


def detached(session: str, text: str = "talk") -> cpb.StreamChatRequest:
    return cpb.StreamChatRequest(session=session, text=text, options=cpb.ChatOptions(detached=True))


async def cancel(stack: ChatStack, user: str, turn: str) -> None:
    await stack.server.chat.CancelTurn(cpb.CancelTurnRequest(name=turn), metadata=md(user))


async def session_of(stack: ChatStack, user: str, session: str) -> rpb.Session:
    return await stack.server.sessions.GetSession(
        spb.GetSessionRequest(name=session), metadata=md(user)
    )


def reason_of(status: object) -> str:
    from google.rpc import error_details_pb2

    for detail in status.details:  # type: ignore[attr-defined]
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


async def test_cancel_stops_a_detached_turn_at_once_and_keeps_what_it_made(
    stack: ChatStack, user: str, other_user: str
) -> None:
    session = await stack.new_session(user)
    # Slow enough that it would run for 10 s: nothing but the cancel ends it in time.
    stack.fake.enqueue(Script(tokens=TOKENS_200, token_delay=0.05))
    seen = await cut_after(stack.server.chat, user, detached(session), 5)  # the caller leaves
    turn = seen[0].turn

    # The turn runs on without its caller, and its session says so (Get and List alike).
    assert (await session_of(stack, user, session)).active_turn == turn
    listed = await stack.server.sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(user))
    assert [s.active_turn for s in listed.sessions if s.name == session] == [turn]

    # Someone else cannot cancel it, nor learn that it exists.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cancel(stack, other_user, turn)
    assert (refused.value.code(), error_info(refused.value).reason) == (
        grpc.StatusCode.NOT_FOUND,
        "TURN_NOT_FOUND",
    )
    assert (await session_of(stack, user, session)).active_turn == turn

    disconnects = stack.fake.stream_disconnects
    await cancel(stack, user, turn)
    # The model call stops at once (well before the script's 10 s) ...
    await stack.fake.wait_disconnect(within=5.0, count=disconnects + 1)
    # ... and the turn's events end CANCELLED, with everything it produced and no more.
    events = await resume(stack.server.chat, user, turn, 0)
    ended = events[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_CANCELLED
    assert reason_of(ended.error) == "TURN_CANCELLED"
    assert "CancelTurn" in ended.error.message
    produced = text_of(events)
    assert produced.startswith(text_of(seen)) and len(produced) < len("".join(TOKENS_200))
    stored = (await stack.messages(user, session))[-1]
    assert stored.state == rpb.MESSAGE_STATE_INCOMPLETE
    assert stored.text == produced == ended.message.text
    assert (await session_of(stack, user, session)).active_turn == ""

    # Idempotent: cancelling the ended turn again changes nothing.
    await cancel(stack, user, turn)
    assert [e.SerializeToString() for e in await resume(stack.server.chat, user, turn, 0)] == [
        e.SerializeToString() for e in events
    ]
    # The session takes the next message at once.
    stack.fake.enqueue(Script(tokens=["again"]))
    after = await stack.turn(user, session, "next")
    assert after[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED


async def test_cancel_while_a_reader_follows_the_turn(stack: ChatStack, user: str) -> None:
    """A reader attached to the running turn (the page after a reload) sees it end."""
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=TOKENS_200, token_delay=0.05))
    call = stack.server.chat.StreamChat(detached(session), metadata=md(user))
    events: list[cpb.StreamChatResponse] = []

    async def read() -> None:
        async for event in call:
            events.append(event)
            if len(events) == 3:
                await cancel(stack, user, event.turn)

    async with asyncio.timeout(10):
        await read()
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_CANCELLED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    stored = (await stack.messages(user, session))[-1]
    assert stored.text == text_of(events) and stored.state == rpb.MESSAGE_STATE_INCOMPLETE


async def test_cancel_errors(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    for name, code, reason in [
        (session + "/turns/nosuchturn", grpc.StatusCode.NOT_FOUND, "TURN_NOT_FOUND"),
        ("sessions/nosuchsession/turns/x", grpc.StatusCode.NOT_FOUND, "TURN_NOT_FOUND"),
        ("sessions/x/turn/y", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_RESOURCE_NAME"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cancel(stack, user, name)
        assert (err.value.code(), error_info(err.value).reason) == (code, reason)

    # An attached turn ends when its caller hangs up; CancelTurn says so.
    stack.fake.enqueue(Script(tokens=TOKENS_200, token_delay=0.05))
    call = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text="attached"), metadata=md(user)
    )
    async for event in call:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cancel(stack, user, event.turn)
        assert (err.value.code(), error_info(err.value).reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "TURN_NOT_DETACHED",
        )
        break
    call.cancel()
