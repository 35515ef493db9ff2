"""Resuming a turn by sequence number (issue 14): nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb

from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import error_info, joined_body, md
from tests.support.resume import (
    TOKENS_200,
    cut_after,
    paced_200,
    resume,
    rpc_error,
    seqs,
    text_of,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack("openai", database_url) as s:
        yield s


def detached(session: str, text: str = "talk") -> cpb.StreamChatRequest:
    return cpb.StreamChatRequest(session=session, text=text, options=cpb.ChatOptions(detached=True))


async def test_cut_after_50_then_resume_gets_exactly_the_rest(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    gate = asyncio.Event()
    stack.fake.enqueue(paced_200(gate))
    seen = await cut_after(stack.server.chat, user, detached(session), 50)
    assert seqs(seen) == list(range(1, 51))
    turn = seen[0].turn
    assert turn.startswith(session + "/turns/") and all(e.turn == turn for e in seen)

    call = stack.server.chat.StreamTurnEvents(
        cpb.StreamTurnEventsRequest(name=turn, after_seq=50), metadata=md(user), timeout=30
    )
    rest: list[cpb.StreamChatResponse] = []
    try:
        async for event in call:
            rest.append(event)
            if len(rest) == 1:
                gate.set()  # the rest is produced while this resumed stream is open
    finally:
        gate.set()
    assert seqs(rest) == list(range(51, 51 + len(rest)))
    kinds = [e.WhichOneof("event") for e in rest]
    assert kinds[-1] == "turn_ended" and kinds.count("turn_ended") == 1
    ended = rest[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    answer = text_of(seen) + text_of(rest)
    assert answer == "".join(TOKENS_200) == ended.message.text
    stored = await stack.messages(user, session)
    assert stored[-1].text == answer and stored[-1].state == rpb.MESSAGE_STATE_COMPLETE

    # The whole turn again, from storage; and past the end, just the last event.
    whole = await resume(stack.server.chat, user, turn, 0)
    assert seqs(whole) == list(range(1, rest[-1].sequence + 1))
    assert text_of(whole) == answer
    assert [e.SerializeToString() for e in whole[50:]] == [e.SerializeToString() for e in rest]
    past = await resume(stack.server.chat, user, turn, 10_000)
    assert [e.WhichOneof("event") for e in past] == ["turn_ended"]
    assert past[0].sequence == rest[-1].sequence


async def test_resume_errors(stack: ChatStack, user: str, other_user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["a ", "b"]))
    events = await stack.turn(user, session, "hi")
    turn = events[0].turn
    for who, name, after, code, reason in [
        (other_user, turn, 0, grpc.StatusCode.NOT_FOUND, "TURN_NOT_FOUND"),
        (user, session + "/turns/nosuchturn", 0, grpc.StatusCode.NOT_FOUND, "TURN_NOT_FOUND"),
        (user, turn, -1, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SEQUENCE"),
        (user, "sessions/x/turn/y", 0, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_RESOURCE_NAME"),
    ]:
        call = stack.server.chat.StreamTurnEvents(
            cpb.StreamTurnEventsRequest(name=name, after_seq=after), metadata=md(who)
        )
        err = await rpc_error(call)
        assert (err.code(), error_info(err).reason) == (code, reason)
    # Last-Event-ID (as a browser's reader sends it) stands in for after_seq.
    call = stack.server.chat.StreamTurnEvents(
        cpb.StreamTurnEventsRequest(name=turn), metadata=md(user, ("last-event-id", "2"))
    )
    assert seqs([e async for e in call]) == list(range(3, len(events) + 1))
    # Cleared messages do not come back through a resumed turn.
    from aichat.v1 import session_service_pb2 as spb

    await stack.server.sessions.ClearMessages(
        spb.ClearMessagesRequest(name=session), metadata=md(user)
    )
    err = await rpc_error(
        stack.server.chat.StreamTurnEvents(
            cpb.StreamTurnEventsRequest(name=turn), metadata=md(user)
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_hanging_up_an_attached_turn_cancels_it_and_its_log_says_so(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=TOKENS_200, token_delay=0.005))
    request = cpb.StreamChatRequest(session=session, text="talk")  # the default: attached
    seen = await cut_after(stack.server.chat, user, request, 20)
    await stack.fake.wait_disconnect(within=5.0)  # the model call stopped
    rest = await resume(stack.server.chat, user, seen[0].turn, 20)
    ended = rest[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_CANCELLED
    assert error_info_of(ended.error) == "TURN_CANCELLED"
    assert seqs(rest) == list(range(21, 21 + len(rest)))
    stored = (await stack.messages(user, session))[-1]
    assert stored.state == rpb.MESSAGE_STATE_INCOMPLETE
    assert stored.text == text_of(seen) + text_of(rest) == ended.message.text


def error_info_of(status: object) -> str:
    from google.rpc import error_details_pb2

    for detail in status.details:  # type: ignore[attr-defined]
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


async def test_detached_by_server_default_and_bounded_by_its_deadline(
    database_url: str, user: str
) -> None:
    # The deadline must fall after the first two tokens are stored: 1 s was too short for
    # that on a loaded machine (nothing stored yet when it fired).
    async with chat_stack(
        "openai", database_url, turn_detached_default=True, turn_detached_max_seconds=3.0
    ) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["one ", "two ", "three"], hang_after=2))
        request = cpb.StreamChatRequest(session=session, text="go")
        seen = await cut_after(stack.server.chat, user, request, 2)
        rest = await resume(stack.server.chat, user, seen[0].turn, 2)  # waits for the end
        ended = rest[-1].turn_ended
        assert ended.outcome == cpb.TURN_OUTCOME_CANCELLED
        assert error_info_of(ended.error) == "TURN_DEADLINE_EXCEEDED"
        stored = (await stack.messages(user, session))[-1]
        assert stored.text == "one two " == text_of(seen) + text_of(rest)
        assert stored.state == rpb.MESSAGE_STATE_INCOMPLETE


async def test_a_failed_turn_replays_its_failure(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["partial ", "answer"], error_after=2, error_status=500))
    call = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text="x"), metadata=md(user)
    )
    events: list[cpb.StreamChatResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as first:
        async for e in call:
            events.append(e)
    call = stack.server.chat.StreamTurnEvents(
        cpb.StreamTurnEventsRequest(name=events[0].turn), metadata=md(user)
    )
    replayed: list[cpb.StreamChatResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as again:
        async for e in call:
            replayed.append(e)
    assert [e.SerializeToString() for e in replayed] == [e.SerializeToString() for e in events]
    assert again.value.code() == first.value.code()
    assert error_info(again.value).reason == error_info(first.value).reason


async def test_feedback_on_answers(stack: ChatStack, user: str, other_user: str) -> None:
    from aichat.v1 import session_service_pb2 as spb

    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["Paris."]))
    events = await stack.turn(user, session, "Capital of France?")
    answer = events[-1].turn_ended.message.name
    question = events[0].turn_started.user_message
    rate = stack.server.sessions.SetMessageFeedback
    up = spb.SetMessageFeedbackRequest(
        name=answer, rating=rpb.FEEDBACK_RATING_THUMBS_UP, comment="right"
    )
    got = await rate(up, metadata=md(user))
    assert got.feedback.rating == rpb.FEEDBACK_RATING_THUMBS_UP and got.feedback.comment == "right"
    down = spb.SetMessageFeedbackRequest(name=answer, rating=rpb.FEEDBACK_RATING_THUMBS_DOWN)
    await rate(down, metadata=md(user))  # changed
    listed = await stack.messages(user, session)
    assert listed[1].feedback.rating == rpb.FEEDBACK_RATING_THUMBS_DOWN
    assert listed[1].feedback.comment == "" and listed[1].feedback.update_time.seconds > 0
    assert not listed[0].HasField("feedback")
    export = await joined_body(
        stack.server.sessions.ExportSession(
            spb.ExportSessionRequest(name=session, format=spb.EXPORT_FORMAT_MARKDOWN),
            metadata=md(user),
        )
    )
    assert b"feedback: down" in export.data
    export = await joined_body(
        stack.server.sessions.ExportSession(
            spb.ExportSessionRequest(name=session, format=spb.EXPORT_FORMAT_JSON),
            metadata=md(user),
        )
    )
    assert b"FEEDBACK_RATING_THUMBS_DOWN" in export.data
    for who, request, code, reason in [
        (other_user, up, grpc.StatusCode.NOT_FOUND, "MESSAGE_NOT_FOUND"),
        (
            user,
            spb.SetMessageFeedbackRequest(name=question, rating=rpb.FEEDBACK_RATING_THUMBS_UP),
            grpc.StatusCode.FAILED_PRECONDITION,
            "NOT_AN_ANSWER",
        ),
        (
            user,
            spb.SetMessageFeedbackRequest(name=answer, comment="no rating"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "COMMENT_WITHOUT_RATING",
        ),
        (
            user,
            spb.SetMessageFeedbackRequest(
                name=answer, rating=rpb.FEEDBACK_RATING_THUMBS_UP, comment="x" * 2001
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "COMMENT_TOO_LONG",
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rate(request, metadata=md(who))
        assert (err.value.code(), error_info(err.value).reason) == (code, reason)
    cleared = await rate(spb.SetMessageFeedbackRequest(name=answer), metadata=md(user))
    assert not cleared.HasField("feedback")
    assert not (await stack.messages(user, session))[1].HasField("feedback")


async def _stored_batches(stack: ChatStack, turn_id: str) -> list[tuple[int, int, bool, int]]:
    from sqlalchemy import func, select

    from aichat_backend.store.tables import turn_event_batches as b

    async with stack.server.app.db.read() as tx:
        rows = await tx.execute(
            select(b.c.first_seq, b.c.last_seq, b.c.final, func.length(b.c.data))
            .where(b.c.turn_id == turn_id)
            .order_by(b.c.first_seq)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


async def test_the_event_log_bound_is_a_bound_and_leaves_no_holes(
    database_url: str, user: str
) -> None:
    """Issue 23 item 7: with AICHAT_TURN_EVENTS_MAX_BYTES=64 KiB a 200 kB answer stores
    at most 64 KiB: events 1..n with no gap, then the turn's last event; a resume that
    needs an event past n says TURN_LOG_TRUNCATED, one that needs only the end gets it."""
    bound = 64 * 1024
    async with chat_stack("openai", database_url, turn_events_max_bytes=bound) as stack:
        session = await stack.new_session(user)
        tokens = [f"{i:05d}" + "x" * 95 for i in range(2000)]  # 100 bytes each
        # Paced so that the answer spans many flushes (a later, smaller flush must not
        # fill in after a skipped one).
        stack.fake.enqueue(Script(tokens=tokens, token_delay=0.0005))
        events = await stack.turn(user, session, "long")
        ended = events[-1]
        assert ended.turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
        turn_id = ended.turn.rsplit("/", 1)[1]
        deadline = time.monotonic() + 10
        while not (batches := await _stored_batches(stack, turn_id))[-1][2]:
            assert time.monotonic() < deadline  # the last event's flush is on its way
            await asyncio.sleep(0.01)
        stored = sum(size for *_, size in batches)
        print(f"\nitem 7: {stored} bytes stored for a {len(events)}-event turn, bound {bound}")
        assert stored <= bound
        *prefix, last = batches
        assert last[2] and last[0] == last[1] == ended.sequence  # the end is kept
        assert [b[0] for b in prefix] == [1] + [b[1] + 1 for b in prefix[:-1]]  # no hole
        kept = prefix[-1][1]
        assert kept < ended.sequence - 1  # it was cut

        call = stack.server.chat.StreamTurnEvents(
            cpb.StreamTurnEventsRequest(name=ended.turn), metadata=md(user)
        )
        given: list[cpb.StreamChatResponse] = []
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async for e in call:
                given.append(e)
        assert error_info(cut.value).reason == "TURN_LOG_TRUNCATED"
        assert seqs(given) == list(range(1, kept + 1))
        assert [e.SerializeToString() for e in given] == [
            e.SerializeToString() for e in events[:kept]
        ]
        err = await rpc_error(
            stack.server.chat.StreamTurnEvents(
                cpb.StreamTurnEventsRequest(name=ended.turn, after_seq=kept + 5),
                metadata=md(user),
            )
        )
        assert error_info(err).reason == "TURN_LOG_TRUNCATED"
        end_only = await resume(stack.server.chat, user, ended.turn, ended.sequence - 1)
        assert [e.sequence for e in end_only] == [ended.sequence]
        replayed = end_only[0].turn_ended
        assert replayed.outcome == cpb.TURN_OUTCOME_COMPLETED
        assert replayed.message.name == ended.turn_ended.message.name
        assert list(replayed.answer_messages) == list(ended.turn_ended.answer_messages)
        # The whole answer is stored with the message, whatever the log kept.
        assert (await stack.messages(user, session))[-1].text == "".join(tokens)


async def test_resume_edges_largest_sequence_and_a_deleted_session(
    stack: ChatStack, user: str
) -> None:
    """Issue 23's smaller items: after_seq at the largest int64 gives just turn_ended;
    a turn of a deleted session is NOT_FOUND (running or ended), never "truncated"."""
    from aichat.v1 import session_service_pb2 as spb

    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["a ", "b"]))
    events = await stack.turn(user, session, "hi")
    turn_log, deadline = stack.server.app.turn_log, time.monotonic() + 10
    while turn_log.get(events[0].turn.rsplit("/", 1)[1]) is not None:
        # Until stored and gone from memory (one flush): it is read from the database.
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    past = await resume(stack.server.chat, user, events[0].turn, 2**63 - 1)
    assert [e.sequence for e in past] == [events[-1].sequence]

    gate = asyncio.Event()
    stack.fake.enqueue(paced_200(gate))
    seen = await cut_after(stack.server.chat, user, detached(session), 50)  # past a flush
    await stack.server.sessions.DeleteSession(
        spb.DeleteSessionRequest(name=session), metadata=md(user)
    )
    try:
        for turn in (seen[0].turn, events[0].turn):
            err = await rpc_error(
                stack.server.chat.StreamTurnEvents(
                    cpb.StreamTurnEventsRequest(name=turn), metadata=md(user)
                )
            )
            assert (err.code(), error_info(err).reason) == (
                grpc.StatusCode.NOT_FOUND,
                "TURN_NOT_FOUND",
            )
    finally:
        gate.set()
