"""The tool calls of an answer and the user's decisions on those that wait for approval.

Calls are stored with the answer of the round that asked for them; each call's result
is written as it ends, and a decision is recorded at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, insert, select, update

from aichat_backend.domain import ToolCall, ToolCallState, now_us
from aichat_backend.records import DENIED_BY_BRANCH, PendingCall
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import tool_calls
from aichat_backend.store.turn_leases import UNFINISHED_CALL_STATES


class ToolCallRepository:
    def __init__(self, db: Tx, user_id: str) -> None:
        self._db = db
        self._user = user_id

    def _call(self, message_id: str, call_id: str) -> Any:
        return and_(
            tool_calls.c.user_id == self._user,
            tool_calls.c.message_id == message_id,
            tool_calls.c.id == call_id,
        )

    def _pending_in(self, session_id: str) -> Any:
        return and_(
            tool_calls.c.user_id == self._user,
            tool_calls.c.session_id == session_id,
            tool_calls.c.state == ToolCallState.PENDING_APPROVAL.value,
        )

    async def add_calls(self, session_id: str, message_id: str, calls: Sequence[ToolCall]) -> None:
        now = now_us()
        await self._db.execute(
            insert(tool_calls),
            [
                {
                    "message_id": message_id,
                    "id": c.id,
                    "user_id": self._user,
                    "session_id": session_id,
                    "position": i,
                    "tool_name": c.tool_name,
                    "server": c.server,
                    "arguments": c.arguments,
                    "state": c.state.value,
                    "result_text": c.result_text,
                    "is_error": c.is_error,
                    "duration_ms": c.duration_ms,
                    "approval_reason": c.approval_reason,
                    "create_time_us": now,
                    "update_time_us": now,
                }
                for i, c in enumerate(calls)
            ],
        )

    async def update_call(self, message_id: str, call: ToolCall) -> None:
        await self._db.execute(
            update(tool_calls)
            .where(self._call(message_id, call.id))
            .values(
                state=call.state.value,
                arguments=call.arguments,
                result_text=call.result_text,
                is_error=call.is_error,
                duration_ms=call.duration_ms,
                update_time_us=now_us(),
            )
        )

    async def fail_unfinished_calls(self, message_id: str, text: str) -> None:
        await self._db.execute(
            update(tool_calls)
            .where(
                and_(
                    tool_calls.c.user_id == self._user,
                    tool_calls.c.message_id == message_id,
                    tool_calls.c.state.in_(UNFINISHED_CALL_STATES),
                )
            )
            .values(
                state=ToolCallState.FAILED.value,
                result_text=text,
                is_error=True,
                update_time_us=now_us(),
            )
        )

    async def deny_all_pending(self, session_id: str, text: str) -> list[ToolCall]:
        """Deny every call still waiting in the session, in one statement."""
        rows = (
            await self._db.execute(
                update(tool_calls)
                .where(self._pending_in(session_id))
                .values(
                    state=ToolCallState.DENIED.value,
                    result_text=text,
                    is_error=False,
                    update_time_us=now_us(),
                )
                .returning(
                    tool_calls.c.id,
                    tool_calls.c.tool_name,
                    tool_calls.c.arguments,
                    tool_calls.c.server,
                    tool_calls.c.approval_reason,
                )
            )
        ).all()
        return [
            ToolCall(
                id=r.id,
                tool_name=r.tool_name,
                arguments=dict(r.arguments or {}),
                state=ToolCallState.DENIED,
                server=r.server,
                result_text=text,
                approval_reason=r.approval_reason,
            )
            for r in rows
        ]

    async def pending_calls(self, session_id: str) -> list[PendingCall]:
        rows = (
            (
                await self._db.execute(
                    select(tool_calls)
                    .where(self._pending_in(session_id))
                    .order_by(tool_calls.c.create_time_us, tool_calls.c.position)
                )
            )
            .mappings()
            .all()
        )
        return [
            PendingCall(
                message_id=r["message_id"],
                call=ToolCall(
                    id=r["id"],
                    tool_name=r["tool_name"],
                    arguments=dict(r["arguments"] or {}),
                    state=ToolCallState.PENDING_APPROVAL,
                    server=r["server"],
                    approval_reason=r["approval_reason"],
                ),
                create_time_us=r["create_time_us"],
            )
            for r in rows
        ]

    async def decide(self, message_id: str, call: ToolCall, *, approved: bool) -> bool:
        """Record a decision once: False when the call was no longer pending."""
        state = ToolCallState.APPROVED if approved else ToolCallState.DENIED
        result = await self._db.execute(
            update(tool_calls)
            .where(
                and_(
                    self._call(message_id, call.id),
                    tool_calls.c.state == ToolCallState.PENDING_APPROVAL.value,
                )
            )
            .values(
                state=state.value,
                arguments=call.arguments,
                result_text=call.result_text,
                is_error=call.is_error,
                update_time_us=now_us(),
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def call_state(self, session_id: str, call_id: str) -> ToolCallState | None:
        state = await self._db.scalar(
            select(tool_calls.c.state).where(
                and_(
                    tool_calls.c.user_id == self._user,
                    tool_calls.c.session_id == session_id,
                    tool_calls.c.id == call_id,
                )
            )
        )
        return ToolCallState(state) if state is not None else None

    async def superseded(self, session_id: str, call_ids: list[str]) -> set[str]:
        """Which of ``call_ids`` a regenerate or an edit denied while they waited."""
        if not call_ids:
            return set()
        rows = await self._db.execute(
            select(tool_calls.c.id).where(
                and_(
                    tool_calls.c.user_id == self._user,
                    tool_calls.c.session_id == session_id,
                    tool_calls.c.id.in_(call_ids),
                    tool_calls.c.state == ToolCallState.DENIED.value,
                    tool_calls.c.result_text == DENIED_BY_BRANCH,
                )
            )
        )
        return {str(i) for (i,) in rows}
