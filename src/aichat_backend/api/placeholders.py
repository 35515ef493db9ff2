"""Services of the contract whose implementation has not landed yet.

They answer UNIMPLEMENTED with a reason, through the same error path as everything
else, instead of the generated base class's bare NotImplementedError.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from aichat.v1 import tool_service_pb2_grpc

from aichat_backend.errors import Unimplemented


def not_yet(what: str) -> NoReturn:
    raise Unimplemented(
        f"{what} is not available in this version of the server yet",
        reason="NOT_YET_AVAILABLE",
        metadata={"method": what},
    )


class PendingToolServicer(tool_service_pb2_grpc.ToolServiceServicer):
    async def ListTools(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        not_yet("ToolService.ListTools")

    async def ListToolServers(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        not_yet("ToolService.ListToolServers")

    async def CallTool(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        not_yet("ToolService.CallTool")
