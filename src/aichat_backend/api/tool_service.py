"""ToolService: the MCP tool catalogue, server states, and direct calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from aichat.v1 import tool_service_pb2 as tpb
from aichat.v1 import tool_service_pb2_grpc
from google.protobuf import duration_pb2, json_format, struct_pb2

from aichat_backend import names
from aichat_backend.api.turn_limits import NO_LIMITS, TurnGate
from aichat_backend.engine.direct_calls import DirectToolCaller
from aichat_backend.request_context import current_user
from aichat_backend.tools.base import ApprovalPolicy, ServerState, ToolInfo, ToolProvider

APPROVAL_TO_PB = {
    ApprovalPolicy.AUTO: tpb.APPROVAL_POLICY_AUTO,
    ApprovalPolicy.ALWAYS: tpb.APPROVAL_POLICY_ALWAYS,
    ApprovalPolicy.NEVER: tpb.APPROVAL_POLICY_NEVER,
}
STATE_TO_PB = {
    ServerState.CONNECTED: tpb.TOOL_SERVER_STATE_CONNECTED,
    ServerState.CONNECTING: tpb.TOOL_SERVER_STATE_CONNECTING,
    ServerState.FAILED: tpb.TOOL_SERVER_STATE_FAILED,
    ServerState.DISABLED: tpb.TOOL_SERVER_STATE_DISABLED,
}
TRANSPORT_TO_PB = {
    "stdio": tpb.TOOL_SERVER_TRANSPORT_STDIO,
    "streamable_http": tpb.TOOL_SERVER_TRANSPORT_STREAMABLE_HTTP,
    "sse": tpb.TOOL_SERVER_TRANSPORT_SSE,
}


def _struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    if value:
        out.update(value)
    return out


def tool_to_pb(t: ToolInfo) -> tpb.Tool:
    return tpb.Tool(
        name=t.resource_name,
        server=t.server,
        tool=t.tool,
        model_name=t.model_name,
        description=t.description,
        input_schema=_struct(t.input_schema),
        annotations=tpb.ToolAnnotations(
            title=t.annotations.title,
            read_only_hint=t.annotations.read_only,
            destructive_hint=t.annotations.destructive,
            idempotent_hint=t.annotations.idempotent,
            open_world_hint=t.annotations.open_world,
        ),
        approval_policy=APPROVAL_TO_PB[t.approval],
    )


class ToolServicer(tool_service_pb2_grpc.ToolServiceServicer):
    def __init__(
        self, tools: ToolProvider | None, caller: DirectToolCaller, limits: TurnGate = NO_LIMITS
    ) -> None:
        self._tools = tools
        self._caller = caller
        self._limits = limits

    async def ListTools(
        self, request: tpb.ListToolsRequest, context: grpc.aio.ServicerContext
    ) -> tpb.ListToolsResponse:
        if self._tools is None:
            return tpb.ListToolsResponse()
        tools = await self._tools.refresh() if request.force_refresh else self._tools.tools()
        return tpb.ListToolsResponse(tools=[tool_to_pb(t) for t in tools])

    async def ListToolServers(
        self, request: tpb.ListToolServersRequest, context: grpc.aio.ServicerContext
    ) -> tpb.ListToolServersResponse:
        if self._tools is None:
            return tpb.ListToolServersResponse()
        return tpb.ListToolServersResponse(
            tool_servers=[
                tpb.ToolServer(
                    name=names.tool_server(s.name),
                    description=s.description,
                    transport=TRANSPORT_TO_PB.get(
                        s.transport, tpb.TOOL_SERVER_TRANSPORT_UNSPECIFIED
                    ),
                    state=STATE_TO_PB[s.state],
                    tool_count=s.tool_count,
                    # The detail (command paths, hosts) is for operators, in GetRuntimeStatus;
                    # users see a generic reason.
                    last_error=s.user_error,
                )
                for s in self._tools.servers()
            ]
        )

    async def CallTool(
        self, request: tpb.CallToolRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CallToolResponse:
        user = current_user()
        # A direct call costs what a turn's tool call costs (a sandbox run, a query): it
        # holds one of the user's turn slots, as a turn does (the rate is the interceptor's).
        async with self._limits.turn(user):
            result = await self._caller.call(
                user, request.name, json_format.MessageToDict(request.arguments), request.request_id
            )
        duration = duration_pb2.Duration()
        duration.FromMilliseconds(result.duration_ms)
        return tpb.CallToolResponse(
            result_text=result.text,
            is_error=result.is_error,
            structured_content=_struct(result.structured),
            duration=duration,
        )
