"""SessionService: proto in, domain call, proto out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import grpc
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from aichat.v1 import session_service_pb2_grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2

from aichat_backend import names
from aichat_backend.admin_records import UsageTotals, UserUsage
from aichat_backend.api import convert, export
from aichat_backend.api.money_pb import cost_pb
from aichat_backend.domain import UPDATABLE_SESSION_FIELDS, Rating
from aichat_backend.engine.branches import Branches, branch_selection_conflict
from aichat_backend.engine.feedback import FeedbackManager
from aichat_backend.engine.sessions import SessionManager
from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason
from aichat_backend.request_context import add_response_header, current_user

RATING_FROM_PB = {
    rpb.FEEDBACK_RATING_UNSPECIFIED: None,
    rpb.FEEDBACK_RATING_THUMBS_UP: Rating.UP,
    rpb.FEEDBACK_RATING_THUMBS_DOWN: Rating.DOWN,
}


class OwnUsage(Protocol):
    async def mine(self, user_id: str) -> UserUsage: ...


class SessionServicer(session_service_pb2_grpc.SessionServiceServicer):
    def __init__(
        self,
        sessions: SessionManager,
        feedback: FeedbackManager,
        usage: OwnUsage,
        exports: export.ExportSlots | None = None,
        *,
        branches: Branches,
    ) -> None:
        self._sessions = sessions
        self._branches = branches
        self._feedback = feedback
        self._usage = usage
        self._exports = exports or export.ExportSlots(0)

    async def CreateSession(
        self, request: spb.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.Session:
        created = await self._sessions.create(
            current_user(),
            convert.session_from_pb(request.session),
            session_id=request.session_id,
            request_id=request.request_id,
        )
        return convert.session_to_pb(created)

    async def GetSession(
        self, request: spb.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.Session:
        return convert.session_to_pb(await self._sessions.get(current_user(), request.name))

    async def ListSessions(
        self, request: spb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListSessionsResponse:
        page = await self._sessions.list_sessions(
            current_user(), request.page_size, request.page_token
        )
        return spb.ListSessionsResponse(
            sessions=[convert.session_to_pb(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateSession(
        self, request: spb.UpdateSessionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.Session:
        paths = list(request.update_mask.paths)
        if paths == ["*"]:
            paths = list(UPDATABLE_SESSION_FIELDS)
        elif not request.HasField("update_mask"):
            paths = convert.set_fields(request.session)
        updated = await self._sessions.update(
            current_user(), request.session.name, convert.session_from_pb(request.session), paths
        )
        return convert.session_to_pb(updated)

    async def DeleteSession(
        self, request: spb.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._sessions.delete(current_user(), request.name)
        return empty_pb2.Empty()

    async def ListMessages(
        self, request: spb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListMessagesResponse:
        user = current_user()
        if request.all_branches:
            if request.branch:
                raise branch_selection_conflict()
            page = await self._sessions.list_messages(
                user, request.parent, request.page_size, request.page_token
            )
        else:
            page = await self._branches.list_path(
                user,
                names.parse_session(request.parent, "parent"),
                request.branch,
                request.page_size,
                request.page_token,
            )
        return spb.ListMessagesResponse(
            messages=[convert.message_to_pb(m) for m in page.items],
            next_page_token=page.next_page_token,
        )

    async def SwitchBranch(
        self, request: spb.SwitchBranchRequest, context: grpc.aio.ServicerContext
    ) -> rpb.Session:
        session = await self._branches.switch(current_user(), request.name, request.exact)
        return convert.session_to_pb(session)

    async def ForkSession(
        self, request: spb.ForkSessionRequest, context: grpc.aio.ServicerContext
    ) -> rpb.Session:
        forked = await self._branches.fork(
            current_user(),
            request.message,
            request.session_id,
            request.display_name,
            request.request_id,
        )
        return convert.session_to_pb(forked)

    async def ClearMessages(
        self, request: spb.ClearMessagesRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._sessions.clear_messages(current_user(), request.name)
        return empty_pb2.Empty()

    async def SetMessageFeedback(
        self, request: spb.SetMessageFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> rpb.Message:
        if request.rating not in RATING_FROM_PB:
            raise InvalidArgument(
                "rating must be THUMBS_UP, THUMBS_DOWN or unspecified (to clear)",
                reason=Reason.INVALID_RATING,
                field="rating",
            )
        message = await self._feedback.set(
            current_user(), request.name, RATING_FROM_PB[request.rating], request.comment
        )
        return convert.message_to_pb(message)

    async def ExportSession(
        self, request: spb.ExportSessionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        fmt = export.check_format(request.format)
        if request.all_branches and fmt != spb.EXPORT_FORMAT_JSON:
            raise InvalidArgument(
                "only the JSON export carries every branch (each message names its parent)",
                reason=Reason.INVALID_BRANCH_SELECTION,
                field="all_branches",
            )
        user = current_user()
        reasoning = request.include_reasoning
        async with self._exports.hold(user):
            session, summary, pages = await self._sessions.export(
                user, request.name, request.all_branches
            )
            content_type, filename = export.describe(fmt, session)
            # Envoy passes initial metadata on as HTTP headers: browsers save a named file.
            add_response_header("content-disposition", f'attachment; filename="{filename}"')
            first = True
            async for chunk in export.render(fmt, session, summary, pages, reasoning=reasoning):
                yield httpbody_pb2.HttpBody(content_type=content_type if first else "", data=chunk)
                first = False
            if first:  # never an empty stream: the content type must reach the client
                yield httpbody_pb2.HttpBody(content_type=content_type)

    async def GetMyUsage(
        self, request: spb.GetMyUsageRequest, context: grpc.aio.ServicerContext
    ) -> spb.MyUsage:
        found = await self._usage.mine(current_user())
        out = spb.MyUsage(
            today=_totals_pb(found.today),
            this_month=_totals_pb(found.this_month),
            daily_token_budget=found.daily_token_budget,
            stored_bytes=found.stored_bytes,
            storage_quota_bytes=found.storage_quota_bytes,
        )
        if found.daily_cost_budget is not None:
            out.daily_cost_budget.CopyFrom(cost_pb(found.daily_cost_budget))
        return out


def _totals_pb(t: UsageTotals) -> spb.UsageTotals:
    return spb.UsageTotals(
        start_day=t.start_day,
        end_day=t.end_day,
        input_tokens=t.input_tokens,
        output_tokens=t.output_tokens,
        reasoning_tokens=t.reasoning_tokens,
        cached_input_tokens=t.cached_input_tokens,
        cache_write_tokens=t.cache_write_tokens,
        model_calls=t.model_calls,
        cost=cost_pb(t.cost),
    )
