"""The SessionStore half of MemoryStore: sessions, their messages, feedback, request ids."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from aichat_backend import names
from aichat_backend.domain import Feedback, Message, MessageState, Role, Session, now_us
from aichat_backend.errors import AlreadyExists, FailedPrecondition, NotFound
from aichat_backend.reasons import Reason
from aichat_backend.records import (
    CREATE_SESSION_SCOPE,
    FORK_SESSION_SCOPE,
    IdempotencyRecord,
    PathPage,
    SessionSummary,
    Usage,
)
from aichat_backend.store.tree_repo import forked_draft
from aichat_devtools.memory_store import tree
from aichat_devtools.memory_store.state import StoredSession, UsageDay
from aichat_devtools.memory_store.turns import MemoryTurns


def _size(m: Message) -> int:
    # The SQL store's estimate (store/message_stats.py), in characters.
    return (
        256
        + len(m.text)
        + sum(128 + len(c.result_text) + len(json.dumps(c.arguments)) for c in m.tool_calls)
        + 256 * len(m.attachments)
    )


class MemoryStore(MemoryTurns):
    def usage(self) -> list[tuple[tuple[str, str, str], tuple[int, int, int]]]:
        """Every usage row: ((user, day, model), (input, output tokens, model calls))."""
        return [
            (k, (v.input_tokens, v.output_tokens, v.turns)) for k, v in self.state.usage.items()
        ]

    def usage_days(self) -> list[tuple[tuple[str, str, str], UsageDay]]:
        """Every usage row whole: ((user, day, model), its counts and cost)."""
        return [(k, copy.copy(v)) for k, v in self.state.usage.items()]

    async def create_session(self, user_id: str, draft: Session, request_id: str) -> Session:
        s = self.state
        if request_id:
            first = s.key(user_id, CREATE_SESSION_SCOPE, request_id)
            if first is not None:
                return copy.deepcopy(s.session(user_id, first.resource).session)
        if (user_id, draft.id) in s.sessions:
            raise AlreadyExists(
                f"session {names.session(draft.id)} already exists",
                reason=Reason.SESSION_ALREADY_EXISTS,
                metadata={"resource": names.session(draft.id)},
            )
        now = now_us()
        session = copy.deepcopy(draft)
        session.user_id, session.message_count, session.tools_locked = user_id, 0, False
        session.create_time_us = session.update_time_us = now
        s.sessions[(user_id, draft.id)] = StoredSession(
            session, title_by_user=bool(draft.display_name)
        )
        if request_id:
            s.put_key(user_id, CREATE_SESSION_SCOPE, request_id, draft.id)
        return copy.deepcopy(session)

    async def get_session(self, user_id: str, session_id: str) -> Session:
        return self._shown(self.state.session(user_id, session_id), now_us())

    @staticmethod
    def _shown(stored: StoredSession, now: int) -> Session:
        """The session as a read shows it: the turn holding it while its lease is valid."""
        out = copy.deepcopy(stored.session)
        live = stored.turn_id is not None and not stored.claimable(now)
        out.active_turn_id = stored.turn_id if live and stored.turn_id else ""
        return out

    async def list_sessions(
        self, user_id: str, limit: int, after: tuple[int, str] | None
    ) -> list[Session]:
        now = now_us()
        mine = [self._shown(v, now) for (u, _), v in self.state.sessions.items() if u == user_id]
        mine.sort(key=lambda x: (x.update_time_us, x.id), reverse=True)
        if after is not None:
            mine = [x for x in mine if (x.update_time_us, x.id) < after]
        return mine[:limit]

    async def update_session(
        self,
        user_id: str,
        session_id: str,
        changes: dict[str, Any],
        check: Callable[[Session], None] | None = None,
    ) -> Session:
        stored = self.state.session(user_id, session_id)
        if check is not None:
            check(copy.deepcopy(stored.session))
        for field, value in changes.items():
            setattr(stored.session, field, copy.deepcopy(value))
        stored.title_by_user = stored.title_by_user or "display_name" in changes
        stored.session.update_time_us = now_us()
        return copy.deepcopy(stored.session)

    async def record_usage(self, user_id: str, usage: Usage) -> None:
        self._usage(user_id, usage)

    async def write_title(self, user_id: str, session_id: str, title: str) -> bool:
        stored = self.state.sessions.get((user_id, session_id))
        if stored is None or stored.title_by_user:
            return False
        stored.session.display_name = title
        return True

    async def delete_session(self, user_id: str, session_id: str) -> None:
        s = self.state
        s.session(user_id, session_id)
        del s.sessions[(user_id, session_id)]
        self._drop_messages(user_id, session_id)

    async def list_messages(
        self, user_id: str, session_id: str, limit: int, after_seq: int | None
    ) -> list[Message]:
        s = self.state
        s.session(user_id, session_id)
        found = [
            m for m in s.in_session(user_id, session_id) if after_seq is None or m.seq > after_seq
        ]
        return [tree.with_siblings(s, user_id, m) for m in found[:limit]]

    async def list_path(
        self,
        user_id: str,
        session_id: str,
        leaf: str | None,
        after_seq: int | None,
        limit: int,
        max_chars: int,
    ) -> PathPage:
        s = self.state
        s.session(user_id, session_id)
        return tree.path_page(s, user_id, session_id, leaf, after_seq, limit, max_chars, _size)

    async def branch_leaf(self, user_id: str, session_id: str, message_id: str) -> str:
        self.state.session(user_id, session_id)
        return tree.newest_descendant(self.state, user_id, session_id, message_id)

    async def switch_branch(
        self, user_id: str, session_id: str, message_id: str, exact: bool
    ) -> Session:
        s = self.state
        stored = s.session(user_id, session_id)
        tree.message_in(s, user_id, session_id, message_id)
        leaf = message_id if exact else tree.newest_descendant(s, user_id, session_id, message_id)
        stored.session.active_message_id = leaf
        return self._shown(stored, now_us())

    async def fork_session(
        self,
        user_id: str,
        session_id: str,
        message_id: str,
        new_id: str,
        display_name: str,
        request_id: str,
    ) -> Session:
        s = self.state
        if request_id:
            first = s.key(user_id, FORK_SESSION_SCOPE, request_id)
            if first is not None:
                return self._shown(s.session(user_id, first.resource), now_us())
        source = s.session(user_id, session_id).session
        tree.message_in(s, user_id, session_id, message_id)
        await self.create_session(user_id, forked_draft(source, new_id, display_name), "")
        tree.copy_path(s, user_id, session_id, message_id, new_id)
        if request_id:
            s.put_key(user_id, FORK_SESSION_SCOPE, request_id, new_id)
        return self._shown(s.session(user_id, new_id), now_us())

    async def message_sizes(
        self, user_id: str, session_id: str, limit: int, after_seq: int | None
    ) -> list[int]:
        # The SQL store's estimate (store/message_stats.py), in characters.
        found = await self.list_messages(user_id, session_id, limit, after_seq)
        return [_size(m) for m in found]

    async def summarize_session(self, user_id: str, session_id: str) -> SessionSummary:
        found = await self.list_messages(user_id, session_id, 1 << 62, None)
        return SessionSummary(
            count=len(found),
            tools={c.tool_name for m in found for c in m.tool_calls},
            models={m.model for m in found if m.model},
        )

    async def clear_messages(self, user_id: str, session_id: str) -> None:
        stored = self.state.session(user_id, session_id)
        stored.session.message_count, stored.session.tools_locked = 0, False
        stored.session.active_message_id = ""
        stored.session.update_time_us = now_us()
        self._drop_messages(user_id, session_id)

    def _drop_messages(self, user_id: str, session_id: str) -> None:
        s = self.state
        gone = {m.id for m in s.in_session(user_id, session_id)}
        for message_key in [k for k in s.messages if k[0] == user_id and k[1] in gone]:
            del s.messages[message_key]
        for call_key in [k for k in s.calls if k[0] == user_id and k[1] in gone]:
            del s.calls[call_key]

    async def set_feedback(
        self, user_id: str, session_id: str, message_id: str, feedback: Feedback | None
    ) -> Message:
        s = self.state
        kept = s.messages.get((user_id, message_id))
        name = names.message(session_id, message_id)
        if kept is None or kept.session_id != session_id:
            raise NotFound(f"message {name} was not found", reason=Reason.MESSAGE_NOT_FOUND)
        if kept.role is not Role.ASSISTANT:
            raise FailedPrecondition(
                "only the assistant's answers take feedback", reason=Reason.NOT_AN_ANSWER
            )
        if kept.state is MessageState.STREAMING:
            raise FailedPrecondition(
                "the answer is still being written; rate it when its turn has ended",
                reason=Reason.ANSWER_IN_PROGRESS,
            )
        kept.feedback = (
            None if feedback is None else Feedback(feedback.rating, feedback.comment, now_us())
        )
        return s.get(user_id, session_id, message_id)

    async def reserve_request(
        self,
        user_id: str,
        scope: str,
        request_id: str,
        resource: str,
        abandoned: Callable[[IdempotencyRecord], bool],
    ) -> IdempotencyRecord | None:
        s = self.state
        first = s.key(user_id, scope, request_id)
        if first is not None and first.response is None and abandoned(first):
            first = None
        if first is None:
            s.put_key(user_id, scope, request_id, resource)
            return None
        return copy.deepcopy(first)

    async def settle_request(
        self, user_id: str, scope: str, request_id: str, response: bytes | None
    ) -> None:
        s = self.state
        if response is None:
            s.keys.pop((user_id, scope, request_id), None)
        elif (found := s.keys.get((user_id, scope, request_id))) is not None:
            found.response = response
