"""grpc.health.v1 with answers an operator can act on.

The reference servicer answers a name it does not know with a bare NOT_FOUND. Ours says
why: a dependency that is not configured (``aichat.limits.shared`` without Redis) names the
setting that would add it, any other name lists the names there are. NOT_FOUND stays the
code, as the health protocol specifies for an unknown service, so probes behave as before.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from grpc_health.v1 import health, health_pb2

from aichat_backend.api.errors import to_status
from aichat_backend.api.interceptor import abort_with
from aichat_backend.errors import NotFound
from aichat_backend.reasons import Reason


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    def __init__(self, not_configured: Mapping[str, str] | None = None) -> None:
        """``not_configured``: service name → why it is not checked in this process."""
        super().__init__()
        self._not_configured = dict(not_configured or {})

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        name = request.service
        status = self._server_status.get(name)
        if status is not None:
            return health_pb2.HealthCheckResponse(status=status)
        why = self._not_configured.get(name)
        if why is None:
            known = ", ".join(repr(n) for n in sorted(self._server_status))
            why = f"no health service {name[:100]!r} here; the names are: {known}"
            reason = Reason.HEALTH_SERVICE_UNKNOWN
        else:
            reason = Reason.HEALTH_SERVICE_NOT_CONFIGURED
        await abort_with(
            context, to_status(NotFound(why, reason=reason, metadata={"service": name[:100]})), ""
        )
        raise AssertionError("abort returned")  # pragma: no cover: abort always raises
