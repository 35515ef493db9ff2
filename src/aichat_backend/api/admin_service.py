"""AdminService: the operator API. Every method first checks the caller is an admin."""

from __future__ import annotations

import asyncio

import grpc
from aichat.v1 import admin_service_pb2 as apb
from aichat.v1 import admin_service_pb2_grpc
from aichat.v1 import tool_service_pb2 as tpb
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2

from aichat_backend import names
from aichat_backend.admin.access import AdminAccess
from aichat_backend.admin.operations import AdminOperations
from aichat_backend.admin.runtime import RuntimeSnapshot, RuntimeView
from aichat_backend.admin_records import (
    Actor,
    Bypass,
    Grouping,
    SubjectType,
    UsageRow,
    make_query,
)
from aichat_backend.api.models_pb import models_to_pb
from aichat_backend.api.money_pb import cost_pb, nanos_pb
from aichat_backend.api.tool_service import STATE_TO_PB, TRANSPORT_TO_PB
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.providers.model_check import ModelChecker
from aichat_backend.reasons import Reason
from aichat_backend.request_context import current_request_id

SUBJECT_FROM_PB = {
    apb.BYPASS_SUBJECT_TYPE_USER: SubjectType.USER,
    apb.BYPASS_SUBJECT_TYPE_API_KEY: SubjectType.API_KEY,
}
SUBJECT_TO_PB = {v: k for k, v in SUBJECT_FROM_PB.items()}
GROUPING_FROM_PB = {
    apb.USAGE_GROUPING_UNSPECIFIED: Grouping.USER_AND_MODEL,
    apb.USAGE_GROUPING_USER_AND_MODEL: Grouping.USER_AND_MODEL,
    apb.USAGE_GROUPING_USER: Grouping.USER,
    apb.USAGE_GROUPING_MODEL: Grouping.MODEL,
}


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))


def bypass_to_pb(b: Bypass) -> apb.RateLimitBypass:
    return apb.RateLimitBypass(
        name=names.rate_limit_bypass(b.id),
        subject_type=SUBJECT_TO_PB[b.subject_type],
        subject=b.subject,
        reason=b.reason,
        creator=b.creator,
        create_time=_timestamp(b.create_time_us / 1e6),
    )


def snapshot_to_pb(s: RuntimeSnapshot) -> apb.RuntimeStatus:
    uptime = duration_pb2.Duration()
    uptime.FromNanoseconds(int(s.uptime_seconds * 1e9))
    limits = s.limits
    return apb.RuntimeStatus(
        version=s.version,
        replica_id=s.replica_id,
        start_time=_timestamp(s.start_time),
        uptime=uptime,
        active_turns=s.active_turns,
        active_turns_by_model=[apb.ActiveTurnCount(key=k, count=n) for k, n in s.by_model],
        active_turns_by_user=[apb.ActiveTurnCount(key=k, count=n) for k, n in s.by_user],
        pending_approvals=s.pending_approvals,
        tool_servers=[
            apb.ToolServerStatus(
                name=names.tool_server(t.name),
                state=STATE_TO_PB[t.state],
                tool_count=t.tool_count,
                last_error=t.last_error,
                transport=TRANSPORT_TO_PB.get(t.transport, tpb.TOOL_SERVER_TRANSPORT_UNSPECIFIED),
            )
            for t in s.tool_servers
        ],
        limits=apb.LimitsStatus(
            rate_rps=limits.settings.rate_rps,
            rate_burst=limits.settings.rate_burst,
            max_concurrent_turns=limits.settings.max_concurrent_turns,
            daily_token_budget=limits.settings.daily_token_budget,
            shared=limits.shared,
            degraded_reason=limits.degraded_reason,
            refused=limits.refused,
            bypass_entries=limits.bypass_entries,
            daily_cost_budget=(
                nanos_pb(limits.settings.daily_cost_budget_nanos, limits.settings.currency)
                if limits.settings.daily_cost_budget_nanos
                else None
            ),
            storage_quota_bytes=limits.settings.storage_quota_bytes,
        ),
    )


class AdminServicer(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        access: AdminAccess,
        operations: AdminOperations,
        runtime: RuntimeView,
        catalogue: ModelCatalogue,
        checker: ModelChecker | None,
    ) -> None:
        self._access = access
        self._ops = operations
        self._runtime = runtime
        self._catalogue = catalogue
        self._checker = checker

    def _actor(self) -> Actor:
        return Actor(self._access.require(), current_request_id())

    async def GetRuntimeStatus(
        self, request: apb.GetRuntimeStatusRequest, context: grpc.aio.ServicerContext
    ) -> apb.RuntimeStatus:
        self._actor()
        status = snapshot_to_pb(await self._runtime.snapshot())
        status.models.extend(models_to_pb(self._catalogue, self._checker))
        return status

    async def ListRateLimitBypasses(
        self, request: apb.ListRateLimitBypassesRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListRateLimitBypassesResponse:
        actor = self._actor()
        items, token = await self._ops.bypass_page(
            actor.user_id, request.page_size, request.page_token
        )
        return apb.ListRateLimitBypassesResponse(
            rate_limit_bypasses=[bypass_to_pb(b) for b in items], next_page_token=token
        )

    async def CreateRateLimitBypass(
        self, request: apb.CreateRateLimitBypassRequest, context: grpc.aio.ServicerContext
    ) -> apb.RateLimitBypass:
        actor = self._actor()
        given = request.rate_limit_bypass
        subject_type = SUBJECT_FROM_PB.get(given.subject_type)
        if subject_type is None:
            raise InvalidArgument(
                "subject_type must be BYPASS_SUBJECT_TYPE_USER or BYPASS_SUBJECT_TYPE_API_KEY",
                reason=Reason.INVALID_SUBJECT_TYPE,
                field="rate_limit_bypass.subject_type",
            )
        bypass = await self._ops.add_bypass(actor, subject_type, given.subject, given.reason)
        return bypass_to_pb(bypass)

    async def DeleteRateLimitBypass(
        self, request: apb.DeleteRateLimitBypassRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        actor = self._actor()
        await self._ops.remove_bypass(actor, names.parse_rate_limit_bypass(request.name))
        return empty_pb2.Empty()

    async def ListUsage(
        self, request: apb.ListUsageRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListUsageResponse:
        actor = self._actor()
        grouping = GROUPING_FROM_PB.get(request.grouping)
        if grouping is None:
            raise InvalidArgument(
                "unknown grouping", reason=Reason.INVALID_GROUPING, field="grouping"
            )
        query = make_query(
            request.start_day,
            request.end_day,
            request.user_id,
            request.model,
            grouping,
            self._ops.today(),
        )
        rows, token = await self._ops.usage_page(
            actor.user_id, query, request.page_size, request.page_token
        )
        return apb.ListUsageResponse(rows=[usage_row_pb(r) for r in rows], next_page_token=token)

    async def ListUserStorage(
        self, request: apb.ListUserStorageRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListUserStorageResponse:
        actor = self._actor()
        rows, token = await self._ops.storage_page(
            actor.user_id, request.user_id, request.page_size, request.page_token
        )
        return apb.ListUserStorageResponse(
            users=[apb.UserStorage(user_id=u, stored_bytes=b) for u, b in rows],
            next_page_token=token,
            storage_quota_bytes=self._runtime.limit_settings.storage_quota_bytes,
        )

    async def CheckModels(
        self, request: apb.CheckModelsRequest, context: grpc.aio.ServicerContext
    ) -> apb.CheckModelsResponse:
        self._actor()
        if self._checker is not None:
            # Shielded: a caller hanging up must not cancel the check others may share.
            await asyncio.shield(self._checker.check_all())
        return apb.CheckModelsResponse(models=models_to_pb(self._catalogue, self._checker))


def usage_row_pb(r: UsageRow) -> apb.UsageRow:
    out = apb.UsageRow(
        user_id=r.user_id,
        model=r.model,
        input_tokens=r.input_tokens,
        output_tokens=r.output_tokens,
        model_calls=r.model_calls,
        reasoning_tokens=r.reasoning_tokens,
        cached_input_tokens=r.cached_input_tokens,
        cache_write_tokens=r.cache_write_tokens,
    )
    if r.cost is not None:
        out.cost.CopyFrom(cost_pb(r.cost))
    return out
