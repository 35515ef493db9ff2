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
from aichat_backend.engine.sessions import check_request_id
from aichat_backend.errors import Aborted, AichatError, NotFound
from aichat_backend.reasons import Reason
from aichat_backend.store.database import Database
from aichat_backend.store.idempotency_repo import IdempotencyRecord, IdempotencyRepository
from aichat_backend.tools.base import ToolInfo, ToolProvider, ToolResult

SCOPE = "CallTool"


class DirectToolCaller:
    def __init__(
        self,
        db: Database,
        tools: ToolProvider | None,
        *,
        timeout_seconds: float,
        idempotency_ttl_seconds: float,
    ) -> None:
        self._db = db
        self._tools = tools
        self._timeout = timeout_seconds
        self._ttl = idempotency_ttl_seconds

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
            async with self._db.transaction() as tx:
                keys = IdempotencyRepository(tx, user_id, self._ttl)
                first = await keys.get(SCOPE, request_id)
                if first is not None and first.response is None and self._abandoned(first):
                    # Reserved by a call whose server died before it answered: the call
                    # can no longer be running, so this retry may run it.
                    await keys.forget(SCOPE, request_id)
                    first = None
                # Reserve the key before running, so a concurrent retry cannot run it too.
                if first is None and not await keys.put(SCOPE, request_id, tool.resource_name):
                    first = await keys.get(SCOPE, request_id)
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
                async with self._db.transaction() as tx:
                    await IdempotencyRepository(tx, user_id, self._ttl).forget(SCOPE, request_id)
            raise
        if request_id:
            try:
                async with self._db.transaction() as tx:
                    await IdempotencyRepository(tx, user_id, self._ttl).set_response(
                        SCOPE, request_id, json.dumps(asdict(result)).encode()
                    )
            except AichatError:
                pass  # the caller still gets the result; a retry will be told it runs
        return result
