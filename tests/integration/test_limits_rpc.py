"""Per-user limits as a client meets them: RESOURCE_EXHAUSTED with ErrorInfo and RetryInfo."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import session_service_pb2 as spb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aichat_devtools.fake_llm import Script
from tests.integration.test_observability import scrape, value
from tests.support.chat import chat_stack
from tests.support.grpc_helpers import error_info, md, retry_info

pytestmark = pytest.mark.timeout(30)


async def test_rate_limit_per_user_with_retry_info(
    sqlite_url: str, user: str, other_user: str
) -> None:
    async with chat_stack(
        "openai",
        sqlite_url,
        rate_rps=0.5,
        rate_burst=3,
        metrics_address="127.0.0.1:0",
        limits_exempt_users="internal-svc",
    ) as stack:
        request = spb.ListSessionsRequest()
        for _ in range(3):
            await stack.server.sessions.ListSessions(request, metadata=md(user))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.server.sessions.ListSessions(request, metadata=md(user))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(err.value).reason == "RATE_LIMITED"
        retry = retry_info(err.value)
        assert retry is not None and retry.retry_delay.ToMilliseconds() > 0
        # Another user has a bucket of their own; an exempt identity has none.
        await stack.server.sessions.ListSessions(request, metadata=md(other_user))
        for _ in range(10):
            await stack.server.sessions.ListSessions(request, metadata=md("internal-svc"))
        s = scrape(stack.server.app.metrics_port)
        assert value(s, "aichat_rate_limited_total", reason="RATE_LIMITED") == 1


async def test_concurrent_turns_per_user(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url, max_concurrent_turns_per_user=1) as stack:
        first = await stack.new_session(user)
        second = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["busy"], hang_after=1))
        call = stack.server.chat.StreamChat(
            cpb.StreamChatRequest(session=first, text="one"), metadata=md(user)
        )
        async for event in call:
            if event.WhichOneof("event") == "text_delta":
                break
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.turn(user, second, "two")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(err.value).reason == "CONCURRENCY_LIMITED"
        call.cancel()
        # The slot comes back as the cancelled handler unwinds (no event marks that).
        limiter = stack.server.app.limiter
        async with asyncio.timeout(5):
            while limiter.active_turns(user):  # type: ignore[attr-defined]  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        stack.fake.enqueue(Script(tokens=["ok"]))
        events = await stack.turn(user, second, "three")
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED


async def test_daily_token_budget(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url, daily_token_budget=100) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["big"], input_tokens=90, output_tokens=20))
        await stack.turn(user, session, "spend it")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.turn(user, session, "more")
        assert error_info(err.value).reason == "TOKEN_BUDGET_EXHAUSTED"
        retry = retry_info(err.value)
        assert retry is not None and retry.retry_delay.seconds > 0
        assert len(stack.fake.requests) == 1


async def test_redis_down_is_reported_in_health_and_limits_still_apply(
    sqlite_url: str, user: str
) -> None:
    # Nothing listens on port 1: the shared limits are unreachable from the start.
    async with chat_stack(
        "openai", sqlite_url, redis_url="redis://127.0.0.1:1/0", rate_rps=0.1, rate_burst=2
    ) as stack:
        stub = health_pb2_grpc.HealthStub(stack.server.channel)
        overall = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        assert overall.status == health_pb2.HealthCheckResponse.SERVING
        limits = await stub.Check(health_pb2.HealthCheckRequest(service="aichat.limits.shared"))
        assert limits.status == health_pb2.HealthCheckResponse.NOT_SERVING
        request = spb.ListSessionsRequest()
        for _ in range(2):
            await stack.server.sessions.ListSessions(request, metadata=md(user))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.server.sessions.ListSessions(request, metadata=md(user))
        assert error_info(err.value).reason == "RATE_LIMITED"
