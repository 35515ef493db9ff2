"""The rate-limit bypass list on two replicas sharing PostgreSQL and Redis: added on one,
in force on the other within its refresh; removed there, enforced again on the first."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import pytest
from aichat.v1 import admin_service_pb2 as apb
from aichat.v1 import admin_service_pb2_grpc
from aichat.v1 import session_service_pb2 as spb

from tests.support.grpc_helpers import error_info, md
from tests.support.server import Running, make_settings, running_server

pytestmark = pytest.mark.timeout(60)

# Per run: the request buckets live in the shared Redis, and the admin's calls count too.
ADMIN = f"ops-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def replicas(
    pg_database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Running, Running]]:
    async with AsyncExitStack() as stack:
        started = []
        for name in ("replica-a", "replica-b"):
            settings = make_settings(
                pg_database_url,
                data_dir=tmp_path / name,
                replica_id=name,
                redis_url=redis_url,
                rate_rps=0.01,
                rate_burst=3,  # the admin makes three calls
                admin_users=ADMIN,
                bypass_refresh_seconds=0.5,
            )
            started.append(await stack.enter_async_context(running_server(settings)))
        yield started[0], started[1]


async def limited(server: Running, user: str) -> bool:
    try:
        await server.sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(user))
    except grpc.aio.AioRpcError as err:
        assert error_info(err).reason == "RATE_LIMITED"
        return True
    return False


async def test_a_bypass_added_on_one_replica_applies_on_the_other(
    replicas: tuple[Running, Running], user: str
) -> None:
    a, b = replicas
    # The limit is shared through Redis: the bucket drained on A is empty on B.
    assert [await limited(a, user) for _ in range(3)] == [False] * 3
    assert await limited(b, user) is True
    assert a.app.limiter.degraded() is None  # shared limits in force

    created = await admin_service_pb2_grpc.AdminServiceStub(a.channel).CreateRateLimitBypass(
        apb.CreateRateLimitBypassRequest(
            rate_limit_bypass=apb.RateLimitBypass(
                subject_type=apb.BYPASS_SUBJECT_TYPE_USER, subject=user, reason="two replicas"
            )
        ),
        metadata=md(ADMIN),
    )
    assert await b.app.admin.bypass.wait_until(lambda: b.app.admin.bypass.exempts(user, None), 10)
    assert [await limited(b, user) for _ in range(5)] == [False] * 5
    assert [await limited(a, user) for _ in range(5)] == [False] * 5

    # Removed through B: A enforces the (still empty, shared) bucket again.
    await admin_service_pb2_grpc.AdminServiceStub(b.channel).DeleteRateLimitBypass(
        apb.DeleteRateLimitBypassRequest(name=created.name), metadata=md(ADMIN)
    )
    bypass_a = a.app.admin.bypass
    assert await bypass_a.wait_until(lambda: not bypass_a.exempts(user, None), 10)
    assert await limited(a, user) is True
    status = await admin_service_pb2_grpc.AdminServiceStub(b.channel).GetRuntimeStatus(
        apb.GetRuntimeStatusRequest(), metadata=md(ADMIN)
    )
    assert status.replica_id == "replica-b" and status.limits.shared is True
