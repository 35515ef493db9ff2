"""The TurnStore half of MemoryStore: a turn's writes and reads, as the SQL side does them."""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid

from aichat_backend.days import utc_day
from aichat_backend.domain import (
    ContextSummary,
    Message,
    MessageState,
    Role,
    ToolCall,
    ToolCallState,
    now_us,
)
from aichat_backend.records import (
    TURN_SCOPE,
    BegunTurn,
    HistoryWindow,
    NewTurn,
    StoredTurn,
    TurnContext,
    Usage,
    turn_in_progress,
)
from aichat_devtools.memory_store import tree
from aichat_devtools.memory_store.resolutions import MemoryResolutions
from aichat_devtools.memory_store.state import UNFINISHED, MemoryState, StoredCall
from aichat_devtools.memory_store.sweeps import sweep_interrupted


class MemoryTurns(MemoryResolutions):
    def __init__(self, idempotency_ttl_seconds: float = 24 * 3600) -> None:
        self.state = MemoryState(idempotency_ttl_seconds)

    def _usage(self, user: str, usage: Usage | None) -> None:
        if usage is not None:
            self.state.add_usage(user, usage, utc_day(time.time()))

    # --- reading ---------------------------------------------------------------------

    async def find_replay(self, user_id: str, scope: str, request_id: str) -> StoredTurn | None:
        s = self.state
        first = s.key(user_id, scope, request_id)
        if first is None:
            return None
        rounds = tree.turn_rounds(s, user_id, first.resource)
        if not rounds:
            return StoredTurn(None, [], first.turn_id, first.fingerprint)
        answers = [s.read(user_id, m, with_content=False) for m in rounds]
        asked = s.messages.get((user_id, rounds[0].parent_id))
        user_message = None
        if asked is not None and asked.role is Role.USER:
            user_message = s.read(user_id, asked, with_content=False)
        return StoredTurn(user_message, answers, first.turn_id, first.fingerprint)

    async def load_context(
        self, user_id: str, session_id: str, window: HistoryWindow, leaf: str | None = None
    ) -> TurnContext:
        return TurnContext(*tree.context(self.state, user_id, session_id, window, leaf))

    async def question_of(self, user_id: str, session_id: str, message_id: str) -> str:
        return tree.question_of(self.state, user_id, session_id, message_id)

    # --- a turn's writes ---------------------------------------------------------------

    async def store_summary(
        self, user_id: str, session_id: str, message_id: str, summary: ContextSummary
    ) -> ContextSummary:
        return self.state.set_summary(user_id, session_id, message_id, summary)

    async def begin_turn(self, user_id: str, turn: NewTurn) -> BegunTurn:
        s = self.state
        if turn.request_id and s.key(user_id, TURN_SCOPE, turn.request_id) is not None:
            raise turn_in_progress()
        stored = s.claim(user_id, turn.session_id, turn.claim)
        if turn.request_id:
            s.put_key(
                user_id,
                TURN_SCOPE,
                turn.request_id,
                turn.answer_id,
                turn.fingerprint,
                turn.claim.turn_id,
            )
        s.take_claim(stored, turn.claim)
        now = now_us()
        stored.session.update_time_us = now
        stored.session.tools_locked = True
        stored.session.display_name = stored.session.display_name or turn.title
        parent = stored.session.active_message_id if turn.parent_id is None else turn.parent_id
        chain = [parent]

        def place(m: Message) -> None:  # a given message, and its calls, next in the session
            stored.last_seq += 1
            stored.session.message_count += 1
            placed = dataclasses.replace(
                m, seq=stored.last_seq, create_time_us=now, parent_id=chain[-1]
            )
            s.add_message(user_id, placed)
            chain.append(m.id)
            for i, call in enumerate(m.tool_calls):
                kept = StoredCall(m.id, turn.session_id, i, copy.deepcopy(call), now)
                s.calls[(user_id, m.id, call.id)] = kept

        if turn.question is not None:
            user_message = s.read(
                user_id, s.messages[(user_id, turn.question.id)], with_content=False
            )
            chain.append(user_message.id)
        else:
            for m in turn.earlier:
                place(m)
            stored.last_seq += 1
            stored.session.message_count += 1
            user_message = Message(
                turn.session_id,
                uuid.uuid4().hex,
                stored.last_seq,
                Role.USER,
                text=turn.text,
                create_time_us=now,
                attachments=copy.deepcopy(turn.attachments),
                parent_id=chain[-1],
            )
            s.add_message(user_id, user_message)
            chain.append(user_message.id)
            for m in turn.rounds:
                place(m)
        stored.last_seq += 1
        stored.session.message_count += 1
        answer = Message(
            turn.session_id,
            turn.answer_id,
            stored.last_seq,
            Role.ASSISTANT,
            state=MessageState.STREAMING,
            model=turn.model,
            create_time_us=now,
            parent_id=chain[-1],
        )
        s.add_message(user_id, answer)
        stored.session.active_message_id = answer.id
        denied: list[ToolCall] = []
        if turn.deny_pending is not None:
            for c in s.pending(user_id, turn.session_id):
                c.call.state, c.call.result_text = ToolCallState.DENIED, turn.deny_pending
                c.call.is_error = False
                denied.append(copy.deepcopy(c.call))
        return BegunTurn(user_message, answer, denied)

    async def store_tool_round(
        self,
        user_id: str,
        session_id: str,
        answer: Message,
        calls: list[ToolCall],
        usage: Usage | None,
    ) -> None:
        s, now = self.state, now_us()
        s.write(user_id, answer, MessageState.STREAMING)
        for i, call in enumerate(calls):
            kept = StoredCall(answer.id, session_id, i, copy.deepcopy(call), now)
            s.calls[(user_id, answer.id, call.id)] = kept
        self._usage(user_id, usage)

    async def update_call(self, user_id: str, message_id: str, call: ToolCall) -> None:
        kept = self.state.calls.get((user_id, message_id, call.id))
        if kept is not None:
            c = kept.call
            c.state, c.arguments, c.result_text = call.state, dict(call.arguments), call.result_text
            c.is_error, c.duration_ms = call.is_error, call.duration_ms

    async def next_round(
        self, user_id: str, session_id: str, done: Message, model: str, history: int = 0
    ) -> tuple[Message, list[Message]]:
        s = self.state
        s.session(user_id, session_id)
        s.write(user_id, done, MessageState.COMPLETE)
        context: list[Message] = []
        if history > 0:
            window = HistoryWindow(history, history, history)
            _, context = tree.context(s, user_id, session_id, window, done.id)
        placeholder = s.append(
            user_id,
            session_id,
            Role.ASSISTANT,
            MessageState.STREAMING,
            model,
            uuid.uuid4().hex,
            done.id,
        )
        return placeholder, context

    async def end_for_approval(
        self, user_id: str, session_id: str, turn_id: str, answer: Message
    ) -> None:
        self.state.write(user_id, answer, MessageState.COMPLETE)
        self.state.release(user_id, session_id, turn_id)

    async def finish(
        self, user_id: str, session_id: str, turn_id: str, answer: Message, usage: Usage | None
    ) -> None:
        s = self.state
        kept = s.messages.get((user_id, answer.id))
        open_ = (MessageState.STREAMING, MessageState.INTERRUPTED)
        if kept is not None and kept.state in open_:
            s.write(user_id, answer)
            self._usage(user_id, usage)
        s.release(user_id, session_id, turn_id)

    async def cut_off(
        self,
        user_id: str,
        session_id: str,
        turn_id: str,
        answer: Message,
        why: str,
        *,
        write_answer: bool,
    ) -> None:
        s = self.state
        if write_answer:
            s.write(user_id, answer)
        for (u, mid, _), c in s.calls.items():
            if u == user_id and mid == answer.id and c.call.state in UNFINISHED:
                c.call.state, c.call.result_text, c.call.is_error = ToolCallState.FAILED, why, True
        s.release(user_id, session_id, turn_id)

    # --- leases ----------------------------------------------------------------------------

    async def renew_lease(
        self, user_id: str, session_id: str, turn_id: str, lease_seconds: float
    ) -> None:
        stored = self.state.sessions.get((user_id, session_id))
        if stored is not None and stored.turn_id == turn_id:
            stored.expires_us = now_us() + int(lease_seconds * 1e6)

    async def sweep_interrupted(self) -> int:
        return sweep_interrupted(self.state)
