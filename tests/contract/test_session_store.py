"""The SessionStore contract: what every implementation must do (see conftest.py)."""

from __future__ import annotations

import pytest

from aichat_backend.domain import Feedback, MessageState, Rating, Session, ToolCall, ToolCallState
from aichat_backend.errors import AlreadyExists, FailedPrecondition, NotFound
from aichat_backend.records import CALL_TOOL_SCOPE, IdempotencyRecord, Usage
from tests.contract.conftest import Stores

pytestmark = pytest.mark.timeout(30)


async def test_create_get_and_a_request_id_replays_the_first_session(stores: Stores) -> None:
    user = stores.user
    created = await stores.sessions.create_session(
        user, Session(user_id=user, id="first", display_name="One", tool_names=["a"]), "r1"
    )
    assert (created.id, created.display_name, created.tool_names) == ("first", "One", ["a"])
    # The same request again (even with another draft) is the first session.
    again = await stores.sessions.create_session(user, Session(user_id=user, id="second"), "r1")
    assert again.id == "first"
    with pytest.raises(AlreadyExists) as taken:
        await stores.sessions.create_session(user, Session(user_id=user, id="first"), "")
    assert taken.value.reason == "SESSION_ALREADY_EXISTS"
    assert (await stores.sessions.get_session(user, "first")).display_name == "One"
    with pytest.raises(NotFound):
        await stores.sessions.get_session("someone-else", "first")
    with pytest.raises(NotFound):
        await stores.sessions.get_session(user, "second")


async def test_sessions_list_newest_first_by_keyset(stores: Stores) -> None:
    ids = [await stores.new_session() for _ in range(3)]
    await stores.sessions.update_session(stores.user, ids[0], {"display_name": "touched"})
    listed = await stores.sessions.list_sessions(stores.user, 10, None)
    assert listed[0].id == ids[0]  # the newest change first
    assert sorted(s.id for s in listed) == sorted(ids)
    first_page = await stores.sessions.list_sessions(stores.user, 2, None)
    last = first_page[-1]
    rest = await stores.sessions.list_sessions(stores.user, 2, (last.update_time_us, last.id))
    assert [s.id for s in first_page + rest] == [s.id for s in listed]
    assert await stores.sessions.list_sessions("someone-else", 10, None) == []


async def test_update_checks_the_session_as_it_is_and_delete_removes_it(stores: Stores) -> None:
    sid = await stores.new_session(tool_names=["a"])

    def refuse(current: Session) -> None:
        assert current.tool_names == ["a"]
        raise FailedPrecondition("no")

    with pytest.raises(FailedPrecondition):
        await stores.sessions.update_session(stores.user, sid, {"tool_names": ["b"]}, refuse)
    assert (await stores.sessions.get_session(stores.user, sid)).tool_names == ["a"]
    updated = await stores.sessions.update_session(stores.user, sid, {"memory_limit": 4})
    assert updated.memory_limit == 4
    with pytest.raises(NotFound):
        await stores.sessions.update_session("someone-else", sid, {"memory_limit": 1})
    await stores.sessions.delete_session(stores.user, sid)
    with pytest.raises(NotFound):
        await stores.sessions.delete_session(stores.user, sid)


async def test_messages_page_in_order_and_clear_unlocks_tools(stores: Stores) -> None:
    sid = await stores.new_session()
    for i in range(2):
        turn, _, answer = await stores.begin(sid, f"q{i}")
        answer.text, answer.state = f"a{i}", MessageState.COMPLETE
        await stores.turns.finish(stores.user, sid, turn, answer, None)
    page = await stores.sessions.list_messages(stores.user, sid, 3, None)
    assert [m.text for m in page] == ["q0", "a0", "q1"]
    rest = await stores.sessions.list_messages(stores.user, sid, 3, page[-1].seq)
    assert [m.text for m in rest] == ["a1"]
    with pytest.raises(NotFound):
        await stores.sessions.list_messages("someone-else", sid, 3, None)
    await stores.sessions.clear_messages(stores.user, sid)
    assert await stores.sessions.list_messages(stores.user, sid, 3, None) == []
    cleared = await stores.sessions.get_session(stores.user, sid)
    assert (cleared.message_count, cleared.tools_locked) == (0, False)


async def test_feedback_is_for_finished_answers_of_the_owner(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, question, answer = await stores.begin(sid)
    with pytest.raises(FailedPrecondition) as running:
        await stores.sessions.set_feedback(stores.user, sid, answer.id, Feedback(Rating.UP))
    assert running.value.reason == "ANSWER_IN_PROGRESS"
    answer.text, answer.state = "ok", MessageState.COMPLETE
    await stores.turns.finish(stores.user, sid, turn, answer, None)
    rated = await stores.sessions.set_feedback(
        stores.user, sid, answer.id, Feedback(Rating.DOWN, "too short")
    )
    assert rated.feedback is not None
    assert (rated.feedback.rating, rated.feedback.comment) == (Rating.DOWN, "too short")
    cleared = await stores.sessions.set_feedback(stores.user, sid, answer.id, None)
    assert cleared.feedback is None
    with pytest.raises(FailedPrecondition) as not_an_answer:
        await stores.sessions.set_feedback(stores.user, sid, question.id, Feedback(Rating.UP))
    assert not_an_answer.value.reason == "NOT_AN_ANSWER"
    with pytest.raises(NotFound):
        await stores.sessions.set_feedback("someone-else", sid, answer.id, Feedback(Rating.UP))


async def test_a_request_is_reserved_once_settled_or_forgotten(stores: Stores) -> None:
    user, rid = stores.user, "call-1"

    def never(_: IdempotencyRecord) -> bool:
        return False

    assert (
        await stores.sessions.reserve_request(user, CALL_TOOL_SCOPE, rid, "tools/t", never) is None
    )
    running = await stores.sessions.reserve_request(user, CALL_TOOL_SCOPE, rid, "tools/t", never)
    assert running is not None and running.response is None  # the first still runs
    # A reservation whose call died is taken over.
    taken = await stores.sessions.reserve_request(
        user, CALL_TOOL_SCOPE, rid, "tools/t", lambda r: r.response is None
    )
    assert taken is None
    await stores.sessions.settle_request(user, CALL_TOOL_SCOPE, rid, b"result")
    done = await stores.sessions.reserve_request(user, CALL_TOOL_SCOPE, rid, "tools/t", never)
    assert done is not None and done.response == b"result"
    await stores.sessions.settle_request(user, CALL_TOOL_SCOPE, "call-2", None)  # nothing there
    assert (
        await stores.sessions.reserve_request(user, CALL_TOOL_SCOPE, "call-2", "x", never) is None
    )
    await stores.sessions.settle_request(user, CALL_TOOL_SCOPE, "call-2", None)
    assert (
        await stores.sessions.reserve_request(user, CALL_TOOL_SCOPE, "call-2", "x", never) is None
    )


async def test_message_sizes_come_before_the_messages_and_a_summary_counts_them(
    stores: Stores,
) -> None:
    # Readers bound a page by these sizes before reading it (a message can be 4 MB).
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid, "q" * 1000)
    answer.text, answer.finish_reason, answer.model = "look", "tool_calls", "model-a"
    call = ToolCall(
        id="c1",
        tool_name="srv__look",
        arguments={"x": 1},
        state=ToolCallState.SUCCEEDED,
        server="srv",
        result_text="r" * 500,
    )
    await stores.turns.store_tool_round(stores.user, sid, answer, [call], Usage("m", 1, 1))
    placeholder, _ = await stores.turns.next_round(stores.user, sid, answer, "model-b")
    placeholder.text, placeholder.state = "a" * 3000, MessageState.COMPLETE
    await stores.turns.finish(stores.user, sid, turn, placeholder, Usage("m", 1, 1))
    sizes = await stores.sessions.message_sizes(stores.user, sid, 10, None)
    arguments = len('{"x": 1}')  # as JSON text; stores may drop the space
    assert sizes[0] == 256 + 1000
    assert sizes[1] in (256 + 4 + 128 + 500 + arguments, 256 + 4 + 128 + 500 + arguments - 1)
    assert sizes[2] == 256 + 3000
    messages = await stores.sessions.list_messages(stores.user, sid, 10, None)
    assert await stores.sessions.message_sizes(stores.user, sid, 10, messages[0].seq) == sizes[1:]
    assert await stores.sessions.message_sizes(stores.user, sid, 1, None) == sizes[:1]
    with pytest.raises(NotFound):
        await stores.sessions.message_sizes("someone-else", sid, 10, None)
    summary = await stores.sessions.summarize_session(stores.user, sid)
    assert summary.count == 3 and summary.tools == {"srv__look"}
    assert summary.models == {"model-a", "model-b"}
