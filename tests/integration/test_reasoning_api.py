"""Reasoning, usage and cost as a gRPC client meets them: the stream, ListMessages, a
resumed turn, exports, the turn options, GetMyUsage and ListUsage (SQLite and PostgreSQL).

Real server, real SDKs, the wire-true fake upstream (tests/support/reasoning_models.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from aichat.v1 import admin_service_pb2 as apb
from aichat.v1 import admin_service_pb2_grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import session_service_pb2 as spb
from google.rpc import error_details_pb2

from aichat_backend import days
from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack
from tests.support.grpc_helpers import error_info, joined_body, md, rich_status
from tests.support.reasoning_models import reasoning_stack
from tests.support.resume import cut_after, resume

pytestmark = pytest.mark.timeout(60)

THOUGHT = "The user asks for a sum. Two and two make four, so I answer four."


@pytest.fixture
async def stack(database_url: str, tmp_path: Path) -> AsyncIterator[ChatStack]:
    async with reasoning_stack(database_url, tmp_path, admin_users="ops") as s:
        yield s


def kinds(events: list[cpb.StreamChatResponse]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


def reasoning(events: list[cpb.StreamChatResponse]) -> str:
    return "".join(e.reasoning_delta.text for e in events if e.HasField("reasoning_delta"))


async def test_thinking_streams_apart_and_is_stored_with_its_answer(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)  # the default model: claude, thinking on
    stack.fake.enqueue(
        Script(
            reasoning=THOUGHT,
            redacted_thinking=1,
            text="Four.",
            input_tokens=1000,
            output_tokens=500,
            token_delay=0.005,
        )
    )
    events = await stack.turn(user, session, "2+2?")
    order = [k for k in kinds(events) if k in ("reasoning_delta", "text_delta")]
    assert order[0] == "reasoning_delta" and order[-1] == "text_delta"
    assert order.index("text_delta") == order.count("reasoning_delta")  # all before text
    assert reasoning(events) == THOUGHT
    ended = events[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED and ended.message.text == "Four."
    usage = ended.usage
    assert (usage.input_tokens, usage.output_tokens, usage.model) == (1000, 500, "claude")
    assert 0 < usage.reasoning_tokens < usage.output_tokens
    # 1000 * 3 + 500 * 15 per million tokens: 0.0105 EUR, exactly.
    assert (usage.cost.currency_code, usage.cost.units, usage.cost.nanos) == ("EUR", 0, 10_500_000)
    assert ended.message.reasoning.text == THOUGHT
    assert ended.message.reasoning.redacted_blocks == 1

    listed = await stack.messages(user, session)
    answer = listed[-1]
    assert (answer.reasoning.text, answer.reasoning.redacted_blocks) == (THOUGHT, 1)
    assert (
        answer.usage.cost == usage.cost and answer.usage.reasoning_tokens == usage.reasoning_tokens
    )
    assert not listed[0].HasField("reasoning")  # the user's message has none


async def test_a_resumed_turn_replays_its_reasoning(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user, model="gpt")
    stack.fake.enqueue(Script(reasoning=THOUGHT, text="It is four.", token_delay=0.02))
    request = cpb.StreamChatRequest(
        session=session, text="2+2?", options=cpb.ChatOptions(detached=True)
    )
    seen = await cut_after(stack.server.chat, user, request, 3)  # mid-reasoning
    assert kinds(seen)[1:] == ["reasoning_delta", "reasoning_delta"]
    turn = seen[0].turn
    rest = await resume(stack.server.chat, user, turn, seen[-1].sequence)
    assert reasoning(seen) + reasoning(rest) == THOUGHT  # nothing lost, nothing twice
    assert rest[-1].turn_ended.message.reasoning.text == THOUGHT
    whole = await resume(stack.server.chat, user, turn, 0)
    assert [e.SerializeToString() for e in whole] == [e.SerializeToString() for e in seen + rest]


async def test_a_turns_reasoning_options_reach_the_model_or_are_refused(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user, model="gpt")
    options = cpb.ChatOptions(reasoning_effort="low")
    reply = await stack.server.chat.SendMessage(
        cpb.SendMessageRequest(session=session, text="hi", options=options), metadata=md(user)
    )
    assert stack.fake.requests[-1].body["reasoning_effort"] == "low"
    assert reply.usage.HasField("cost") and reply.message.usage.cost == reply.usage.cost
    off = cpb.ChatOptions(model="claude", thinking_budget_tokens=0)
    await stack.turn(user, session, "no thinking", options=off)
    assert "thinking" not in stack.fake.requests[-1].body
    asked = len(stack.fake.requests)
    bad = cpb.ChatOptions(model="claude", reasoning_effort="high")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.turn(user, session, "x", options=bad)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused.value).reason == "INVALID_REASONING_OPTION"
    fields = []
    for detail in rich_status(refused.value).details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields += [v.field for v in bad_request.field_violations]
    assert fields == ["options.reasoning_effort"]
    assert len(stack.fake.requests) == asked  # refused before the model was asked


async def test_exports_carry_reasoning_only_when_asked(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(reasoning=THOUGHT, text="Four."))
    await stack.turn(user, session, "2+2?")
    for fmt in (spb.EXPORT_FORMAT_TEXT, spb.EXPORT_FORMAT_MARKDOWN, spb.EXPORT_FORMAT_JSON):
        documents = []
        for include in (False, True):
            request = spb.ExportSessionRequest(name=session, format=fmt, include_reasoning=include)
            call = stack.server.sessions.ExportSession(request, metadata=md(user))
            documents.append((await joined_body(call)).data.decode())
        without, with_reasoning = documents
        assert "Four." in without and THOUGHT not in without
        assert THOUGHT in with_reasoning
    parsed = json.loads(with_reasoning)
    assert parsed["messages"][-1]["reasoning"]["text"] == THOUGHT


async def test_my_usage_today_and_this_month(stack: ChatStack, user: str, other_user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(
        Script(reasoning=THOUGHT, text="a", input_tokens=1000, output_tokens=500),
        Script(text="b", input_tokens=2000, output_tokens=10),
    )
    await stack.turn(user, session, "one")
    await stack.turn(user, session, "two", options=cpb.ChatOptions(model="free"))
    mine = await stack.server.sessions.GetMyUsage(spb.GetMyUsageRequest(), metadata=md(user))
    today = days.utc_day(time.time())
    for totals in (mine.today, mine.this_month):
        assert (totals.input_tokens, totals.output_tokens, totals.model_calls) == (3000, 510, 2)
        assert totals.reasoning_tokens > 0 and totals.end_day == today
        # Only the priced model costs money; the free one counts its tokens.
        assert (totals.cost.currency_code, totals.cost.nanos) == ("EUR", 10_500_000)
    assert mine.today.start_day == today and mine.this_month.start_day == today[:8] + "01"
    assert mine.daily_token_budget == 0 and not mine.HasField("daily_cost_budget")
    theirs = await stack.server.sessions.GetMyUsage(
        spb.GetMyUsageRequest(), metadata=md(other_user)
    )
    assert theirs.today.model_calls == 0 and theirs.today.cost.currency_code == "EUR"

    admin = admin_service_pb2_grpc.AdminServiceStub(stack.server.channel)
    page = await admin.ListUsage(apb.ListUsageRequest(user_id=user), metadata=md("ops"))
    rows = {r.model: r for r in page.rows}
    assert set(rows) == {"claude", "free"}
    assert rows["claude"].cost.nanos == 10_500_000 and rows["claude"].reasoning_tokens > 0
    assert not rows["free"].HasField("cost") and rows["free"].input_tokens == 2000


async def test_cached_input_is_reported_through_the_api(stack: ChatStack, user: str) -> None:
    system = "You answer questions about the following long manual. " * 40
    session = await stack.new_session(user, model="gpt", system_prompt=system)
    await stack.turn(user, session, "first")
    events = await stack.turn(user, session, "second")
    usage = events[-1].turn_ended.usage
    assert 0 < usage.cached_input_tokens < usage.input_tokens
    mine = await stack.server.sessions.GetMyUsage(spb.GetMyUsageRequest(), metadata=md(user))
    assert mine.today.cached_input_tokens == usage.cached_input_tokens
