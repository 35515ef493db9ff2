"""Both adapters against the fake upstream over real HTTP: events, request shapes, errors."""

from __future__ import annotations

import asyncio
import base64

import pytest

from aichat_backend.errors import (
    AichatError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from aichat_backend.providers.base import (
    ChatMessage,
    ChatRole,
    ImagePart,
    ProviderEvent,
    ProviderRequest,
    StreamFinished,
    TextChunk,
    ToolCallRequest,
    ToolCallsReady,
    ToolSpec,
)
from aichat_backend.providers.errors import DEFAULT_RETRY_AFTER_SECONDS
from aichat_devtools.fake_llm import Script
from tests.integration.providers.support import (
    API_KEY,
    HANG_UP_WITHIN,
    SDK_TIMEOUT,
    Upstream,
    anthropic_provider,
    ask,
    collect,
    openai_provider,
    text_of,
)

pytestmark = pytest.mark.timeout(10)

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
)


# --- streaming -------------------------------------------------------------------------


async def test_streamed_text_and_usage(upstream: Upstream) -> None:
    tokens = ["Hel", "lo", ", ", "wor", "ld", "!"]
    upstream.server.enqueue(Script(tokens=tokens, input_tokens=42, output_tokens=6))

    events = await collect(upstream.provider, ask())

    assert [e.text for e in events if isinstance(e, TextChunk)] == tokens
    assert events[-1] == StreamFinished("stop", input_tokens=42, output_tokens=6)
    assert sum(isinstance(e, StreamFinished) for e in events) == 1


async def test_default_echo(upstream: Upstream) -> None:
    events = await collect(upstream.provider, ask("ping me back"))
    assert text_of(events) == "Echo: ping me back"


async def test_tool_call_deltas_are_assembled(upstream: Upstream) -> None:
    upstream.server.enqueue(
        Script(
            text="Let me check.",
            tool_calls=[
                ("call_1", "get_weather", {"city": "Paris", "days": [1, 2, 3]}),
                ("call_2", "get_time", {"tz": "Europe/Paris"}),
            ],
            tool_args_chunk=4,  # many small argument fragments
            output_tokens=20,
        )
    )

    events = await collect(upstream.provider, ask(tools=(WEATHER,)))

    assert text_of(events) == "Let me check."
    ready = [e for e in events if isinstance(e, ToolCallsReady)]
    assert ready == [
        ToolCallsReady(
            (
                ToolCallRequest("call_1", "get_weather", {"city": "Paris", "days": [1, 2, 3]}),
                ToolCallRequest("call_2", "get_time", {"tz": "Europe/Paris"}),
            )
        )
    ]
    assert events.index(ready[0]) == len(events) - 2  # just before StreamFinished
    finished = events[-1]
    assert isinstance(finished, StreamFinished)
    assert finished.finish_reason == "tool_calls"
    assert finished.output_tokens == 20


async def test_unparseable_tool_arguments_are_kept_raw(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(tool_calls=[("call_1", "get_weather", '{"city": "Par')]))

    events = await collect(upstream.provider, ask(tools=(WEATHER,)))

    ready = next(e for e in events if isinstance(e, ToolCallsReady))
    assert ready.calls[0].arguments == {"_raw": '{"city": "Par'}


async def test_length_finish_reason(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(text="cut short", finish_reason="length"))
    events = await collect(upstream.provider, ask(max_output_tokens=2))
    assert events[-1] == StreamFinished("length", input_tokens=_input(events), output_tokens=2)
    limit_field = {"openai": "max_completion_tokens", "anthropic": "max_tokens"}[upstream.family]
    assert upstream.last_body[limit_field] == 2


async def test_stop_sequences_and_end_user_reach_both_families(upstream: Upstream) -> None:
    """What the OpenAI-compatible API passes on: each family's own fields for them."""
    upstream.server.enqueue(Script(text="one two"))
    await collect(upstream.provider, ask(stop=("END", "STOP"), end_user="customer-7"))
    body = upstream.last_body
    if upstream.family == "openai":
        assert (body["stop"], body["user"]) == (["END", "STOP"], "customer-7")
    else:
        assert body["stop_sequences"] == ["END", "STOP"]
        assert body["metadata"] == {"user_id": "customer-7"}
    upstream.server.enqueue(Script(text="plain"))
    await collect(upstream.provider, ask())
    assert not {"stop", "user", "stop_sequences", "metadata"} & set(upstream.last_body)


def _input(events: list[ProviderEvent]) -> int:
    finished = events[-1]
    assert isinstance(finished, StreamFinished)
    return finished.input_tokens


# --- what reaches the upstream ---------------------------------------------------------

HISTORY = (
    ChatMessage(ChatRole.USER, "What's the weather in Paris and Rome?"),
    ChatMessage(
        ChatRole.ASSISTANT,
        "Checking both.",
        tool_calls=(
            ToolCallRequest("call_p", "get_weather", {"city": "Paris"}),
            ToolCallRequest("call_r", "get_weather", {"city": "Rome"}),
        ),
    ),
    ChatMessage(ChatRole.TOOL, "18C sunny", tool_call_id="call_p"),
    ChatMessage(ChatRole.TOOL, "city service down", tool_call_id="call_r", is_error=True),
    ChatMessage(ChatRole.ASSISTANT, "Paris is 18C; Rome failed."),
    ChatMessage(ChatRole.USER, "Thanks"),
)


async def test_openai_request_shape(openai_upstream: Upstream) -> None:
    upstream = openai_upstream
    request = ProviderRequest(
        model="gpt-test",
        messages=HISTORY,
        system_prompt="You are terse.",
        tools=(WEATHER,),
        temperature=0.3,
    )
    await collect(upstream.provider, request)

    sent = upstream.server.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    body = upstream.last_body
    assert body["model"] == "gpt-test"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": WEATHER.input_schema,
            },
        }
    ]
    messages = body["messages"]
    assert messages[0] == {"role": "system", "content": "You are terse."}
    assert messages[1] == {"role": "user", "content": "What's the weather in Paris and Rome?"}
    assistant = messages[2]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "Checking both."
    assert [(c["id"], c["type"], c["function"]["name"]) for c in assistant["tool_calls"]] == [
        ("call_p", "function", "get_weather"),
        ("call_r", "function", "get_weather"),
    ]
    assert assistant["tool_calls"][1]["function"]["arguments"] == '{"city": "Rome"}'
    assert messages[3] == {"role": "tool", "tool_call_id": "call_p", "content": "18C sunny"}
    assert messages[4]["role"] == "tool"
    assert messages[4]["tool_call_id"] == "call_r"
    assert "city service down" in messages[4]["content"]
    assert messages[5] == {"role": "assistant", "content": "Paris is 18C; Rome failed."}
    assert messages[6] == {"role": "user", "content": "Thanks"}
    assert len(messages) == 7


async def test_anthropic_request_shape(anthropic_upstream: Upstream) -> None:
    upstream = anthropic_upstream
    request = ProviderRequest(
        model="claude-test",
        messages=HISTORY,
        system_prompt="You are terse.",
        tools=(WEATHER,),
    )
    await collect(upstream.provider, request)

    sent = upstream.server.requests[-1]
    assert sent.path == "/v1/messages"
    assert API_KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    body = upstream.last_body
    assert body["model"] == "claude-test"
    assert body["stream"] is True
    assert body["max_tokens"] == 4096
    assert body["system"] == "You are terse."
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER.input_schema,
        }
    ]
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == [
        {"type": "text", "text": "What's the weather in Paris and Rome?"}
    ]
    assert messages[1]["content"] == [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_p", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_r", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    # Both results of the two-call turn travel in one user message, the error flagged.
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_p", "content": "18C sunny"},
        {
            "type": "tool_result",
            "tool_use_id": "call_r",
            "content": "city service down",
            "is_error": True,
        },
    ]
    assert messages[3]["content"] == [{"type": "text", "text": "Paris is 18C; Rome failed."}]
    assert messages[4]["content"] == [{"type": "text", "text": "Thanks"}]


PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"


async def test_images_are_sent_as_image_parts(upstream: Upstream) -> None:
    message = ChatMessage(ChatRole.USER, "What is this?", images=(ImagePart("image/png", PNG),))
    await collect(upstream.provider, ProviderRequest(model="m", messages=(message,)))

    encoded = base64.b64encode(PNG).decode()
    content = upstream.last_body["messages"][-1]["content"]
    if upstream.family == "openai":
        assert content == [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
        ]
    else:
        assert content == [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": encoded},
            },
            {"type": "text", "text": "What is this?"},
        ]


# --- errors ----------------------------------------------------------------------------


async def open_and_fail(upstream: Upstream, script: Script) -> AichatError:
    upstream.server.enqueue(script)
    with pytest.raises(AichatError) as caught:
        await collect(upstream.provider, ask())
    return caught.value


async def test_rate_limited_carries_retry_after(upstream: Upstream) -> None:
    error = await open_and_fail(upstream, Script(error_status=429, retry_after=7))
    assert isinstance(error, ResourceExhausted)
    assert error.reason == "PROVIDER_RATE_LIMITED"
    assert error.retry_after == 7
    assert error.metadata["provider"] == upstream.family
    assert error.metadata["upstream_status"] == "429"


async def test_rate_limited_without_header_gets_default_retry_after(upstream: Upstream) -> None:
    error = await open_and_fail(upstream, Script(error_status=429, retry_after=None))
    assert isinstance(error, ResourceExhausted)
    assert error.retry_after == DEFAULT_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors_are_unavailable(upstream: Upstream, status: int) -> None:
    error = await open_and_fail(upstream, Script(error_status=status))
    assert isinstance(error, Unavailable)
    assert error.reason == "PROVIDER_UNAVAILABLE"
    assert error.metadata["upstream_status"] == str(status)


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key_is_internal_not_unauthenticated(
    upstream: Upstream, status: int
) -> None:
    error = await open_and_fail(upstream, Script(error_status=status))
    assert isinstance(error, Internal)
    assert error.reason == "PROVIDER_AUTH_FAILED"


async def test_wrong_key_against_a_key_checking_upstream(upstream: Upstream) -> None:
    upstream.server.api_key = "a-different-key"
    error = await open_and_fail(upstream, Script(text="never sent"))
    assert error.reason == "PROVIDER_AUTH_FAILED"
    assert API_KEY not in error.message


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_rejected_input_is_invalid_argument(upstream: Upstream, status: int) -> None:
    error = await open_and_fail(
        upstream,
        Script(
            error_status=status,
            error_message="messages.0.content: Input should be a valid list; "
            "key sk-live-abcdef0123456789",
        ),
    )
    assert isinstance(error, InvalidArgument)
    assert error.reason == "PROVIDER_REJECTED_INPUT"
    # Upstream text may be shown to the caller, but never anything key-shaped.
    assert "sk-live-abcdef0123456789" not in error.message


async def test_unknown_upstream_model(upstream: Upstream) -> None:
    error = await open_and_fail(upstream, Script(error_status=404))
    assert isinstance(error, FailedPrecondition)
    assert error.reason == "MODEL_NOT_FOUND"


@pytest.mark.parametrize("after_headers", [False, True], ids=["before-headers", "after-headers"])
async def test_slow_first_token_is_deadline_exceeded(
    hasty_upstream: Upstream, after_headers: bool
) -> None:
    error = await open_and_fail(
        hasty_upstream, Script(text="too late", ttft=5.0, ttft_after_headers=after_headers)
    )
    assert isinstance(error, DeadlineExceeded)
    assert error.reason == "PROVIDER_TIMEOUT"
    # The client gave up and hung up; the fake noticed.
    await hasty_upstream.server.wait_disconnect(HANG_UP_WITHIN)


async def test_an_upstream_silent_mid_answer_is_deadline_exceeded(hasty_upstream: Upstream) -> None:
    # Two tokens, then silence with the socket open: the stall watch (not the HTTP
    # client's read timeout, which streams are sent without) ends it after SDK_TIMEOUT.
    hasty_upstream.server.enqueue(Script(tokens=["one ", "two ", "three"], hang_after=2))
    received: list[str] = []
    with pytest.raises(DeadlineExceeded) as caught:
        async with hasty_upstream.provider.stream(ask()) as events:
            async for event in events:
                if isinstance(event, TextChunk):
                    received.append(event.text)
    assert caught.value.reason == "PROVIDER_TIMEOUT"
    assert caught.value.metadata["provider"] == hasty_upstream.family
    assert received == ["one ", "two "]
    await hasty_upstream.server.wait_disconnect(HANG_UP_WITHIN)


async def test_a_slow_stream_that_never_goes_silent_for_a_period_is_not_cut(
    hasty_upstream: Upstream,
) -> None:
    # Each token comes 0.4 of the timeout after the last; the whole answer takes two
    # timeouts and more. Silence is what is bounded, not the answer's length.
    tokens = [f"t{i} " for i in range(6)]
    hasty_upstream.server.enqueue(Script(tokens=tokens, token_delay=SDK_TIMEOUT * 0.4))
    events = await collect(hasty_upstream.provider, ask())
    assert text_of(events) == "".join(tokens)


async def test_stream_cut_mid_answer(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(tokens=["one ", "two ", "three ", "four"], cut_after=2))
    received: list[str] = []
    with pytest.raises(Unavailable) as caught:
        async with upstream.provider.stream(ask()) as events:
            async for event in events:
                assert isinstance(event, TextChunk)
                received.append(event.text)
    assert caught.value.reason == "PROVIDER_STREAM_INTERRUPTED"
    assert received == ["one ", "two "]


async def test_error_event_mid_stream(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(tokens=["one ", "two "], error_after=1, error_status=529))
    received: list[ProviderEvent] = []
    with pytest.raises(Unavailable) as caught:
        async with upstream.provider.stream(ask()) as events:
            async for event in events:
                received.append(event)
    assert caught.value.reason == "PROVIDER_UNAVAILABLE"
    assert received == [TextChunk("one ")]


async def test_unreachable_upstream_is_unavailable(upstream: Upstream) -> None:
    port = upstream.server.port
    await upstream.server.close()
    url = f"http://127.0.0.1:{port}"
    provider = (
        openai_provider(url + "/v1") if upstream.family == "openai" else anthropic_provider(url)
    )
    with pytest.raises(Unavailable) as caught:
        await collect(provider, ask())
    assert caught.value.reason == "PROVIDER_UNAVAILABLE"
    await provider.aclose()


# --- cancellation ----------------------------------------------------------------------


async def test_cancelling_the_consumer_closes_the_upstream(upstream: Upstream) -> None:
    # Two tokens, then the upstream goes quiet with the socket open, as a slow model.
    upstream.server.enqueue(Script(tokens=["a ", "b ", "c "], hang_after=2))
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async with upstream.provider.stream(ask()) as events:
            async for _event in events:
                first_chunk.set()

    task = asyncio.create_task(consume())
    await first_chunk.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await upstream.server.wait_disconnect(HANG_UP_WITHIN)


async def test_cancelling_before_the_first_token_closes_the_upstream(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(text="slow", ttft=30.0))
    task = asyncio.create_task(collect(upstream.provider, ask()))
    await upstream.server.wait_requests(1, HANG_UP_WITHIN)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await upstream.server.wait_disconnect(HANG_UP_WITHIN)


async def test_leaving_the_block_early_closes_the_upstream(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(tokens=["a ", "b ", "c "], hang_after=1))
    async with upstream.provider.stream(ask()) as events:
        async for _event in events:
            break
    await upstream.server.wait_disconnect(HANG_UP_WITHIN)
