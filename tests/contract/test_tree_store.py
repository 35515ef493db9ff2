"""The tree's part of the contract (issue 25): parents, the active message, paths, sibling
positions, branches, forks — the same in memory, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from aichat_backend.domain import Message, Role, ToolCall, ToolCallState
from aichat_backend.errors import NotFound
from aichat_backend.records import DENIED_BY_BRANCH, HistoryWindow, Usage
from tests.contract.conftest import Stores

pytestmark = pytest.mark.timeout(30)

WINDOW = HistoryWindow(requested=0, default=20, maximum=100)


async def _done(stores: Stores, sid: str, turn: str, answer: Message, text: str) -> None:
    answer.text = text
    await stores.turns.finish(stores.user, sid, turn, answer, None)


async def _line(stores: Stores, sid: str) -> list[Message]:
    """Q1 A1 Q2 A2, each turn ended."""
    out: list[Message] = []
    for n in (1, 2):
        turn, question, answer = await stores.begin(sid, f"Q{n}")
        await _done(stores, sid, turn, answer, f"A{n}")
        out += [question, answer]
    return out


async def _path(stores: Stores, sid: str, leaf: str | None = None) -> list[Message]:
    page = await stores.sessions.list_path(stores.user, sid, leaf, None, 100, 1 << 30)
    return page.messages


async def test_turns_chain_parents_and_move_the_active_message(stores: Stores) -> None:
    sid = await stores.new_session()
    q1, a1, q2, a2 = await _line(stores, sid)
    assert (q1.parent_id, a1.parent_id, q2.parent_id, a2.parent_id) == ("", q1.id, a1.id, q2.id)
    session = await stores.sessions.get_session(stores.user, sid)
    assert session.active_message_id == a2.id
    path = await _path(stores, sid)
    assert [m.id for m in path] == [q1.id, a1.id, q2.id, a2.id]
    assert [m.parent_id for m in path] == ["", q1.id, a1.id, q2.id]
    assert all((m.sibling_index, m.sibling_count) == (0, 1) for m in path)


async def test_a_regenerated_answer_is_a_sibling_and_the_context_its_path(stores: Stores) -> None:
    sid = await stores.new_session()
    q1, a1, q2, a2 = await _line(stores, sid)
    assert await stores.turns.question_of(stores.user, sid, a2.id) == q2.id
    assert await stores.turns.question_of(stores.user, sid, q2.id) == q2.id
    context = await stores.turns.load_context(stores.user, sid, WINDOW, q2.id)
    assert [m.id for m in context.history] == [q1.id, a1.id, q2.id]
    turn, asked, again = await stores.begin(sid, "", parent_id=q1.id, question=q2)
    assert asked.id == q2.id and again.parent_id == q2.id
    await _done(stores, sid, turn, again, "A2 again")
    path = await _path(stores, sid)
    assert [m.text for m in path] == ["Q1", "A1", "Q2", "A2 again"]
    last = path[-1]
    assert (last.sibling_index, last.sibling_count, last.previous_sibling) == (1, 2, a2.id)
    other = await _path(stores, sid, a2.id)
    assert [m.text for m in other] == ["Q1", "A1", "Q2", "A2"]
    assert (other[-1].sibling_index, other[-1].next_sibling) == (0, again.id)
    # The default context now follows the new answer, never the old one.
    context = await stores.turns.load_context(stores.user, sid, WINDOW)
    assert [m.text for m in context.history] == ["Q1", "A1", "Q2", "A2 again"]
    # A regenerate's replay finds its question and its answer.
    all_of_them = await stores.sessions.list_messages(stores.user, sid, 100, None)
    assert [(m.text, m.sibling_index, m.sibling_count) for m in all_of_them] == [
        ("Q1", 0, 1),
        ("A1", 0, 1),
        ("Q2", 0, 1),
        ("A2", 0, 2),
        ("A2 again", 1, 2),
    ]


async def test_an_edit_is_a_sibling_question_and_branches_switch(stores: Stores) -> None:
    sid = await stores.new_session()
    q1, a1, q2, a2 = await _line(stores, sid)
    turn, edited, answer = await stores.begin(sid, "Q2'", parent_id=a1.id)
    await _done(stores, sid, turn, answer, "A2'")
    assert edited.parent_id == a1.id
    assert [m.text for m in await _path(stores, sid)] == ["Q1", "A1", "Q2'", "A2'"]
    # Back to the first version: its newest descendant.
    assert await stores.sessions.branch_leaf(stores.user, sid, q2.id) == a2.id
    switched = await stores.sessions.switch_branch(stores.user, sid, q2.id, False)
    assert switched.active_message_id == a2.id
    assert [m.text for m in await _path(stores, sid)] == ["Q1", "A1", "Q2", "A2"]
    exact = await stores.sessions.switch_branch(stores.user, sid, q2.id, True)
    assert exact.active_message_id == q2.id
    # From the root, the newest branch is the edit's.
    assert await stores.sessions.branch_leaf(stores.user, sid, q1.id) == answer.id
    with pytest.raises(NotFound) as missing:
        await stores.sessions.switch_branch(stores.user, sid, "nope", False)
    assert missing.value.reason == "MESSAGE_NOT_FOUND"


async def test_a_running_turn_stays_on_its_branch_when_the_user_switches(stores: Stores) -> None:
    """Define: the user may switch while a turn runs; the turn's next rounds are written
    on its own branch, and the active message stays where the user switched to."""
    sid = await stores.new_session()
    _, a1, _, a2 = await _line(stores, sid)
    turn, _, answer = await stores.begin(sid, "Q3")
    await stores.sessions.switch_branch(stores.user, sid, a1.id, True)
    answer.text, answer.finish_reason = "looking", "tool_calls"
    looked = ToolCall("c1", "srv__look", {}, ToolCallState.SUCCEEDED, server="srv")
    await stores.turns.store_tool_round(stores.user, sid, answer, [looked], Usage("m", 1, 1))
    placeholder, _ = await stores.turns.next_round(stores.user, sid, answer, "m")
    assert placeholder.parent_id == answer.id
    await _done(stores, sid, turn, placeholder, "A3")
    session = await stores.sessions.get_session(stores.user, sid)
    assert session.active_message_id == a1.id  # not pulled back to the turn's branch
    leaf = await stores.sessions.branch_leaf(stores.user, sid, answer.id)
    branch = await _path(stores, sid, leaf)
    assert [m.text for m in branch] == ["Q1", "A1", "Q2", "A2", "Q3", "looking", "A3"]
    # Without a switch, each round moves the active message on.
    await stores.sessions.switch_branch(stores.user, sid, placeholder.id, True)
    turn, _, answer = await stores.begin(sid, "Q4")
    looked = ToolCall("c2", "srv__look", {}, ToolCallState.SUCCEEDED, server="srv")
    await stores.turns.store_tool_round(stores.user, sid, answer, [looked], None)
    nxt, _ = await stores.turns.next_round(stores.user, sid, answer, "m")
    await _done(stores, sid, turn, nxt, "A4")
    assert (await stores.sessions.get_session(stores.user, sid)).active_message_id == nxt.id
    assert a2.id != nxt.id


async def test_a_superseded_approval_is_told_apart(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, question, answer = await stores.begin(sid, "add a task")
    waiting = ToolCall("w1", "srv__add", {"x": 1}, ToolCallState.PENDING_APPROVAL, server="srv")
    await stores.turns.store_tool_round(stores.user, sid, answer, [waiting], None)
    await stores.turns.end_for_approval(stores.user, sid, turn, answer)
    turn, _, again = await stores.begin(
        sid, "", parent_id="", question=question, deny_pending=DENIED_BY_BRANCH
    )
    await _done(stores, sid, turn, again, "done without it")
    state = await stores.turns.load_resolution(stores.user, sid, ["w1"])
    assert state.others == {"w1": ToolCallState.DENIED} and state.superseded == {"w1"}
    # The call stays with its message, on its branch.
    old = await _path(stores, sid, answer.id)
    assert [(c.id, c.state, c.result_text) for c in old[-1].tool_calls] == [
        ("w1", ToolCallState.DENIED, DENIED_BY_BRANCH)
    ]


async def test_question_of_refuses_what_has_no_question(stores: Stores) -> None:
    sid = await stores.new_session()
    with pytest.raises(NotFound):
        await stores.turns.question_of(stores.user, sid, "nope")
    with pytest.raises(NotFound):
        await stores.turns.load_context(stores.user, sid, WINDOW, "nope")
    other = await stores.new_session()
    _, q, _ = await stores.begin(other, "Q")
    with pytest.raises(NotFound):  # a message of another session
        await stores.turns.question_of(stores.user, sid, q.id)


async def test_a_fork_copies_the_path_with_what_hangs_off_it(stores: Stores) -> None:
    sid = await stores.new_session(display_name="Plans")
    q1, a1, q2, a2 = await _line(stores, sid)
    turn, _, again = await stores.begin(sid, "", question=q2, parent_id=a1.id)
    await _done(stores, sid, turn, again, "A2 again")
    fork = await stores.sessions.fork_session(stores.user, sid, a2.id, "forked-1", "", "f-1")
    assert fork.id == "forked-1" and fork.display_name == "Plans (fork)"
    assert fork.message_count == 4 and fork.tools_locked
    copied = await _path(stores, "forked-1")
    assert [m.text for m in copied] == ["Q1", "A1", "Q2", "A2"]
    assert fork.active_message_id == copied[-1].id
    assert [m.parent_id for m in copied] == ["", *(m.id for m in copied[:-1])]
    assert {m.id for m in copied}.isdisjoint({q1.id, a1.id, q2.id, a2.id})
    assert all(m.sibling_count == 1 for m in copied)
    same = await stores.sessions.fork_session(stores.user, sid, a2.id, "forked-2", "", "f-1")
    assert same.id == "forked-1"  # the request_id's first result
    original = await _path(stores, sid)
    assert [m.text for m in original] == ["Q1", "A1", "Q2", "A2 again"]
    with pytest.raises(NotFound):
        await stores.sessions.fork_session("someone-else", sid, a2.id, "forked-3", "", "")
    assert copied[0].role is Role.USER
