"""Approvals in MemoryStore: waiting calls expired, a resolution's state read and its
claim opened, as the SQL side does them (a part of MemoryTurns)."""

from __future__ import annotations

import copy

from aichat_backend.domain import MessageState, ToolCallState
from aichat_backend.records import (
    DENIED_BY_BRANCH,
    RESOLVE_SCOPE,
    PendingCall,
    Resolution,
    ResolutionState,
    already_decided,
    turn_in_progress,
)
from aichat_devtools.memory_store import tree
from aichat_devtools.memory_store.state import MemoryState


class MemoryResolutions:
    state: MemoryState

    async def expire_pending(
        self, user_id: str, session_id: str, older_than_us: int, why: str
    ) -> int:
        expired = 0
        for c in self.state.pending(user_id, session_id):
            if c.create_time_us < older_than_us:
                c.call.state, c.call.result_text, c.call.is_error = ToolCallState.DENIED, why, False
                expired += 1
        return expired

    async def load_resolution(
        self, user_id: str, session_id: str, call_ids: list[str]
    ) -> ResolutionState:
        s = self.state
        session = copy.deepcopy(s.session(user_id, session_id).session)
        pending = [
            PendingCall(c.message_id, copy.deepcopy(c.call), c.create_time_us)
            for c in s.pending(user_id, session_id)
        ]
        waiting = {p.call.id for p in pending}
        others: dict[str, ToolCallState | None] = {}
        for i in call_ids:
            if i not in waiting:
                found = [c for (u, _, cid), c in s.calls.items() if u == user_id and cid == i]
                mine = [c for c in found if c.session_id == session_id]
                others[i] = mine[0].call.state if mine else None
        round_message = user_message = None
        if pending:
            round_message = s.get(user_id, session_id, pending[0].message_id)
            asked = tree.question_of(s, user_id, session_id, round_message.id)
            user_message = copy.deepcopy(s.messages[(user_id, asked)])
            user_message.attachments = []
        superseded = {
            i
            for i, state in others.items()
            if state is ToolCallState.DENIED
            and any(
                c.call.result_text == DENIED_BY_BRANCH
                for (u, _, cid), c in s.calls.items()
                if u == user_id and cid == i and c.session_id == session_id
            )
        }
        return ResolutionState(session, pending, others, round_message, user_message, superseded)

    async def open_resolution(self, user_id: str, resolution: Resolution) -> None:
        s, r = self.state, resolution
        stored = s.claim(user_id, r.session_id, r.claim)
        for d in r.decided:
            kept = s.calls.get((user_id, d.message_id, d.call.id))
            if kept is None or kept.call.state is not ToolCallState.PENDING_APPROVAL:
                raise already_decided(d.call.id)
        if r.request_id and s.key(user_id, RESOLVE_SCOPE, r.request_id) is not None:
            raise turn_in_progress()
        s.take_claim(stored, r.claim)
        s.write(user_id, r.round_message, MessageState.STREAMING)
        for d in r.decided:
            c = s.calls[(user_id, d.message_id, d.call.id)].call
            c.state = ToolCallState.APPROVED if d.approved else ToolCallState.DENIED
            c.arguments, c.result_text = dict(d.call.arguments), d.call.result_text
            c.is_error = d.call.is_error
        if r.request_id:
            s.put_key(
                user_id,
                RESOLVE_SCOPE,
                r.request_id,
                r.round_message.id,
                r.fingerprint,
                r.claim.turn_id,
            )
