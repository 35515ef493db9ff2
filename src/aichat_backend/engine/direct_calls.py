"""ToolService.CallTool: a user calls one tool directly, as their own explicit act.

No approval is asked (the user is the one deciding). ``request_id`` makes a retry safe:
the key is reserved before the tool runs, so a retry replays the result or, while the
first call still runs, is told so; the tool never runs twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from aichat_backend import names
from aichat_backend.domain import now_us
from aichat_backend.engine.session_store import SessionStore
from aichat_backend.engine.sessions import check_request_id
from aichat_backend.errors import Aborted, AichatError, NotFound
from aichat_backend.reasons import Reason
from aichat_backend.records import CALL_TOOL_SCOPE as SCOPE
from aichat_backend.records import IdempotencyRecord
from aichat_backend.tools.base import ToolInfo, ToolProvider, ToolResult


class DirectToolCaller:
    def __init__(
        self,
        store: SessionStore,
        tools: ToolProvider | None,
        *,
        timeout_seconds: float,
    ) -> None:
        self._store = store
        self._tools = tools
        self._timeout = timeout_seconds

    def _abandoned(self, record: IdempotencyRecord) -> bool:
        # A call cannot outlive its timeout; a minute's margin covers clock skew.
        age_seconds = (now_us() - record.create_time_us) / 1e6
        return age_seconds > self._timeout + 60

    def find(self, name: str) -> ToolInfo:
        names.parse_tool(name)  # a malformed name is INVALID_ARGUMENT, not NOT_FOUND
        tool = self._tools.find(name) if self._tools is not None else None
        if tool is None:
            raise NotFound(
                f"tool {name[:120]} was not found (or its server is not connected)",
                reason=Reason.TOOL_NOT_FOUND,
                metadata={"resource": name[:200]},
            )
        return tool

    async def call(
        self, user_id: str, name: str, arguments: dict[str, Any], request_id: str = ""
    ) -> ToolResult:
        check_request_id(request_id)
        tool = self.find(name)
        assert self._tools is not None
        if request_id:
            # Reserved before the tool runs, so a concurrent retry cannot run it too; a
            # reservation whose call died before it answered (``_abandoned``) is taken over.
            first = await self._store.reserve_request(
                user_id, SCOPE, request_id, tool.resource_name, self._abandoned
            )
            if first is not None:
                if first.response is None:
                    raise Aborted(
                        "a call with this request_id is still running",
                        reason=Reason.CALL_IN_PROGRESS,
                        retry_after=1.0,
                    )
                return ToolResult(**json.loads(first.response))
        try:
            result = await self._tools.call(tool, arguments, user_id=user_id, timeout=self._timeout)
        except BaseException:
            if request_id:
                # It never ran to an answer: let a retry try again.
                await self._store.settle_request(user_id, SCOPE, request_id, None)
            raise
        if request_id:
            try:
                response = json.dumps(asdict(result)).encode()
                await self._store.settle_request(user_id, SCOPE, request_id, response)
            except AichatError:
                pass  # the caller still gets the result; a retry will be told it runs
        return result
