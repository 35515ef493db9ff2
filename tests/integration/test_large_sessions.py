"""A session of large messages can be listed and exported (issue 19, part B).

Nine turns of ~1 MB each way make ~18 MB of messages: over the 16 MiB gRPC message
limit that ListMessages' default page and the unpaged export used to hit
(RESOURCE_EXHAUSTED, a retryable 429 through REST).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import error_info, joined_body, md
from tests.support.waits import until

pytestmark = pytest.mark.timeout(180)

TURNS = 9
SIZE = 1_000_000


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[ChatStack]:
    # Megabyte messages are far past the model's window: no compaction here (its summary
    # call would take a scripted answer), what does not fit is left out of the context.
    async with chat_stack("openai", database_url, compaction_enabled=False) as s:
        yield s


async def _large_session(stack: ChatStack, user: str) -> tuple[str, list[str]]:
    session = await stack.new_session(user, display_name="big")
    texts = []
    for i in range(TURNS):
        question = f"q{i}:" + "x" * (SIZE - 10)
        answer = f"a{i}:" + "y" * (SIZE - 10)
        stack.fake.enqueue(Script(tokens=[answer[j : j + 65536] for j in range(0, SIZE, 65536)]))
        events = await stack.turn(user, session, question)
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
        texts += [question, answer]
    return session, texts


async def test_a_large_session_can_be_listed_and_exported(stack: ChatStack, user: str) -> None:
    session, texts = await _large_session(stack, user)
    pages, seen, token = 0, [], ""
    while True:
        page = await stack.server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=session, page_token=token), metadata=md(user)
        )
        assert page.ByteSize() < 8 * 1024 * 1024  # stopped early, well under the limit
        pages += 1
        seen += [m.text for m in page.messages]
        token = page.next_page_token
        if not token:
            break
    assert seen == texts and pages > 1

    for fmt in (spb.EXPORT_FORMAT_JSON, spb.EXPORT_FORMAT_MARKDOWN):
        call = stack.server.sessions.ExportSession(
            spb.ExportSessionRequest(name=session, format=fmt), metadata=md(user)
        )
        body = await joined_body(call)
        assert len(body.data) > 16 * 1024 * 1024
        if fmt == spb.EXPORT_FORMAT_JSON:
            doc = json.loads(body.data)
            assert [m["text"] for m in doc["messages"]] == texts
        else:
            text = body.data.decode()
            assert f"- Messages: {len(texts)}" in text
            assert all(t in text for t in texts)


async def test_a_response_over_the_limit_is_ours_non_retryable_and_counted(
    sqlite_url: str, user: str
) -> None:
    async with chat_stack("openai", sqlite_url, max_message_bytes=200_000) as stack:
        session = await stack.new_session(user)
        # A 300 kB answer: its deltas fit, the last event carrying the whole answer does not.
        stack.fake.enqueue(Script(tokens=["z" * 50_000] * 6))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.turn(user, session, "say a lot")
        # Not gRPC's own RESOURCE_EXHAUSTED (a 429 telling REST clients to retry), and
        # the access log and metrics saw it (they said OK for gRPC's own refusal).
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(err.value).reason == "RESPONSE_TOO_LARGE"
        handled = stack.server.app.metrics.handled.labels(
            "server_stream", "aichat.v1.ChatService", "StreamChat", "FAILED_PRECONDITION"
        )
        # The client has the status before the server's interceptor has counted it.
        await until("the refusal counted", lambda: handled._value.get() >= 1)
        assert handled._value.get() == 1
        # What was stored can still be read, a bounded page at a time.
        page = await stack.server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=session), metadata=md(user)
        )
        assert page.messages[0].text == "say a lot"
