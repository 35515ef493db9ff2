"""The official ``openai`` Python SDK, unchanged, against aichat through Envoy: sync and async,
streamed and not, and its exception types chosen by our HTTP codes and error bodies."""

from __future__ import annotations

import asyncio
import json

import httpx2
import openai
import pytest
from aichat.v1 import resources_pb2 as rpb

from aichat_devtools.dev_token import DevKeys
from aichat_devtools.fake_llm import Script
from tests.e2e.openai.conftest import MODEL
from tests.support.chat import ChatStack
from tests.support.dev_stack import free_ports
from tests.support.envoy import envoy_in_front, render_for_test
from tests.support.http import TLS

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

HI = [{"role": "user", "content": "Hi there"}]


async def test_models_are_listed_and_found(client: openai.AsyncOpenAI) -> None:
    listed = await client.models.list()
    assert [m.id for m in listed.data] == [MODEL]
    assert listed.data[0].object == "model" and listed.data[0].owned_by == "openai"
    found = await client.models.retrieve(MODEL)
    assert found.id == MODEL
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"


async def test_a_completion_is_answered_whole_and_stored(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    stack.fake.enqueue(Script(tokens=["Hello", " there", "!"], input_tokens=7))
    reply = await client.chat.completions.create(model=MODEL, messages=HI)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == MODEL
    choice = reply.choices[0]
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert (choice.message.role, choice.message.content) == ("assistant", "Hello there!")
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 3)
    assert reply.usage.total_tokens == 10
    extra = reply.model_extra or {}
    session = extra["aichat"]["session"]
    assert extra["aichat"]["outcome"] == "completed"
    assert extra["aichat"]["turn"].startswith(session + "/turns/")
    # The turn is stored for its user, like any StreamChat turn.
    stored = await stack.messages(user, session)
    assert [(m.role, m.text, m.state) for m in stored] == [
        (rpb.ROLE_USER, "Hi there", rpb.MESSAGE_STATE_COMPLETE),
        (rpb.ROLE_ASSISTANT, "Hello there!", rpb.MESSAGE_STATE_COMPLETE),
    ]


async def test_a_completion_streams_with_usage_last(
    client: openai.AsyncOpenAI, stack: ChatStack
) -> None:
    stack.fake.enqueue(Script(tokens=["One", " two", " three"], token_delay=0.02))
    stream = await client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three"
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishing[-1] == "stop" and set(finishing[:-1]) == {None}
    assert all(c.usage is None for c in chunks[:-1])  # only the last one carries usage
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 3


async def test_the_sync_client_streams_and_answers(
    base_url: str, token: str, stack: ChatStack
) -> None:
    def run() -> tuple[str, str]:
        with openai.OpenAI(base_url=base_url, api_key=token, max_retries=0) as sync:
            whole = sync.chat.completions.create(model=MODEL, messages=HI)
            streamed = sync.chat.completions.create(model=MODEL, messages=HI, stream=True)
            parts = [c.choices[0].delta.content or "" for c in streamed if c.choices]
            return whole.choices[0].message.content or "", "".join(parts)

    stack.fake.enqueue(Script(text="sync whole"), Script(text="sync streamed"))
    assert await asyncio.to_thread(run) == ("sync whole", "sync streamed")


async def test_the_wire_is_openais(base_url: str, token: str, stack: ChatStack) -> None:
    """What the SDKs read, byte for byte: SSE data lines, [DONE], chunk objects."""
    auth = {"Authorization": f"Bearer {token}"}
    stack.fake.enqueue(Script(tokens=["a", "b"], token_delay=0.02), Script(text="whole"))
    async with httpx2.AsyncClient(verify=TLS, timeout=20) as http:
        body = {"model": MODEL, "messages": HI, "stream": True}
        async with http.stream(
            "POST", f"{base_url}/chat/completions", json=body, headers=auth
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-aichat-session"].startswith("sessions/")
            raw = (await response.aread()).decode()
        events = [e for e in raw.split("\n\n") if e]
        assert all(e.startswith("data: ") for e in events), raw
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert all("usage" not in c for c in chunks)  # not asked for
        whole = await http.post(
            f"{base_url}/chat/completions", json={"model": MODEL, "messages": HI}, headers=auth
        )
        assert whole.headers["content-type"].startswith("application/json")
        assert whole.json()["object"] == "chat.completion"
        assert whole.headers["x-request-id"]


async def test_sdk_exceptions_follow_our_codes(
    base_url: str, client: openai.AsyncOpenAI, stack: ChatStack
) -> None:
    stranger = openai.OpenAI(base_url=base_url, api_key="not-a-token", max_retries=0)
    with stranger, pytest.raises(openai.AuthenticationError) as no_token:
        await asyncio.to_thread(stranger.models.list)
    assert no_token.value.status_code == 401
    assert no_token.value.code == "invalid_api_key"
    assert isinstance(no_token.value.body, dict) and no_token.value.body["message"]

    with pytest.raises(openai.NotFoundError) as unknown:
        await client.chat.completions.create(model="gpt-none", messages=HI)
    assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")

    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=MODEL, messages=HI, n=2)
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "n")
    assert "n" in refused.value.message

    # The provider rejects our key: INTERNAL, never the caller's 401.
    stack.fake.enqueue(Script(error_status=401))
    with pytest.raises(openai.InternalServerError) as ours:
        await client.chat.completions.create(model=MODEL, messages=HI)
    assert ours.value.status_code == 500 and ours.value.code == "provider_auth_failed"


async def test_a_model_that_is_down_is_a_503_even_streamed(
    client: openai.AsyncOpenAI, stack: ChatStack
) -> None:
    for stream in (False, True):
        # The stack retries once before giving up.
        stack.fake.enqueue(Script(error_status=503), Script(error_status=503))
        with pytest.raises(openai.InternalServerError) as down:
            await client.chat.completions.create(model=MODEL, messages=HI, stream=stream)
        assert down.value.status_code == 503
        assert down.value.code == "provider_unavailable"


async def test_a_stream_that_breaks_ends_with_an_error_event(
    client: openai.AsyncOpenAI, stack: ChatStack
) -> None:
    stack.fake.enqueue(
        Script(tokens=["partial ", "answer ", "lost"], error_after=2, token_delay=0.05)
    )
    stream = await client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    seen = ""
    with pytest.raises(openai.APIError) as broke:
        async for chunk in stream:
            seen += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert seen == "partial answer "
    assert isinstance(broke.value.body, dict) and broke.value.body["type"]


async def test_a_busy_session_is_a_conflict(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    gate = asyncio.Event()
    stack.fake.enqueue(Script(tokens=["held ", "open"], gate_after=1, gate=gate))
    headers = {"X-Aichat-Session": session}
    first = await client.chat.completions.create(
        model=MODEL, messages=HI, stream=True, extra_headers=headers
    )
    first_chunks = first.__aiter__()
    await first_chunks.__anext__()  # the turn holds the session
    try:
        with pytest.raises(openai.ConflictError) as busy:
            await client.chat.completions.create(model=MODEL, messages=HI, extra_headers=headers)
        assert busy.value.code == "session_busy"
    finally:
        gate.set()
        async for _ in first_chunks:
            pass


async def test_envoys_own_replies_are_openai_errors_too(
    stack: ChatStack,
    dev_keys: DevKeys,
    token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A listener that is down: Envoy answers 503 itself, in OpenAI's error shape."""
    (closed,) = free_ports(1)
    config = render_for_test(
        backend_port=stack.server.port, openai_port=closed, jwks_path=dev_keys.jwks_path
    )
    async with envoy_in_front(config, tmp_path_factory.mktemp("envoy-dead-door")) as edge:
        client = openai.AsyncOpenAI(base_url=edge.base_url + "/v1", api_key=token, max_retries=0)
        async with client:
            with pytest.raises(openai.InternalServerError) as down:
                await client.models.list()
    assert down.value.status_code == 503
    assert isinstance(down.value.body, dict)
    assert down.value.body["type"] == "server_error" and down.value.body["message"]
