"""Context that never overflows (issue 26) as a gRPC client meets it, on SQLite and
PostgreSQL: a 200-turn conversation on a 4,096-token model (the fake upstream enforces
the window and refuses past it as OpenAI does) completes every turn; the stream says how
full the context is and when it was compacted; ListMessages and the exports mark the
summary and still hold every original message; ListModels shows the window.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import FakeLLMServer
from tests.support.chat import MODELS, ChatStack, provider_settings
from tests.support.grpc_helpers import error_info, joined_body, md
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(240)

WINDOW = 4096


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[ChatStack]:
    async with FakeLLMServer(context_windows={MODELS["openai"]: WINDOW}) as fake:
        settings = make_settings(
            database_url, **provider_settings("openai", fake), llm_context_window=WINDOW
        )
        async with running_server(settings) as server:
            yield ChatStack(server=server, fake=fake, provider="openai")


async def all_messages(stack: ChatStack, user: str, session: str) -> list[rpb.Message]:
    out: list[rpb.Message] = []
    token = ""
    while True:
        page = await stack.server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=session, page_size=100, page_token=token),
            metadata=md(user),
        )
        out += page.messages
        token = page.next_page_token
        if not token:
            return out


def words(turn: int, n: int = 150) -> str:
    return " ".join(f"t{turn}w{i}" for i in range(n))


async def test_two_hundred_turns_on_a_4096_token_model_complete_and_say_so(
    stack: ChatStack, user: str
) -> None:
    models = await stack.server.chat.ListModels(cpb.ListModelsRequest(), metadata=md(user))
    assert [m.context_window_tokens for m in models.models] == [WINDOW]
    session = await stack.new_session(user)
    compacted: list[cpb.ContextCompacted] = []
    for turn in range(200):
        events = await stack.turn(user, session, words(turn))
        ended = events[-1].turn_ended
        assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED, (turn, ended.error)
        started = events[0].turn_started
        assert started.context.window_tokens == WINDOW and started.context.tokens > 0
        assert 0 < ended.context.tokens <= WINDOW  # the provider's own count
        compacted += [e.context_compacted for e in events if e.HasField("context_compacted")]
    assert compacted and not any(c.after_refusal for c in compacted)
    first = compacted[0]
    assert first.tokens_after < first.tokens_before and first.summary.text

    listed = await all_messages(stack, user, session)
    assert len(listed) == 400  # nothing hidden from its owner
    marked = [m for m in listed if m.HasField("context_summary")]
    # Each compaction the stream told of, and those made beside an answer (a summary
    # carried on before it leaves the 20 messages a turn reads), in order.
    assert {c.through_message for c in compacted} <= {m.name for m in marked}
    folded = [m.context_summary.folded_messages for m in marked]
    assert folded == sorted(folded) and folded[-1] > 300

    for fmt in (spb.EXPORT_FORMAT_MARKDOWN, spb.EXPORT_FORMAT_TEXT, spb.EXPORT_FORMAT_JSON):
        call = stack.server.sessions.ExportSession(
            spb.ExportSessionRequest(name=session, format=fmt), metadata=md(user)
        )
        document = (await joined_body(call)).data.decode()
        assert "t0w0 " in document and "t199w0 " in document  # the originals
        if fmt == spb.EXPORT_FORMAT_JSON:
            summaries = [m for m in json.loads(document)["messages"] if "contextSummary" in m]
            assert len(summaries) == len(marked)
        else:
            assert document.count("the model is sent it instead of them") == len(marked)


async def test_a_message_bigger_than_the_window_is_refused_with_its_sizes(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.turn(user, session, words(0, 3000))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info.reason == "MESSAGE_EXCEEDS_CONTEXT_WINDOW"
    assert int(info.metadata["message_tokens"]) > WINDOW
    assert info.metadata["context_window"] == str(WINDOW)
