"""A daily budget in money, as clients of two replicas sharing one Redis meet it:
RESOURCE_EXHAUSTED, COST_BUDGET_EXHAUSTED and RetryInfo until UTC midnight."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
import pytest
from aichat.v1 import admin_service_pb2 as apb
from aichat.v1 import admin_service_pb2_grpc
from aichat.v1 import session_service_pb2 as spb

from aichat_backend.limits.resilient import ResilientLimiter
from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack
from tests.support.grpc_helpers import error_info, md, retry_info
from tests.support.reasoning_models import reasoning_stack

pytestmark = pytest.mark.timeout(60)


async def _counting_on_redis(stack: ChatStack) -> None:
    """Until the replica counts on Redis. A loaded machine can time a Redis call out; the
    replica then counts per process until its probe finds Redis again and replays what it
    counted meanwhile. What is tested is a spend one replica shares with the other."""
    limiter = stack.server.app.limiter
    assert isinstance(limiter, ResilientLimiter)
    deadline = time.monotonic() + 20
    while not await limiter.probe():  # each probe waits on Redis itself
        assert time.monotonic() < deadline, limiter.degraded()


async def test_a_cost_budget_spent_on_one_replica_is_refused_on_the_other(
    redis_url: str, tmp_path: Path
) -> None:
    user = f"spender-{uuid.uuid4().hex[:10]}"  # its own Redis keys
    budget = {"daily_cost_budget": "0.01", "redis_url": redis_url, "admin_users": "ops"}
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    async with (
        reasoning_stack(f"sqlite:///{a_dir / 'a.db'}", a_dir, **budget) as a,
        reasoning_stack(f"sqlite:///{b_dir / 'b.db'}", b_dir, **budget) as b,
    ):
        mine = await b.server.sessions.GetMyUsage(spb.GetMyUsageRequest(), metadata=md(user))
        budget_pb = mine.daily_cost_budget
        assert (budget_pb.currency_code, budget_pb.units, budget_pb.nanos) == ("EUR", 0, 10_000_000)
        admin = admin_service_pb2_grpc.AdminServiceStub(b.server.channel)
        status = await admin.GetRuntimeStatus(apb.GetRuntimeStatusRequest(), metadata=md("ops"))
        assert status.limits.daily_cost_budget == budget_pb
        # 1000 * 3 + 500 * 15 per million: 0.0105 EUR, past the 0.01 budget.
        a.fake.enqueue(Script(text="costly", input_tokens=1000, output_tokens=500))
        await a.turn(user, await a.new_session(user), "spend")
        await _counting_on_redis(a)
        await _counting_on_redis(b)
        session = await b.new_session(user)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await b.turn(user, session, "more")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(refused.value)
        assert info.reason == "COST_BUDGET_EXHAUSTED"
        assert (info.metadata["used"], info.metadata["limit"]) == ("0.0105", "0.01")
        assert info.metadata["currency"] == "EUR"
        retry = retry_info(refused.value)
        assert retry is not None and 0 < retry.retry_delay.seconds <= 86_400
        assert b.fake.request_count == 0  # refused before any model was asked
        # Another user is not held by this one's spending.
        b.fake.enqueue(Script(text="fine"))
        other = f"other-{uuid.uuid4().hex[:10]}"
        events = await b.turn(other, await b.new_session(other), "hi")
        assert events[-1].turn_ended.message.text == "fine"
