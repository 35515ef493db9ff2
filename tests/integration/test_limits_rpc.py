"""Per-user limits as a client meets them: RESOURCE_EXHAUSTED with ErrorInfo and RetryInfo."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import session_service_pb2 as spb
from aichat.v1 import tool_service_pb2 as tpb
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aichat_devtools.fake_llm import Script
from tests.integration.test_observability import scrape, value
from tests.integration.tools.support import probe_entry
from tests.support.chat import chat_stack
from tests.support.grpc_helpers import error_info, md, retry_info
from tests.support.tool_stack import tool_stack

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


async def test_direct_tool_calls_take_a_turn_slot(tmp_path: Path, user: str) -> None:
    # Issue 24: CallTool ran outside the per-user limits (23 of 25 parallel calls of one
    # user went through). It takes one of the user's turn slots now, as a turn does.
    servers = {"probe": probe_entry()}
    async with tool_stack(
        "openai",
        f"sqlite:///{tmp_path / 'aichat.db'}",
        tmp_path,
        servers,
        max_concurrent_turns_per_user=2,
    ) as stack:
        request = tpb.CallToolRequest(
            name="toolServers/probe/tools/sleep", arguments=_struct({"seconds": 5})
        )

        async def call() -> str:
            try:
                await stack.server.tools.CallTool(request, metadata=md(user))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return error_info(exc).reason
            return "ran"

        outcomes = await asyncio.gather(*(call() for _ in range(3)))
        assert sorted(outcomes) == ["CONCURRENCY_LIMITED", "ran", "ran"]
        # A turn of the same user meets the same slots while two calls hold them.
        held = [asyncio.create_task(call()) for _ in range(2)]
        limiter = stack.server.app.limiter
        async with asyncio.timeout(10):
            while limiter.active_turns(user) < 2:  # type: ignore[attr-defined]  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        session = await stack.new_session(user)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.turn(user, session, "hello")
        assert error_info(err.value).reason == "CONCURRENCY_LIMITED"
        assert await asyncio.gather(*held) == ["ran", "ran"]


def _struct(values: dict[str, object]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out
