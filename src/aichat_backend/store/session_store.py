"""The SQL side of session management's ``SessionStore``: one short transaction or
autocommit read per operation, composed from the repositories that own the statements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aichat_backend.domain import Feedback, Message, Session, message_not_found
from aichat_backend.errors import Aborted
from aichat_backend.reasons import Reason
from aichat_backend.records import (
    CREATE_SESSION_SCOPE,
    FORK_SESSION_SCOPE,
    IdempotencyRecord,
    PathPage,
    SessionSummary,
)
from aichat_backend.store import message_stats, turn_sweeps_repo
from aichat_backend.store.database import Database
from aichat_backend.store.feedback_repo import set_feedback
from aichat_backend.store.idempotency_repo import IdempotencyRepository
from aichat_backend.store.messages_repo import MessageRepository
from aichat_backend.store.sessions_repo import SessionRepository
from aichat_backend.store.storage import StorageQuota
from aichat_backend.store.tree_repo import TreeRepository, forked_draft


class _LostRace(Exception):
    pass


class SqlSessionStore:
    def __init__(
        self, db: Database, idempotency_ttl_seconds: float, quota: StorageQuota | None = None
    ) -> None:
        self._db = db
        self._ttl = idempotency_ttl_seconds
        self._quota = quota or StorageQuota()  # a fork's copies count like new messages

    async def create_session(self, user_id: str, draft: Session, request_id: str) -> Session:
        for _ in range(2):
            try:
                async with self._db.transaction() as tx:
                    keys = IdempotencyRepository(tx, user_id, self._ttl)
                    repo = SessionRepository(tx, user_id)
                    if request_id:
                        first = await keys.get(CREATE_SESSION_SCOPE, request_id)
                        if first is not None:
                            return await repo.get(first.resource)
                    created = await repo.create(draft)
                    if request_id and not await keys.put(
                        CREATE_SESSION_SCOPE, request_id, created.id
                    ):
                        raise _LostRace
                    return created
            except _LostRace:
                # A concurrent retry recorded its result first; ours was rolled back, so
                # the next pass replays theirs.
                continue
        raise Aborted("concurrent requests with the same request_id; retry", reason=Reason.ABORTED)

    async def get_session(self, user_id: str, session_id: str) -> Session:
        async with self._db.read() as tx:
            return await SessionRepository(tx, user_id).get(session_id)

    async def list_sessions(
        self, user_id: str, limit: int, after: tuple[int, str] | None
    ) -> list[Session]:
        async with self._db.read() as tx:
            return await SessionRepository(tx, user_id).page(limit, after)

    async def update_session(
        self,
        user_id: str,
        session_id: str,
        changes: dict[str, Any],
        check: Callable[[Session], None] | None = None,
    ) -> Session:
        async with self._db.transaction() as tx:
            repo = SessionRepository(tx, user_id)
            if check is not None:
                check(await repo.get(session_id, for_update=True))
            return await repo.update(session_id, changes)

    async def delete_session(self, user_id: str, session_id: str) -> None:
        async with self._db.transaction() as tx:
            await SessionRepository(tx, user_id).delete(session_id)

    async def list_messages(
        self, user_id: str, session_id: str, limit: int, after_seq: int | None
    ) -> list[Message]:
        async with self._db.read() as tx:
            await SessionRepository(tx, user_id).get(session_id)
            return await MessageRepository(tx, user_id).page(session_id, limit, after_seq)

    async def list_path(
        self,
        user_id: str,
        session_id: str,
        leaf: str | None,
        after_seq: int | None,
        limit: int,
        max_chars: int,
    ) -> PathPage:
        async with self._db.read() as tx:
            return await TreeRepository(tx, user_id).path_page(
                session_id, leaf, after_seq, limit, max_chars
            )

    async def branch_leaf(self, user_id: str, session_id: str, message_id: str) -> str:
        async with self._db.read() as tx:
            return await TreeRepository(tx, user_id).newest_descendant(session_id, message_id)

    async def switch_branch(
        self, user_id: str, session_id: str, message_id: str, exact: bool
    ) -> Session:
        async with self._db.transaction() as tx:
            return await TreeRepository(tx, user_id).switch(session_id, message_id, exact)

    async def fork_session(
        self,
        user_id: str,
        session_id: str,
        message_id: str,
        new_id: str,
        display_name: str,
        request_id: str,
    ) -> Session:
        for _ in range(2):
            try:
                async with self._db.transaction() as tx:
                    keys = IdempotencyRepository(tx, user_id, self._ttl)
                    repo = SessionRepository(tx, user_id)
                    if request_id:
                        first = await keys.get(FORK_SESSION_SCOPE, request_id)
                        if first is not None:
                            return await repo.get(first.resource)
                    source = await repo.get(session_id)
                    created = await repo.create(forked_draft(source, new_id, display_name))
                    tree = TreeRepository(tx, user_id)
                    quota = self._quota.of(user_id)
                    if not await tree.copy_path(session_id, message_id, created.id, quota):
                        raise message_not_found(session_id, message_id)
                    if request_id and not await keys.put(
                        FORK_SESSION_SCOPE, request_id, created.id
                    ):
                        raise _LostRace
                    return await repo.get(created.id)
            except _LostRace:
                continue
        raise Aborted("concurrent requests with the same request_id; retry", reason=Reason.ABORTED)

    async def message_sizes(
        self, user_id: str, session_id: str, limit: int, after_seq: int | None
    ) -> list[int]:
        async with self._db.read() as tx:
            await SessionRepository(tx, user_id).get(session_id)
            return await message_stats.sizes(tx, user_id, session_id, after_seq, limit)

    async def summarize_session(self, user_id: str, session_id: str) -> SessionSummary:
        async with self._db.read() as tx:
            return await message_stats.summary(tx, user_id, session_id)

    async def clear_messages(self, user_id: str, session_id: str) -> None:
        async with self._db.transaction() as tx:
            await MessageRepository(tx, user_id).clear(session_id)
            await turn_sweeps_repo.forget_session(tx, user_id, session_id)

    async def set_feedback(
        self, user_id: str, session_id: str, message_id: str, feedback: Feedback | None
    ) -> Message:
        async with self._db.transaction() as tx:
            await set_feedback(tx, user_id, session_id, message_id, feedback)
            return await MessageRepository(tx, user_id).get(session_id, message_id)

    async def reserve_request(
        self,
        user_id: str,
        scope: str,
        request_id: str,
        resource: str,
        abandoned: Callable[[IdempotencyRecord], bool],
    ) -> IdempotencyRecord | None:
        async with self._db.transaction() as tx:
            keys = IdempotencyRepository(tx, user_id, self._ttl)
            first = await keys.get(scope, request_id)
            if first is not None and first.response is None and abandoned(first):
                await keys.forget(scope, request_id)
                first = None
            if first is None and not await keys.put(scope, request_id, resource):
                first = await keys.get(scope, request_id)
            return first

    async def settle_request(
        self, user_id: str, scope: str, request_id: str, response: bytes | None
    ) -> None:
        async with self._db.transaction() as tx:
            keys = IdempotencyRepository(tx, user_id, self._ttl)
            if response is None:
                await keys.forget(scope, request_id)
            else:
                await keys.set_response(scope, request_id, response)
