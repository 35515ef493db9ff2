"""The TurnStore contract: what every implementation must do (see conftest.py)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from aichat_backend.domain import (
    Attachment,
    Message,
    MessageState,
    Role,
    ToolCall,
    ToolCallState,
    now_us,
)
from aichat_backend.errors import Aborted, FailedPrecondition, NotFound
from aichat_backend.money import MIXED_CURRENCY, Cost
from aichat_backend.providers.base import ReasoningBlock
from aichat_backend.records import (
    RESOLVE_SCOPE,
    TURN_SCOPE,
    Decided,
    HistoryWindow,
    Resolution,
    TurnClaim,
    Usage,
)
from tests.contract.conftest import Stores

pytestmark = pytest.mark.timeout(30)

WINDOW = HistoryWindow(requested=0, default=20, maximum=100)


def _call(call_id: str, state: ToolCallState, name: str = "srv__change") -> ToolCall:
    return ToolCall(id=call_id, tool_name=name, arguments={"x": 1}, state=state, server="srv")


async def test_begin_claims_the_session_and_stores_both_messages(stores: Stores) -> None:
    sid = await stores.new_session()
    _, user_msg, answer = await stores.begin(sid, "first question", title="First question")
    assert (user_msg.role, user_msg.text, answer.role, answer.state) == (
        Role.USER,
        "first question",
        Role.ASSISTANT,
        MessageState.STREAMING,
    )
    assert answer.seq == user_msg.seq + 1
    context = await stores.turns.load_context(stores.user, sid, WINDOW)
    assert context.session.display_name == "First question"  # the first message names it
    assert context.session.tools_locked and context.session.message_count == 2
    assert [m.id for m in context.history] == [user_msg.id, answer.id]
    # The session names the turn holding it (the page marks chats still answering).
    turn = (await stores.sessions.get_session(stores.user, sid)).active_turn_id
    assert (
        turn
        and (await stores.sessions.list_sessions(stores.user, 5, None))[0].active_turn_id == turn
    )
    # One turn per session: a second claim is refused while the first holds it.
    with pytest.raises(Aborted) as busy:
        await stores.begin(sid)
    assert busy.value.reason == "SESSION_BUSY"
    assert len((await stores.turns.load_context(stores.user, sid, WINDOW)).history) == 2


async def test_sessions_are_the_owners_only(stores: Stores) -> None:
    sid = await stores.new_session()
    other = "someone-else"
    with pytest.raises(NotFound) as missing:
        await stores.turns.load_context(other, sid, WINDOW)
    assert missing.value.reason == "SESSION_NOT_FOUND"
    stores_as_other = dataclasses.replace(stores, user=other)
    with pytest.raises(NotFound):
        await stores_as_other.begin(sid)
    with pytest.raises(NotFound):
        await stores.begin("no-such-session")


async def test_finish_releases_and_counts_usage_once_even_when_sent_again(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid)
    answer.text, answer.state, answer.finish_reason = "done", MessageState.COMPLETE, "stop"
    answer.input_tokens, answer.output_tokens = 5, 7
    usage = Usage("m", 5, 7)
    await stores.turns.finish(stores.user, sid, turn, answer, usage)
    await stores.turns.finish(stores.user, sid, turn, answer, usage)  # an unknown outcome
    assert await stores.usage(stores.user) == [("m", 5, 7, 1)]
    assert (await stores.sessions.get_session(stores.user, sid)).active_turn_id == ""
    history = (await stores.turns.load_context(stores.user, sid, WINDOW)).history
    assert (history[-1].text, history[-1].state, history[-1].output_tokens) == (
        "done",
        MessageState.COMPLETE,
        7,
    )
    await stores.begin(sid)  # released: the next turn may claim it


async def test_a_request_id_is_taken_once_and_replays_its_turn(stores: Stores) -> None:
    sid = await stores.new_session()
    assert await stores.turns.find_replay(stores.user, TURN_SCOPE, "req-1") is None
    turn, user_msg, answer = await stores.begin(sid, "q", request_id="req-1", fingerprint="fp-1")
    stored = await stores.turns.find_replay(stores.user, TURN_SCOPE, "req-1")
    assert stored is not None and stored.user_message is not None
    assert stored.user_message.id == user_msg.id
    assert [a.id for a in stored.answers] == [answer.id]
    # The turn (a concurrent duplicate joins it) and what the request asked.
    assert (stored.turn_id, stored.fingerprint) == (turn, "fp-1")
    assert await stores.turns.find_replay("someone-else", TURN_SCOPE, "req-1") is None
    # Taken meanwhile (a concurrent duplicate): refused, and nothing of it is stored.
    await stores.turns.finish(stores.user, sid, turn, answer, None)
    with pytest.raises(Aborted) as taken:
        await stores.begin(sid, "q", request_id="req-1")
    assert taken.value.reason == "TURN_IN_PROGRESS"
    assert len((await stores.turns.load_context(stores.user, sid, WINDOW)).history) == 2


async def test_a_tool_round_its_calls_and_the_next_round(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid)
    answer.text, answer.finish_reason = "let me look", "tool_calls"
    calls = [_call("c1", ToolCallState.RUNNING, "srv__look"), _call("c2", ToolCallState.FAILED)]
    await stores.turns.store_tool_round(stores.user, sid, answer, calls, Usage("m", 3, 4))
    done = dataclasses.replace(calls[0], state=ToolCallState.SUCCEEDED, result_text="seen")
    await stores.turns.update_call(stores.user, answer.id, done)
    placeholder, history = await stores.turns.next_round(stores.user, sid, answer, "m", 10)
    assert [m.id for m in history] == [history[0].id, answer.id]  # read before the new round
    stored = history[-1]
    assert stored.state is MessageState.COMPLETE and stored.text == "let me look"
    assert [(c.id, c.state, c.result_text) for c in stored.tool_calls] == [
        ("c1", ToolCallState.SUCCEEDED, "seen"),
        ("c2", ToolCallState.FAILED, ""),
    ]
    assert placeholder.seq == stored.seq + 1 and placeholder.state is MessageState.STREAMING
    placeholder.text, placeholder.state = "found it", MessageState.COMPLETE
    await stores.turns.finish(stores.user, sid, turn, placeholder, Usage("m", 1, 2))
    assert await stores.usage(stores.user) == [("m", 4, 6, 2)]
    none, _ = await stores.turns.next_round(stores.user, sid, placeholder, "m")
    assert none.seq == placeholder.seq + 1  # without history, no read


async def test_approval_then_a_resolution_recorded_once(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, user_msg, answer = await stores.begin(sid)
    waiting = [_call("w1", ToolCallState.PENDING_APPROVAL), _call("w2", ToolCallState.DENIED)]
    await stores.turns.store_tool_round(stores.user, sid, answer, waiting, None)
    await stores.turns.end_for_approval(stores.user, sid, turn, answer)
    state = await stores.turns.load_resolution(stores.user, sid, ["w1", "w2", "nope"])
    assert [p.call.id for p in state.pending] == ["w1"]
    assert state.others == {"w2": ToolCallState.DENIED, "nope": None}
    assert state.round_message is not None and state.round_message.id == answer.id
    assert state.user_message is not None and state.user_message.id == user_msg.id
    approved = dataclasses.replace(state.pending[0].call, arguments={"x": 2})
    resolution = Resolution(
        sid,
        TurnClaim("turn-2", "replica-b", 60),
        state.round_message,
        [Decided(answer.id, approved, approved=True)],
        request_id="res-1",
    )
    resolution.fingerprint = "fp-res"
    await stores.turns.open_resolution(stores.user, resolution)
    replayed = await stores.turns.find_replay(stores.user, RESOLVE_SCOPE, "res-1")
    assert replayed is not None and (replayed.turn_id, replayed.fingerprint) == (
        "turn-2",
        "fp-res",
    )
    again = await stores.turns.load_resolution(stores.user, sid, ["w1"])
    assert again.pending == [] and again.others == {"w1": ToolCallState.APPROVED}
    # The claim is the resolution's: the session is busy until it ends.
    with pytest.raises(Aborted):
        await stores.begin(sid)
    await stores.turns.cut_off(stores.user, sid, "turn-2", answer, "x", write_answer=False)
    # Decided already: refused, and the refusal changes nothing (no claim left behind).
    resolution.request_id = ""
    with pytest.raises(FailedPrecondition) as twice:
        await stores.turns.open_resolution(stores.user, resolution)
    assert twice.value.reason == "TOOL_CALL_ALREADY_DECIDED"
    await stores.begin(sid)


async def test_a_new_message_denies_the_calls_still_waiting(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid)
    await stores.turns.store_tool_round(
        stores.user, sid, answer, [_call("w1", ToolCallState.PENDING_APPROVAL)], None
    )
    await stores.turns.end_for_approval(stores.user, sid, turn, answer)
    _, _, _ = await stores.begin(sid, "never mind", deny_pending="denied: a new message")
    state = await stores.turns.load_resolution(stores.user, sid, ["w1"])
    assert state.pending == [] and state.others == {"w1": ToolCallState.DENIED}


async def test_expired_approvals_are_denied(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid)
    await stores.turns.store_tool_round(
        stores.user, sid, answer, [_call("w1", ToolCallState.PENDING_APPROVAL)], None
    )
    await stores.turns.end_for_approval(stores.user, sid, turn, answer)
    assert await stores.turns.expire_pending(stores.user, sid, now_us() - 3_600_000_000, "x") == 0
    assert await stores.turns.expire_pending(stores.user, sid, now_us() + 1, "expired") == 1
    state = await stores.turns.load_resolution(stores.user, sid, ["w1"])
    assert state.others == {"w1": ToolCallState.DENIED}


async def test_a_cut_off_turn_keeps_its_partial_answer_and_fails_its_running_calls(
    stores: Stores,
) -> None:
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid)
    await stores.turns.store_tool_round(
        stores.user, sid, answer, [_call("r1", ToolCallState.RUNNING)], None
    )
    answer.text, answer.state, answer.finish_reason = "half", MessageState.INCOMPLETE, "cancelled"
    await stores.turns.cut_off(stores.user, sid, turn, answer, "cancelled", write_answer=True)
    last = (await stores.turns.load_context(stores.user, sid, WINDOW)).history[-1]
    assert (last.text, last.state, last.finish_reason) == (
        "half",
        MessageState.INCOMPLETE,
        "cancelled",
    )
    assert [(c.state, c.result_text, c.is_error) for c in last.tool_calls] == [
        (ToolCallState.FAILED, "cancelled", True)
    ]
    await stores.begin(sid)


async def test_leases_are_renewed_and_crashed_turns_swept(stores: Stores) -> None:
    live, expired, same_owner = [await stores.new_session() for _ in range(3)]
    turn_live, _, _ = await stores.begin(live, owner="replica-b", lease=60)
    await stores.begin(expired, owner="replica-c", lease=-1)
    await stores.begin(same_owner, owner="replica-a", lease=60)
    await stores.turns.renew_lease(stores.user, live, turn_live, 60)
    # Only the turn whose lease ran out (PostgreSQL's database is shared by the run's
    # tests, whose leftovers a sweep takes too: counted at least). Whoever sweeps, and
    # whatever replica ids the turns carry, a live lease is never touched.
    assert stores.counted(await stores.turns.sweep_interrupted(), 1)
    swept = (await stores.turns.load_context(stores.user, expired, WINDOW)).history[-1]
    assert (swept.state, swept.finish_reason) == (MessageState.INTERRUPTED, "interrupted")
    await stores.begin(expired, owner="replica-d")  # freed
    for sid in (live, same_owner):
        last = (await stores.turns.load_context(stores.user, sid, WINDOW)).history[-1]
        assert last.state is MessageState.STREAMING


async def test_an_answer_a_later_message_superseded_is_swept(stores: Stores) -> None:
    """A crashed turn whose session took a new message (its lease ran out, then a new
    turn claimed it) is over, although the session is claimed again."""
    sid = await stores.new_session()
    _, _, crashed = await stores.begin(sid, lease=-1)
    _, _, running = await stores.begin(sid, lease=60)  # the expired claim is taken
    assert stores.counted(await stores.turns.sweep_interrupted(), 1)
    history = (await stores.turns.load_context(stores.user, sid, WINDOW)).history
    states = {m.id: m.state for m in history}
    assert states[crashed.id] is MessageState.INTERRUPTED
    assert states[running.id] is MessageState.STREAMING


async def test_an_interrupted_answer_still_takes_its_last_write(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid, lease=-1)
    assert stores.counted(await stores.turns.sweep_interrupted(), 1)
    answer.text, answer.state = "made it", MessageState.COMPLETE
    await stores.turns.finish(stores.user, sid, turn, answer, Usage("m", 1, 1))
    last = (await stores.turns.load_context(stores.user, sid, WINDOW)).history[-1]
    assert (last.text, last.state) == ("made it", MessageState.COMPLETE)
    assert await stores.usage(stores.user) == [("m", 1, 1, 1)]


async def test_the_context_is_the_newest_window_with_attachment_content(stores: Stores) -> None:
    sid = await stores.new_session(memory_limit=3)
    files = [Attachment("a.txt", "text/plain", 3, "00", b"abc", "abc")]
    for i in range(3):
        turn, _, answer = await stores.begin(sid, f"q{i}", attachments=files if i == 2 else [])
        answer.text, answer.state = f"a{i}", MessageState.COMPLETE
        await stores.turns.finish(stores.user, sid, turn, answer, None)
    history = (await stores.turns.load_context(stores.user, sid, WINDOW)).history
    assert [m.text for m in history] == ["a1", "q2", "a2"]  # the session's own window
    assert history[1].attachments[0].content == b"abc"
    wider = HistoryWindow(requested=5, default=20, maximum=100)
    assert len((await stores.turns.load_context(stores.user, sid, wider)).history) == 5


async def test_a_given_conversation_is_stored_around_the_user_message(stores: Stores) -> None:
    """The OpenAI-compatible API's turns: earlier messages before the user's, the rounds the
    caller answered (with their calls and results) after it, numbered in one write."""
    sid = await stores.new_session()
    image = Attachment("a.png", "image/png", 4, "0" * 64, content=b"\x89PNG")

    def given(role: Role, text: str, **kw: object) -> Message:
        return Message(session_id=sid, id=uuid.uuid4().hex, seq=0, role=role, text=text, **kw)  # type: ignore[arg-type]

    earlier = [given(Role.USER, "look", attachments=[image]), given(Role.ASSISTANT, "a cat")]
    answered = _call("c-1", ToolCallState.SUCCEEDED, name="get_weather")
    answered.result_text = "sunny"
    rounds = [given(Role.ASSISTANT, "", tool_calls=[answered], finish_reason="tool_calls")]
    _, user_msg, answer = await stores.begin(sid, "and now?", earlier=earlier, rounds=rounds)
    assert (user_msg.seq, answer.seq) == (3, 5)
    context = await stores.turns.load_context(stores.user, sid, WINDOW)
    assert context.session.message_count == 5
    history = context.history
    assert [(m.seq, m.role, m.text) for m in history] == [
        (1, Role.USER, "look"),
        (2, Role.ASSISTANT, "a cat"),
        (3, Role.USER, "and now?"),
        (4, Role.ASSISTANT, ""),
        (5, Role.ASSISTANT, ""),
    ]
    assert [a.filename for a in history[0].attachments] == ["a.png"]
    assert [(c.id, c.state, c.result_text) for c in history[3].tool_calls] == [
        ("c-1", ToolCallState.SUCCEEDED, "sunny")
    ]
    assert history[4].state is MessageState.STREAMING
    with pytest.raises(Aborted):  # claimed like any turn
        await stores.begin(sid)


SIGNED = ReasoningBlock("anthropic", text="I should look.", signature="c2lnbmVk" * 40)
REDACTED = ReasoningBlock("anthropic", redacted=True, data="ZW5jcnlwdGVk" * 30)


async def test_reasoning_is_kept_block_by_block_with_its_answer(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid, request_id="req-r")
    answer.text, answer.finish_reason = "let me look", "tool_calls"
    answer.reasoning = [SIGNED, REDACTED]
    await stores.turns.store_tool_round(
        stores.user, sid, answer, [_call("c1", ToolCallState.SUCCEEDED)], None
    )
    placeholder, history = await stores.turns.next_round(stores.user, sid, answer, "m", 10)
    assert history[-1].reasoning == [SIGNED, REDACTED]  # exactly as the provider sent them
    placeholder.text, placeholder.state = "found", MessageState.COMPLETE
    placeholder.reasoning = [ReasoningBlock("openai", text="plain thoughts")]
    await stores.turns.finish(stores.user, sid, turn, placeholder, None)
    read = (await stores.turns.load_context(stores.user, sid, WINDOW)).history
    assert [m.reasoning for m in read[1:]] == [[SIGNED, REDACTED], placeholder.reasoning]
    listed = await stores.sessions.list_messages(stores.user, sid, 10, None)
    assert listed[1].reasoning_text == "I should look." and listed[0].reasoning == []
    replay = await stores.turns.find_replay(stores.user, TURN_SCOPE, "req-r")
    assert replay is not None and replay.answers[-1].reasoning_text == "plain thoughts"


async def test_usage_parts_and_cost_are_kept_per_answer_and_per_day(stores: Stores) -> None:
    sid = await stores.new_session()
    turn, _, answer = await stores.begin(sid)
    first = Usage("m", 100, 40, 30, 60, 20, Cost(1_234_567, "EUR"))
    answer.reasoning_tokens, answer.cost = 30, first.cost
    calls = [_call("c1", ToolCallState.SUCCEEDED)]
    await stores.turns.store_tool_round(stores.user, sid, answer, calls, first)
    placeholder, _ = await stores.turns.next_round(stores.user, sid, answer, "m")
    placeholder.text, placeholder.state = "done", MessageState.COMPLETE
    placeholder.cached_input_tokens, placeholder.cache_write_tokens = 70, 5
    last = Usage("m", 120, 8, 0, 70, 5, Cost(2, "EUR"))
    placeholder.cost = last.cost
    await stores.turns.finish(stores.user, sid, turn, placeholder, last)
    await stores.turns.finish(stores.user, sid, turn, placeholder, last)  # counted once
    assert await stores.usage_parts(stores.user) == [("m", 30, 130, 25, 1_234_569, "EUR")]
    read = (await stores.turns.load_context(stores.user, sid, WINDOW)).history
    assert [(m.reasoning_tokens, m.cost) for m in read[1:]] == [(30, first.cost), (0, last.cost)]
    assert (read[-1].cached_input_tokens, read[-1].cache_write_tokens) == (70, 5)
    assert read[0].cost is None  # the user's message cost nothing


async def test_a_days_cost_is_in_one_currency_or_marked_mixed(stores: Stores) -> None:
    sid = await stores.new_session()
    for usage in (
        Usage("m", 1, 1),  # unpriced: tokens only
        Usage("m", 1, 1, cost=Cost(5, "USD")),
        Usage("m", 1, 1),  # an unpriced call leaves the currency as it is
    ):
        turn, _, answer = await stores.begin(sid)
        answer.state = MessageState.COMPLETE
        await stores.turns.finish(stores.user, sid, turn, answer, usage)
    assert await stores.usage_parts(stores.user) == [("m", 0, 0, 0, 5, "USD")]
    turn, _, answer = await stores.begin(sid)
    answer.state = MessageState.COMPLETE
    await stores.turns.finish(stores.user, sid, turn, answer, Usage("m", 1, 1, cost=Cost(7, "EUR")))
    assert await stores.usage_parts(stores.user) == [("m", 0, 0, 0, 12, MIXED_CURRENCY)]


async def test_a_model_title_is_written_unless_the_user_named_the_session(stores: Stores) -> None:
    unnamed = await stores.new_session()
    await stores.begin(unnamed, "first question", title="first question")
    assert await stores.turns.write_title(stores.user, unnamed, "Model title")
    assert (await stores.sessions.get_session(stores.user, unnamed)).display_name == "Model title"
    named = await stores.new_session(display_name="Mine")
    assert not await stores.turns.write_title(stores.user, named, "Model title")
    renamed = await stores.new_session()
    await stores.sessions.update_session(stores.user, renamed, {"display_name": "Renamed"})
    assert not await stores.turns.write_title(stores.user, renamed, "Model title")
    assert (await stores.sessions.get_session(stores.user, renamed)).display_name == "Renamed"
    assert not await stores.turns.write_title("someone-else", unnamed, "Theirs")
    assert not await stores.turns.write_title(stores.user, "s-gone", "Model title")
