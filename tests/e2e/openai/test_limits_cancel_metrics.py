"""The OpenAI door inside the user's limits, counted and logged like StreamChat, and a client
that hangs up cancelling its turn: what the SDKs' retry logic and a real hang-up meet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest
import pytest_asyncio
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import Script
from tests.e2e.openai.conftest import MODEL, turn_ended
from tests.integration.test_observability import scrape, value
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import md
from tests.support.http import TLS

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

HI = [{"role": "user", "content": "hi"}]
DOOR = dict(grpc_service="aichat.v1.OpenAICompatible", grpc_method="CreateChatCompletion")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    """One turn at a time per user, 5 requests a second (burst 20), metrics on."""
    db = tmp_path_factory.mktemp("openai-limits") / "aichat.db"
    async with chat_stack(
        "openai",
        f"sqlite:///{db}",
        max_concurrent_turns_per_user=1,
        rate_rps=5,
        rate_burst=20,
        metrics_address="127.0.0.1:0",
    ) as s:
        yield s


class Attempts:
    """When each request of the SDK left (its HTTP client's request hook)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.refused = asyncio.Event()

    async def sent(self, request: httpx2.Request) -> None:
        self.times.append(time.monotonic())

    async def answered(self, response: httpx2.Response) -> None:
        if response.status_code == 429:
            self.refused.set()

    def client(self, base_url: str, token: str, retries: int) -> openai.AsyncOpenAI:
        hooks = {"request": [self.sent], "response": [self.answered]}
        http = httpx2.AsyncClient(verify=TLS, event_hooks=hooks, timeout=30)  # type: ignore[arg-type]
        return openai.AsyncOpenAI(
            base_url=base_url, api_key=token, max_retries=retries, http_client=http
        )


async def _hold_a_turn(
    client: openai.AsyncOpenAI, stack: ChatStack, gate: asyncio.Event
) -> AsyncIterator[object]:
    stack.fake.enqueue(Script(tokens=["held ", "open"], gate_after=1, gate=gate))
    held = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    chunks = held.__aiter__()
    await chunks.__anext__()  # the user's one turn is running
    return chunks


async def test_a_429_reaches_the_sdks_retries_which_wait_as_told(
    client: openai.AsyncOpenAI, base_url: str, token: str, stack: ChatStack, user: str
) -> None:
    gate = asyncio.Event()
    held = await _hold_a_turn(client, stack, gate)
    before = scrape(stack.server.app.metrics_port)
    attempts = Attempts()
    try:
        async with attempts.client(base_url, token, retries=2) as retrying:
            with pytest.raises(openai.RateLimitError) as limited:
                await retrying.chat.completions.create(model=MODEL, messages=HI)
    finally:
        gate.set()
        async for _ in held:
            pass
    assert limited.value.code == "rate_limit_exceeded"
    # The sessions made for the refused requests were removed: only the held turn's is left.
    page = await stack.server.sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(user))
    assert len(page.sessions) == 1
    headers = limited.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("1", "1000")
    # The SDK's default two retries, each after the 1 s we asked for.
    assert len(attempts.times) == 3
    gaps = [b - a for a, b in zip(attempts.times, attempts.times[1:], strict=False)]
    assert all(g >= 0.95 for g in gaps), gaps
    after = scrape(stack.server.app.metrics_port)
    refused = "aichat_rate_limited_total"
    assert (
        value(after, refused, reason="CONCURRENCY_LIMITED")
        - value(before, refused, reason="CONCURRENCY_LIMITED")
        == 3
    )
    handled = "grpc_server_handled_total"
    assert (
        value(after, handled, grpc_code="RESOURCE_EXHAUSTED", **DOOR)
        - value(before, handled, grpc_code="RESOURCE_EXHAUSTED", **DOOR)
        == 3
    )


async def test_a_retry_after_the_limit_frees_succeeds(
    client: openai.AsyncOpenAI, base_url: str, token: str, stack: ChatStack
) -> None:
    gate = asyncio.Event()
    held = await _hold_a_turn(client, stack, gate)

    async def finish_the_held_turn() -> None:
        gate.set()
        async for _ in held:
            pass

    attempts = Attempts()
    stack.fake.enqueue(Script(text="second"))
    async with attempts.client(base_url, token, retries=2) as retrying:
        request = asyncio.create_task(retrying.chat.completions.create(model=MODEL, messages=HI))
        await attempts.refused.wait()  # the first attempt was answered 429
        await finish_the_held_turn()
        reply = await request
    assert reply.choices[0].message.content == "second"
    assert len(attempts.times) == 2


async def test_the_request_rate_is_limited_with_a_429_too(
    base_url: str, token: str, stack: ChatStack
) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key=token, max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            for _ in range(40):  # past the burst of 20
                await client.models.list()
    assert limited.value.code == "rate_limit_exceeded"
    assert float(limited.value.response.headers["retry-after-ms"]) > 0


async def test_hanging_up_cancels_the_turn_and_stores_it_incomplete(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    stack.fake.enqueue(Script(tokens=["one ", "two ", "three"], hang_after=2))
    stream = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    seen, completion_id = "", ""
    async for chunk in stream:
        completion_id = chunk.id
        seen += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if seen == "one two ":
            break
    session = stream.response.headers["x-aichat-session"]
    await stream.close()  # the client goes away mid-answer
    await stack.fake.wait_disconnect(within=10.0)  # so did the model call
    ended = await turn_ended(stack, user, session, completion_id)
    assert ended.outcome == cpb.TURN_OUTCOME_CANCELLED
    answer = (await stack.messages(user, session))[-1]
    assert (answer.text, answer.state, answer.finish_reason) == (
        "one two ",
        rpb.MESSAGE_STATE_INCOMPLETE,
        "cancelled",
    )
    assert stack.server.app.engine.active_turns == 0
    samples = scrape(stack.server.app.metrics_port)
    assert value(samples, "grpc_server_handled_total", grpc_code="CANCELLED", **DOOR) >= 1
    assert value(samples, "aichat_active_streams") == 0


async def test_a_turn_is_counted_and_logged_like_streamchat(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = scrape(stack.server.app.metrics_port)
    stack.fake.enqueue(Script(tokens=["a", "b"], input_tokens=4, output_tokens=2))
    with caplog.at_level("INFO", logger="aichat_backend.access"):
        await client.chat.completions.create(model=MODEL, messages=HI)
    after = scrape(stack.server.app.metrics_port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("grpc_server_started_total", grpc_type="unary", **DOOR) == 1
    assert moved("grpc_server_handled_total", grpc_type="unary", grpc_code="OK", **DOOR) == 1
    assert moved("aichat_time_to_first_token_seconds_count", model=MODEL) == 1
    assert moved("aichat_tokens_total", model=MODEL, direction="output") == 2
    lines = [r for r in caplog.records if getattr(r, "method", "").endswith("CreateChatCompletion")]
    assert [(r.code, r.user) for r in lines] == [("OK", user)]  # type: ignore[attr-defined]
    assert lines[0].request_id  # type: ignore[attr-defined]
