"""A conversation is a tree (issue 25): regenerate, edit, switch branch, fork, through a
real server on SQLite and PostgreSQL, the model a fake upstream in OpenAI's wire format.

Each test says what the model saw: the fake records every request, and the context of a
turn must be the path from the root to the new message's parent, never a sibling branch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import error_info, md

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack("openai", database_url) as s:
        yield s


async def say(stack: ChatStack, user: str, session: str, text: str, answer: str) -> list[Any]:
    stack.fake.enqueue(Script(text=answer))
    events = await stack.turn(user, session, text)
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED, events[-1]
    return events


async def regenerate(
    stack: ChatStack, user: str, name: str, answer: str, **kw: Any
) -> list[cpb.StreamChatResponse]:
    stack.fake.enqueue(Script(text=answer))
    call = stack.server.chat.RegenerateAnswer(
        cpb.RegenerateAnswerRequest(name=name, **kw), metadata=md(user)
    )
    return [e async for e in call]


async def edit(
    stack: ChatStack, user: str, name: str, text: str, answer: str, **kw: Any
) -> list[cpb.StreamChatResponse]:
    stack.fake.enqueue(Script(text=answer))
    call = stack.server.chat.EditMessage(
        cpb.EditMessageRequest(name=name, text=text, **kw), metadata=md(user)
    )
    return [e async for e in call]


def seen(stack: ChatStack) -> list[tuple[str, str]]:
    """The conversation the model was last sent (role, text), the system prompt left out."""
    body = stack.fake.requests[-1].body
    return [
        (m["role"], m["content"] if isinstance(m["content"], str) else str(m["content"]))
        for m in body["messages"]
        if m["role"] != "system"
    ]


async def listed(stack: ChatStack, user: str, session: str, **kw: Any) -> list[rpb.Message]:
    page = await stack.server.sessions.ListMessages(
        spb.ListMessagesRequest(parent=session, **kw), metadata=md(user)
    )
    return list(page.messages)


def texts(messages: list[rpb.Message]) -> list[str]:
    return [m.text for m in messages]


async def test_regenerate_adds_a_sibling_answer_the_model_sees_only_the_path(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    await say(stack, user, session, "Q1", "A1")
    events = await say(stack, user, session, "Q2", "A2")
    q2, a2 = events[0].turn_started.user_message, events[0].turn_started.answer_message

    again = await regenerate(stack, user, a2, "A2 again")
    assert [e.sequence for e in again] == list(range(1, len(again) + 1))
    started, ended = again[0].turn_started, again[-1].turn_ended
    assert started.user_message == q2  # no new user message: the question answered again
    assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED and ended.message.text == "A2 again"
    # The model saw the path to the question, and not the answer it replaces.
    assert seen(stack) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2")]

    path = await listed(stack, user, session)
    assert texts(path) == ["Q1", "A1", "Q2", "A2 again"]
    assert [m.parent for m in path] == ["", path[0].name, path[1].name, q2]
    last = path[-1]
    assert (last.sibling_index, last.sibling_count) == (1, 2)
    assert last.previous_sibling == a2 and last.next_sibling == ""
    assert all((m.sibling_index, m.sibling_count) == (0, 1) for m in path[:3])
    got = await stack.server.sessions.GetSession(
        spb.GetSessionRequest(name=session), metadata=md(user)
    )
    assert got.active_message == last.name

    # The earlier answer is a branch: listed by name, and switched back to.
    old = await listed(stack, user, session, branch=a2)
    assert texts(old) == ["Q1", "A1", "Q2", "A2"]
    assert (old[-1].sibling_index, old[-1].sibling_count, old[-1].next_sibling) == (
        0,
        2,
        last.name,
    )
    switched = await stack.server.sessions.SwitchBranch(
        spb.SwitchBranchRequest(name=a2), metadata=md(user)
    )
    assert switched.active_message == a2
    assert texts(await listed(stack, user, session)) == ["Q1", "A1", "Q2", "A2"]
    # The next message continues the branch shown, and the model reads that branch.
    await say(stack, user, session, "Q3", "A3")
    assert seen(stack) == [
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
        ("assistant", "A2"),
        ("user", "Q3"),
    ]
    every = await listed(stack, user, session, all_branches=True)
    assert texts(every) == ["Q1", "A1", "Q2", "A2", "A2 again", "Q3", "A3"]


async def test_edit_adds_a_sibling_question_and_its_answer(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    await say(stack, user, session, "Q1", "A1")
    events = await say(stack, user, session, "Q2 with a typo", "A2")
    q2 = events[0].turn_started.user_message
    await say(stack, user, session, "Q3", "A3")

    edited = await edit(stack, user, q2, "Q2 fixed", "A2'")
    started = edited[0].turn_started
    assert started.user_message != q2 and edited[-1].turn_ended.message.text == "A2'"
    assert seen(stack) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2 fixed")]
    path = await listed(stack, user, session)
    assert texts(path) == ["Q1", "A1", "Q2 fixed", "A2'"]
    assert (path[2].sibling_index, path[2].sibling_count, path[2].previous_sibling) == (1, 2, q2)
    assert path[2].parent == path[1].name

    # Back to the first version: the active path follows its newest descendant (A3).
    await stack.server.sessions.SwitchBranch(spb.SwitchBranchRequest(name=q2), metadata=md(user))
    assert texts(await listed(stack, user, session)) == [
        "Q1",
        "A1",
        "Q2 with a typo",
        "A2",
        "Q3",
        "A3",
    ]
    # ... or stops at the message itself when told.
    await stack.server.sessions.SwitchBranch(
        spb.SwitchBranchRequest(name=q2, exact=True), metadata=md(user)
    )
    assert texts(await listed(stack, user, session)) == ["Q1", "A1", "Q2 with a typo"]

    # Editing the first message makes a second root.
    first = path[0].name
    await edit(stack, user, first, "Q1 again", "A1'")
    assert seen(stack) == [("user", "Q1 again")]
    path = await listed(stack, user, session)
    assert texts(path) == ["Q1 again", "A1'"]
    assert (path[0].parent, path[0].sibling_index, path[0].sibling_count) == ("", 1, 2)


async def test_edit_and_regenerate_refuse_what_they_cannot_do(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    events = await say(stack, user, session, "Q1", "A1")
    a1 = events[0].turn_started.answer_message
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await edit(stack, user, a1, "not mine to edit", "x")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err.value).reason == "NOT_A_USER_MESSAGE"
    missing = session + "/messages/nope"
    for call in (
        regenerate(stack, user, missing, "x"),
        edit(stack, user, missing, "x", "x"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(err.value).reason == "MESSAGE_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await regenerate(stack, user, "sessions/x/answers/y", "x")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stack.fake._scripts.clear()


async def test_another_users_message_or_branch_is_not_found(
    stack: ChatStack, user: str, other_user: str
) -> None:
    session = await stack.new_session(user)
    events = await say(stack, user, session, "Q1", "A1")
    q1, a1 = events[0].turn_started.user_message, events[0].turn_started.answer_message
    calls = [
        lambda: regenerate(stack, other_user, a1, "x"),
        lambda: edit(stack, other_user, q1, "x", "x"),
        lambda: stack.server.sessions.SwitchBranch(
            spb.SwitchBranchRequest(name=a1), metadata=md(other_user)
        ),
        lambda: stack.server.sessions.ForkSession(
            spb.ForkSessionRequest(message=a1), metadata=md(other_user)
        ),
        lambda: listed(stack, other_user, session, branch=a1),
        lambda: listed(stack, other_user, session),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value
    stack.fake._scripts.clear()
    # Nothing changed for the owner.
    assert texts(await listed(stack, user, session)) == ["Q1", "A1"]


async def test_fork_copies_the_path_up_to_a_message(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user, display_name="Planning")
    await say(stack, user, session, "Q1", "A1")
    events = await say(stack, user, session, "Q2", "A2")
    a2 = events[0].turn_started.answer_message
    await regenerate(stack, user, a2, "A2 again")
    await say(stack, user, session, "Q3", "A3")
    await stack.server.sessions.SetMessageFeedback(
        spb.SetMessageFeedbackRequest(name=a2, rating=rpb.FEEDBACK_RATING_THUMBS_UP),
        metadata=md(user),
    )

    fork = await stack.server.sessions.ForkSession(
        spb.ForkSessionRequest(message=a2, session_id="forked", request_id="fork-1"),
        metadata=md(user),
    )
    assert fork.name == "sessions/forked" and fork.display_name == "Planning (fork)"
    assert fork.message_count == 4
    copied = await listed(stack, user, fork.name)
    assert texts(copied) == ["Q1", "A1", "Q2", "A2"]
    assert all(m.name.startswith("sessions/forked/") for m in copied)
    assert copied[-1].feedback.rating == rpb.FEEDBACK_RATING_THUMBS_UP
    assert all(m.sibling_count == 1 for m in copied)  # other branches are not copied
    assert fork.active_message == copied[-1].name
    # A retry with the same request_id gets the same session.
    again = await stack.server.sessions.ForkSession(
        spb.ForkSessionRequest(message=a2, session_id="forked", request_id="fork-1"),
        metadata=md(user),
    )
    assert again.name == fork.name
    # The fork goes on by itself; the model reads the copied path.
    await say(stack, user, fork.name, "Q3 in the fork", "A3'")
    assert seen(stack) == [
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
        ("assistant", "A2"),
        ("user", "Q3 in the fork"),
    ]
    # The original is unchanged.
    assert texts(await listed(stack, user, session)) == ["Q1", "A1", "Q2", "A2 again", "Q3", "A3"]


async def test_a_regenerate_is_resumed_by_sequence_like_any_turn(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    events = await say(stack, user, session, "Q1", "A1")
    a1 = events[0].turn_started.answer_message
    stack.fake.enqueue(Script(tokens=[f"w{i} " for i in range(20)], token_delay=0.03))
    call = stack.server.chat.RegenerateAnswer(
        cpb.RegenerateAnswerRequest(name=a1, options=cpb.ChatOptions(detached=True)),
        metadata=md(user),
    )
    seen_events = [await call.read() for _ in range(3)]
    call.cancel()  # a detached turn runs on without its caller
    last = seen_events[-1]
    assert last.WhichOneof("event") == "text_delta"  # cut while it runs
    resumed = stack.server.chat.StreamTurnEvents(
        cpb.StreamTurnEventsRequest(name=last.turn, after_seq=last.sequence), metadata=md(user)
    )
    rest = [e async for e in resumed]
    sequences = [e.sequence for e in seen_events + rest]
    assert sequences == list(range(1, len(sequences) + 1))
    ended = rest[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    assert ended.message.text == "".join(f"w{i} " for i in range(20))
    assert texts(await listed(stack, user, session))[-1] == ended.message.text


async def test_regenerate_and_edit_are_held_to_the_same_limits(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url, daily_token_budget=100) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["big"], input_tokens=90, output_tokens=20))
        events = await stack.turn(user, session, "spend it")
        started = events[0].turn_started
        for call in (
            regenerate(stack, user, started.answer_message, "x"),
            edit(stack, user, started.user_message, "again", "x"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert error_info(err.value).reason == "TOKEN_BUDGET_EXHAUSTED"
        assert len(stack.fake.requests) == 1


async def test_a_regenerate_reads_as_much_history_as_the_turn_it_repeats(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user, memory_limit=2)
    await say(stack, user, session, "Q1", "A1")
    await say(stack, user, session, "Q2", "A2")
    events = await say(stack, user, session, "Q3", "A3")
    assert seen(stack) == [("user", "Q2"), ("assistant", "A2"), ("user", "Q3")]
    await regenerate(stack, user, events[0].turn_started.answer_message, "A3 again")
    assert seen(stack) == [("user", "Q2"), ("assistant", "A2"), ("user", "Q3")]
    await edit(stack, user, events[0].turn_started.user_message, "Q3 edited", "A3'")
    assert seen(stack) == [("user", "Q2"), ("assistant", "A2"), ("user", "Q3 edited")]
