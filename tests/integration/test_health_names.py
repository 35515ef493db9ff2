"""grpc.health.v1 names that are not checked here get NOT_FOUND with a reason and a message."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.grpc_helpers import error_info
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(30)


async def check(channel: grpc.aio.Channel, service: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service)
        )
    return err.value


async def test_shared_limits_without_redis_say_why(sqlite_url: str) -> None:
    async with running_server(make_settings(sqlite_url)) as server:
        err = await check(server.channel, "aichat.limits.shared")
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert "AICHAT_REDIS_URL is not set" in (err.details() or "")
        info = error_info(err)
        assert info.reason == "HEALTH_SERVICE_NOT_CONFIGURED"
        assert info.metadata["service"] == "aichat.limits.shared"

        err = await check(server.channel, "aichat.nothing")
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(err).reason == "HEALTH_SERVICE_UNKNOWN"
        assert "'aichat.v1.ChatService'" in (err.details() or "")  # the names there are

        serving = await health_pb2_grpc.HealthStub(server.channel).Check(
            health_pb2.HealthCheckRequest(service="aichat.v1.ChatService")
        )
        assert serving.status == health_pb2.HealthCheckResponse.SERVING
