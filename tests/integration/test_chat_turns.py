"""Chat turns end to end: real server, real SDKs, fake upstreams in the real wire formats."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb

from aichat_backend.store.usage_repo import tokens_today
from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import error_info, md

pytestmark = pytest.mark.timeout(30)

TOKENS = ["Hel", "lo", ", ", "wor", "ld", "! ", "How ", "can ", "I ", "help?"]


@pytest.fixture(params=["openai", "anthropic"])
async def stack(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack(request.param, database_url) as s:
        yield s


def kinds(events: list[cpb.StreamChatResponse]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def streamed_text(events: list[cpb.StreamChatResponse]) -> str:
    return "".join(e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta")


async def failing_turn(
    stack: ChatStack, user: str, session: str, text: str
) -> tuple[list[cpb.StreamChatResponse], grpc.aio.AioRpcError]:
    """A StreamChat expected to end in an error status: the events before it, and it."""
    call = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text=text), metadata=md(user)
    )
    events: list[cpb.StreamChatResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for event in call:
            events.append(event)
    return events, err.value


async def test_streamed_text_equals_upstream_and_is_stored(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=TOKENS, input_tokens=11, output_tokens=10))
    events = await stack.turn(user, session, "Say hello")
    k = kinds(events)
    assert k[0] == "turn_started" and k[-1] == "turn_ended"
    assert set(k[1:-1]) <= {"text_delta", "heartbeat"}
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert streamed_text(events) == "".join(TOKENS)
    ended = events[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    assert ended.message.text == "".join(TOKENS)
    assert ended.message.state == rpb.MESSAGE_STATE_COMPLETE
    assert (ended.usage.input_tokens, ended.usage.output_tokens) == (11, 10)
    assert not ended.HasField("error")
    started = events[0].turn_started
    stored = await stack.messages(user, session)
    assert [m.role for m in stored] == [rpb.ROLE_USER, rpb.ROLE_ASSISTANT]
    assert stored[0].name == started.user_message and stored[0].text == "Say hello"
    assert stored[1].name == started.answer_message == ended.message.name
    assert stored[1].text == "".join(TOKENS)
    assert stored[1].state == rpb.MESSAGE_STATE_COMPLETE
    assert stored[1].usage.output_tokens == 10 and stored[1].finish_reason in ("stop", "end_turn")
    assert stored[1].model == started.model
    # The first message names the session.
    got = await stack.server.sessions.GetSession(
        __import__("aichat.v1.session_service_pb2", fromlist=["x"]).GetSessionRequest(name=session),
        metadata=md(user),
    )
    assert got.display_name == "Say hello" and got.message_count == 2 and got.tools_locked


async def test_context_carries_earlier_turns_and_system_prompt(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user, system_prompt="You are terse.")
    stack.fake.enqueue(Script(tokens=["Paris."]), Script(tokens=["About 2 million."]))
    await stack.turn(user, session, "Capital of France?")
    await stack.turn(user, session, "Population?")
    body = stack.fake.requests[-1].body
    if stack.provider == "openai":
        msgs = [(m["role"], m["content"]) for m in body["messages"]]
        assert msgs == [
            ("system", "You are terse."),
            ("user", "Capital of France?"),
            ("assistant", "Paris."),
            ("user", "Population?"),
        ]
        assert body["stream"] is True and body["stream_options"]["include_usage"] is True
    else:
        # Prompt caching (on by default): cache points on the system prompt and on the
        # last message before the new one.
        marked = {"type": "ephemeral"}
        assert body["system"] == [
            {"type": "text", "text": "You are terse.", "cache_control": marked}
        ]
        assert body["messages"][-2]["content"][-1]["cache_control"] == marked
        flat = []
        for m in body["messages"]:
            content = m["content"]
            text = (
                content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
            )
            flat.append((m["role"], text))
        assert flat == [
            ("user", "Capital of France?"),
            ("assistant", "Paris."),
            ("user", "Population?"),
        ]


async def test_memory_limit_bounds_context(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user, memory_limit=2)
    for i in range(3):
        stack.fake.enqueue(Script(tokens=[f"a{i}"]))
        await stack.turn(user, session, f"q{i}")
    body = stack.fake.requests[-1].body
    sent = str(body["messages"])
    assert "q0" not in sent and "a0" not in sent
    assert "q1" in sent and "a1" in sent and "q2" in sent


async def test_cancel_keeps_prefix_and_closes_upstream(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    tokens = [f"t{i} " for i in range(200)]
    stack.fake.enqueue(Script(tokens=tokens, token_delay=0.02))
    call = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text="long answer please"), metadata=md(user)
    )
    received = ""
    async for event in call:
        received += event.text_delta.text
        if len(received) >= 20:
            break
    call.cancel()
    # The upstream's own answer lasts 4 s (200 tokens, 20 ms apart); one it finishes is
    # no disconnect. So a disconnect proves the cancel closed it mid-answer, however long a
    # loaded machine takes to get there (a 1 s bound on that failed under load).
    await stack.fake.wait_disconnect(within=10.0)
    assert stack.fake.stream_disconnects == 1
    await stack.server.app.engine.drain_writes()
    stored = await stack.messages(user, session)
    assert [m.role for m in stored] == [rpb.ROLE_USER, rpb.ROLE_ASSISTANT]
    answer = stored[1]
    assert answer.state == rpb.MESSAGE_STATE_INCOMPLETE
    full = "".join(tokens)
    assert full.startswith(answer.text) and answer.text.startswith(received)
    assert len(answer.text) < len(full)
    # The session is free again.
    stack.fake.enqueue(Script(tokens=["ok"]))
    events = await stack.turn(user, session, "next")
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED


async def test_deadline_stores_partial_answer(stack: ChatStack, user: str) -> None:
    # The deadline must fall after both tokens are in. A first turn pays for the SDK's
    # lazy imports and the first database connections: on a loaded machine that alone
    # took longer than the deadline (nothing stored when it fired). So one turn first,
    # in a session of its own.
    warm = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["warm"]))
    await stack.turn(user, warm, "first")
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["partial ", "answer"], hang_after=2))
    call = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text="hang"), metadata=md(user), timeout=3.0
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The fake hangs after two tokens, so only the server can end its answer: a bound.
    await stack.fake.wait_disconnect(within=10.0)
    await stack.server.app.engine.drain_writes()
    stored = await stack.messages(user, session)
    assert stored[1].state == rpb.MESSAGE_STATE_INCOMPLETE
    assert stored[1].text == "partial answer"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_upstream_silent_mid_answer_fails_the_turn_and_keeps_the_text(
    provider: str, sqlite_url: str, user: str
) -> None:
    # The stall watch, not the HTTP client's read timeout, ends it: a whole period of
    # silence after two tokens.
    async with chat_stack(provider, sqlite_url, provider_timeout_seconds=0.5) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["partial ", "answer", " never"], hang_after=2))
        events, error = await failing_turn(stack, user, session, "hang")
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error_info(error).reason == "PROVIDER_TIMEOUT"
        assert streamed_text(events) == "partial answer"
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_FAILED
        await stack.fake.wait_disconnect(within=10.0)  # it hangs: only the server ends it
        stored = await stack.messages(user, session)
        assert stored[1].state == rpb.MESSAGE_STATE_INCOMPLETE
        assert stored[1].text == "partial answer"


async def test_provider_503_before_stream(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(error_status=503), Script(error_status=503))
    events, error = await failing_turn(stack, user, session, "hi")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(error).reason == "PROVIDER_UNAVAILABLE"
    assert kinds(events) == ["turn_started", "turn_ended"]
    ended = events[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_FAILED
    assert ended.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    stored = await stack.messages(user, session)
    assert stored[0].text == "hi"  # the user's message is never lost
    assert stored[1].state == rpb.MESSAGE_STATE_INCOMPLETE and stored[1].text == ""


async def test_retry_before_first_token_succeeds(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(error_status=503), Script(tokens=["recovered"]))
    events = await stack.turn(user, session, "hi")
    assert streamed_text(events) == "recovered"
    assert len(stack.fake.requests) == 2


async def test_provider_fails_mid_stream(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["one ", "two ", "three"], cut_after=2))
    events, error = await failing_turn(stack, user, session, "count")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_FAILED
    assert streamed_text(events) == "one two "
    stored = await stack.messages(user, session)
    assert stored[1].text == "one two " and stored[1].state == rpb.MESSAGE_STATE_INCOMPLETE
    assert len(stack.fake.requests) == 1  # never retried after the first token


async def test_rate_limited_upstream_maps_to_resource_exhausted(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(
        Script(error_status=429, retry_after=0.01), Script(error_status=429, retry_after=0.01)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.turn(user, session, "hi")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err.value).reason == "PROVIDER_RATE_LIMITED"


async def test_busy_session_and_turn_in_progress(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["slow"], hang_after=1))
    first = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text="one", request_id="r1"), metadata=md(user)
    )
    it = first.__aiter__()
    started = await it.__anext__()
    assert started.WhichOneof("event") == "turn_started"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.turn(user, session, "two")
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert error_info(err.value).reason == "SESSION_BUSY"
    # The same request again (its request_id) while it runs: no second model call, the
    # duplicate reads the first turn's own stream (issue 23).
    again = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text="one", request_id="r1"), metadata=md(user)
    )
    joined = [await again.read(), await again.read()]
    assert joined[0].WhichOneof("event") == "turn_started"
    assert [(e.turn, e.sequence) for e in joined] == [(started.turn, 1), (started.turn, 2)]
    asked = [r for r in stack.fake.requests if "one" in str(r.body["messages"][-1])]
    assert len(asked) == 1  # the first turn's call only
    again.cancel()
    first.cancel()


async def test_request_id_replays_finished_turn(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["only ", "once"]))
    request = cpb.SendMessageRequest(session=session, text="hello", request_id="idem-1")
    first = await stack.server.chat.SendMessage(request, metadata=md(user))
    again = await stack.server.chat.SendMessage(request, metadata=md(user))
    assert first.message.text == "only once" and first.outcome == cpb.TURN_OUTCOME_COMPLETED
    assert again.message.name == first.message.name and again.message.text == "only once"
    assert again.user_message.name == first.user_message.name
    replay = await stack.turn(user, session, "hello", request_id="idem-1")
    assert kinds(replay) == ["turn_ended"]
    assert replay[0].turn_ended.message.name == first.message.name
    assert len(stack.fake.requests) == 1
    assert len(await stack.messages(user, session)) == 2


async def test_send_message_unary(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["4"], input_tokens=5, output_tokens=1))
    response = await stack.server.chat.SendMessage(
        cpb.SendMessageRequest(session=session, text="2+2?"), metadata=md(user)
    )
    assert response.user_message.text == "2+2?" and response.message.text == "4"
    assert response.usage.input_tokens == 5 and response.outcome == cpb.TURN_OUTCOME_COMPLETED


async def test_other_users_session_and_bad_input(
    stack: ChatStack, user: str, other_user: str
) -> None:
    session = await stack.new_session(user)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.turn(other_user, session, "hi")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.turn(user, session, "   ")
    assert error_info(err.value).reason == "EMPTY_MESSAGE"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.turn(user, session, "hi", options=cpb.ChatOptions(model="no-such-model"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "UNKNOWN_MODEL"
    assert stack.fake.requests == []
    assert await stack.messages(user, session) == []


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _pdf(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text=text)
    return bytes(pdf.output())


async def test_attachments_reach_the_model(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["seen"]))
    files = [
        rpb.Attachment(filename="notes.csv", mime_type="text/csv", content=b"a,b\n1,2\n"),
        rpb.Attachment(filename="pixel.png", mime_type="image/png", content=PNG),
        rpb.Attachment(
            filename="report.pdf",
            mime_type="application/pdf",
            content=_pdf("Quarterly revenue grew"),
        ),
    ]
    events = await stack.turn(user, session, "look at these", attachments=files)
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    sent = str(stack.fake.requests[-1].body)
    assert "a,b" in sent and "notes.csv" in sent
    assert "Quarterly revenue grew" in sent
    assert base64.b64encode(PNG).decode() in sent
    stored = (await stack.messages(user, session))[0]
    assert [(a.filename, a.size_bytes) for a in stored.attachments] == [
        (f.filename, len(f.content)) for f in files
    ]
    assert all(len(a.sha256) == 64 and a.content == b"" for a in stored.attachments)
    # The next turn still shows the model the earlier files.
    stack.fake.enqueue(Script(tokens=["again"]))
    await stack.turn(user, session, "and now?")
    again = str(stack.fake.requests[-1].body)
    assert "Quarterly revenue grew" in again and base64.b64encode(PNG).decode() in again
    assert again.index("notes.csv") < again.index("Quarterly revenue grew")  # in order


@pytest.mark.parametrize(
    ("attachment", "reason"),
    [
        (
            rpb.Attachment(filename="a.exe", mime_type="application/x-msdownload", content=b"MZ"),
            "UNSUPPORTED_ATTACHMENT",
        ),
        (
            rpb.Attachment(filename="fake.png", mime_type="image/png", content=b"not a png"),
            "UNSUPPORTED_ATTACHMENT",
        ),
        (
            rpb.Attachment(
                filename="bad.pdf", mime_type="application/pdf", content=b"%PDF-garbage"
            ),
            "UNSUPPORTED_ATTACHMENT",
        ),
        (
            rpb.Attachment(filename="big.txt", mime_type="text/plain", content=b"x" * 2048),
            "ATTACHMENT_TOO_LARGE",
        ),
    ],
)
async def test_rejected_attachments_store_nothing(
    sqlite_url: str, user: str, attachment: rpb.Attachment, reason: str
) -> None:
    async with chat_stack("openai", sqlite_url, max_attachment_bytes=1024) as stack:
        session = await stack.new_session(user)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.turn(user, session, "see file", attachments=[attachment])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).reason == reason
        assert await stack.messages(user, session) == []
        assert stack.fake.requests == []


async def test_too_many_attachments(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url, max_attachments_per_message=2) as stack:
        session = await stack.new_session(user)
        files = [
            rpb.Attachment(filename=f"{i}.txt", mime_type="text/plain", content=b"x")
            for i in range(3)
        ]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.turn(user, session, "files", attachments=files)
        assert error_info(err.value).reason == "TOO_MANY_ATTACHMENTS"


async def test_no_credentials(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url, api_key="") as stack:
        session = await stack.new_session(user)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.turn(user, session, "hi")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(err.value)
        assert info.reason == "PROVIDER_NOT_CONFIGURED"
        assert info.metadata["variable"] == "AICHAT_API_KEY"
        assert await stack.messages(user, session) == []
        models = await stack.server.chat.ListModels(cpb.ListModelsRequest(), metadata=md(user))
        assert [(m.name, m.configured, m.default) for m in models.models] == [
            ("gpt-test", False, True)
        ]


async def test_heartbeat_while_model_thinks(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url, heartbeat_seconds=0.1) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["done"], ttft=0.5))
        events = await stack.turn(user, session, "think")
        k = kinds(events)
        assert "heartbeat" in k and k.index("heartbeat") < k.index("text_delta")
        assert events[k.index("heartbeat")].heartbeat.elapsed.ToMilliseconds() >= 50


async def test_slow_reader_gets_coalesced_deltas(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url) as stack:
        session = await stack.new_session(user)
        tokens = [f"w{i} " for i in range(400)]
        stack.fake.enqueue(Script(tokens=tokens))
        call = stack.server.chat.StreamChat(
            cpb.StreamChatRequest(session=session, text="flood"), metadata=md(user)
        )
        events = []
        async for event in call:
            events.append(event)
            if len(events) == 2:
                # Be a slow reader while the upstream writes everything.
                await stack.fake.wait_requests(1)
                await asyncio.sleep(0.3)
        deltas = [e for e in events if e.WhichOneof("event") == "text_delta"]
        assert streamed_text(events) == "".join(tokens)
        assert len(deltas) < len(tokens) / 4


async def test_shutdown_ends_running_turn_cancelled(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["before ", "shutdown"], hang_after=2))
        call = stack.server.chat.StreamChat(
            cpb.StreamChatRequest(session=session, text="work"), metadata=md(user)
        )
        events = []
        stopping = None
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for event in call:
                events.append(event)
                if streamed_text(events) == "before shutdown" and stopping is None:
                    stopping = asyncio.create_task(stack.server.app.stop(0.2))
        await stopping
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(err.value).reason == "SERVER_SHUTTING_DOWN"
        ended = events[-1].turn_ended
        assert ended.outcome == cpb.TURN_OUTCOME_CANCELLED
        assert ended.message.text == "before shutdown"
        assert ended.message.state == rpb.MESSAGE_STATE_INCOMPLETE


async def test_the_last_write_stores_answer_usage_and_frees_the_session(
    stack: ChatStack, user: str
) -> None:
    # On PostgreSQL the answer, the release and the usage row are one statement.
    session = await stack.new_session(user)
    before = await _tokens_today(stack, user)
    stack.fake.enqueue(
        Script(tokens=["one ", "two"], input_tokens=11, output_tokens=2),
        Script(tokens=["three"], input_tokens=13, output_tokens=1),
    )
    await stack.turn(user, session, "count")
    events = await stack.turn(user, session, "again")  # the session was released
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    stored = await stack.messages(user, session)
    assert [m.text for m in stored] == ["count", "one two", "again", "three"]
    assert stored[1].state == rpb.MESSAGE_STATE_COMPLETE
    assert (stored[3].usage.input_tokens, stored[3].usage.output_tokens) == (13, 1)
    assert await _tokens_today(stack, user) - before == 11 + 2 + 13 + 1


async def _tokens_today(stack: ChatStack, user: str) -> int:
    async with stack.server.app.db.read() as tx:
        return await tokens_today(tx, user)
