"""Retry and fallback before the first token, through a real adapter and the fake upstream."""

from __future__ import annotations

import asyncio

import pytest

from aichat_backend.errors import (
    AichatError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from aichat_backend.providers.base import ChatProvider, ProviderRequest, TextChunk
from aichat_backend.providers.retry import (
    RetryPolicy,
    StreamTarget,
    backoff_delay,
    open_stream_with_retry,
)
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.integration.providers.support import (
    HANG_UP_WITHIN,
    Upstream,
    anthropic_provider,
    ask,
    openai_provider,
    text_of,
)

pytestmark = pytest.mark.timeout(10)

POLICY = RetryPolicy(attempts=3, base_delay=0.1, max_delay=1.0, max_retry_after=5.0)


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def target(provider: ChatProvider, model: str) -> StreamTarget:
    return StreamTarget(label=f"label-{model}", model=model, resolve=lambda: provider)


async def run(
    targets: list[StreamTarget], sleeps: Sleeps, request: ProviderRequest | None = None
) -> str:
    async with open_stream_with_retry(
        request or ask(), targets, policy=POLICY, sleep=sleeps, rand=lambda: 0.5
    ) as events:
        return text_of([event async for event in events])


def models_asked(upstream: Upstream) -> list[str]:
    return [r.body["model"] for r in upstream.server.requests]


async def test_retries_a_503_before_the_first_token(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(error_status=503), Script(text="recovered"))
    sleeps = Sleeps()

    text = await run([target(upstream.provider, "primary")], sleeps)

    assert text == "recovered"
    assert models_asked(upstream) == ["primary", "primary"]
    assert len(sleeps.delays) == 1


async def test_retries_when_the_stream_drops_before_any_token(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(text="lost", cut_after=0), Script(text="second try"))
    assert await run([target(upstream.provider, "m")], Sleeps()) == "second try"


async def test_an_upstream_silent_before_its_first_token_falls_back(
    hasty_upstream: Upstream,
) -> None:
    # Headers, then nothing for longer than the timeout: the stall watch stops the first
    # try as a timeout, which (as the SDK's own timeout did) is not waited out twice at
    # the same model but sends the turn to its fallback.
    hasty_upstream.server.enqueue(
        Script(text="too late", ttft=5.0, ttft_after_headers=True), Script(text="fallback")
    )
    sleeps = Sleeps()
    targets = [
        target(hasty_upstream.provider, "primary"),
        target(hasty_upstream.provider, "backup"),
    ]
    assert await run(targets, sleeps) == "fallback"
    assert models_asked(hasty_upstream) == ["primary", "backup"]
    assert sleeps.delays == []


async def test_honours_retry_after_up_to_the_cap(upstream: Upstream) -> None:
    upstream.server.enqueue(
        Script(error_status=429, retry_after=2),
        Script(error_status=429, retry_after=60),
        Script(text="ok"),
    )
    sleeps = Sleeps()

    assert await run([target(upstream.provider, "m")], sleeps) == "ok"
    assert sleeps.delays == [2.0, POLICY.max_retry_after]


async def test_falls_back_when_the_primary_keeps_failing(upstream: Upstream) -> None:
    upstream.server.enqueue(*[Script(error_status=503)] * POLICY.attempts, Script(text="from b"))
    sleeps = Sleeps()

    text = await run(
        [target(upstream.provider, "model-a"), target(upstream.provider, "model-b")], sleeps
    )

    assert text == "from b"
    assert models_asked(upstream) == ["model-a"] * POLICY.attempts + ["model-b"]
    assert len(sleeps.delays) == POLICY.attempts - 1  # no pause before a fallback


async def test_auth_failure_goes_straight_to_the_fallback(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(error_status=401), Script(text="fallback"))
    sleeps = Sleeps()

    text = await run([target(upstream.provider, "a"), target(upstream.provider, "b")], sleeps)

    assert text == "fallback"
    assert models_asked(upstream) == ["a", "b"]
    assert sleeps.delays == []


async def test_rejected_input_is_neither_retried_nor_sent_to_fallbacks(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(error_status=400))
    with pytest.raises(InvalidArgument) as caught:
        await run([target(upstream.provider, "a"), target(upstream.provider, "b")], Sleeps())
    assert caught.value.reason == "PROVIDER_REJECTED_INPUT"
    assert caught.value.metadata["model"] == "label-a"
    assert models_asked(upstream) == ["a"]


async def test_no_retry_after_the_first_token(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(tokens=["partial ", "answer"], cut_after=1))
    received: list[str] = []
    with pytest.raises(Unavailable) as caught:
        async with open_stream_with_retry(
            ask(), [target(upstream.provider, "a"), target(upstream.provider, "b")], sleep=Sleeps()
        ) as events:
            async for event in events:
                assert isinstance(event, TextChunk)
                received.append(event.text)
    assert caught.value.reason == "PROVIDER_STREAM_INTERRUPTED"
    assert received == ["partial "]
    assert models_asked(upstream) == ["a"]


async def test_all_targets_failing_raises_the_last_error(upstream: Upstream) -> None:
    upstream.server.enqueue(
        *[Script(error_status=503)] * POLICY.attempts,
        *[Script(error_status=429)] * POLICY.attempts,
    )
    with pytest.raises(ResourceExhausted) as caught:
        await run([target(upstream.provider, "a"), target(upstream.provider, "b")], Sleeps())
    assert caught.value.metadata["model"] == "label-b"
    assert len(upstream.server.requests) == 2 * POLICY.attempts


async def test_unconfigured_fallback_does_not_hide_the_primary_error(upstream: Upstream) -> None:
    upstream.server.enqueue(*[Script(error_status=503)] * POLICY.attempts)

    def not_configured() -> ChatProvider:
        raise FailedPrecondition("no key", reason="PROVIDER_NOT_CONFIGURED")

    targets = [
        target(upstream.provider, "a"),
        StreamTarget(label="b", model="b", resolve=not_configured),
    ]
    with pytest.raises(Unavailable) as caught:
        await run(targets, Sleeps())
    assert caught.value.reason == "PROVIDER_UNAVAILABLE"


async def test_each_target_gets_its_own_model_and_temperature(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(error_status=401), Script(text="ok"))
    targets = [
        StreamTarget("a", "model-a", lambda: upstream.provider, temperature=0.1),
        StreamTarget("b", "model-b", lambda: upstream.provider, temperature=0.9),
    ]
    await run(targets, Sleeps())
    if upstream.family == "openai":  # Anthropic's API takes no temperature any more
        assert [r.body.get("temperature") for r in upstream.server.requests] == [0.1, 0.9]
    assert models_asked(upstream) == ["model-a", "model-b"]


async def test_cancelling_during_a_retry_leaves_nothing_open(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(error_status=503), Script(text="slow", ttft=30.0))
    task = asyncio.create_task(run([target(upstream.provider, "m")], Sleeps()))
    await upstream.server.wait_requests(2, HANG_UP_WITHIN)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await upstream.server.wait_disconnect(HANG_UP_WITHIN)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.2, max_delay=1.0)
    error = AichatError("x")
    assert backoff_delay(0, error, policy, lambda: 0.0) == pytest.approx(0.1)
    assert backoff_delay(0, error, policy, lambda: 1.0) == pytest.approx(0.2)
    assert backoff_delay(2, error, policy, lambda: 1.0) == pytest.approx(0.8)
    assert backoff_delay(10, error, policy, lambda: 1.0) == pytest.approx(1.0)


async def test_falls_back_across_upstreams_and_families() -> None:
    async with (
        FakeLLMServer(default=Script(error_status=503)) as down,
        FakeLLMServer() as backup,
    ):
        primary = openai_provider(down.base_url)
        fallback = anthropic_provider(backup.root_url)
        try:
            text = await run([target(primary, "gpt"), target(fallback, "claude")], Sleeps())
        finally:
            await primary.aclose()
            await fallback.aclose()
    assert text == "Echo: hello"
    assert len(down.requests) == POLICY.attempts
    assert [r.path for r in backup.requests] == ["/v1/messages"]
