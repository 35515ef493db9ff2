"""A session's tree: pages of a path, a turn's context along its path, branches, forks.

The statements are ``message_paths``; this repository runs them, scoped by the owner (a
message or session of another user is NOT_FOUND, in the same words as a missing one).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import and_, insert, select, update

from aichat_backend import names
from aichat_backend.domain import (
    Message,
    MessageState,
    Session,
    ToolCallState,
    message_not_found,
    now_us,
    session_not_found,
)
from aichat_backend.errors import FailedPrecondition
from aichat_backend.reasons import Reason
from aichat_backend.records import PathPage
from aichat_backend.store import storage
from aichat_backend.store.context_path import CONTEXT_PATH
from aichat_backend.store.database import Tx
from aichat_backend.store.message_children import load_children
from aichat_backend.store.message_paths import (
    NEWEST_DESCENDANT,
    PATH_PAGE,
    QUESTION_OF,
    TURN_ROUNDS,
)
from aichat_backend.store.message_rows import to_message, with_children
from aichat_backend.store.messages_repo import new_message_id
from aichat_backend.store.sessions_repo import SessionRepository, session_from_row
from aichat_backend.store.tables import attachments, messages, sessions, tool_calls


class TreeRepository:
    def __init__(self, db: Tx, user_id: str) -> None:
        self._db = db
        self._user = user_id

    def _params(self, session_id: str, **more: Any) -> dict[str, Any]:
        return {"p_user": self._user, "p_sid": session_id, **more}

    async def path_page(
        self, session_id: str, leaf: str | None, after_seq: int | None, limit: int, max_chars: int
    ) -> PathPage:
        """Up to ``limit`` messages of the path ending at ``leaf`` (the active message when
        None) after ``after_seq``, no more than ``max_chars`` of them (one at least): one
        statement (message_paths.PATH_PAGE). SESSION_NOT_FOUND if not the user's."""
        params = self._params(
            session_id,
            p_leaf=leaf,
            p_after=-1 if after_seq is None else after_seq,
            p_limit=limit,
            p_max=max_chars,
        )
        rows = (await self._db.execute(PATH_PAGE, params)).mappings().all()
        if not rows:
            raise session_not_found(session_id)
        found = [r for r in rows if r["id"] is not None]
        page = PathPage(with_children(found), leaf or rows[0]["s_active"] or "")
        if found:
            last = found[-1]
            page.more = last["path_n"] < last["path_total"]
        return page

    async def context(
        self,
        session_id: str,
        leaf: str | None,
        requested: int,
        default: int,
        maximum: int,
        extra: int = 0,
    ) -> tuple[Session, list[Message]]:
        """The session and the last ``domain.memory_window`` messages of the path ending at
        ``leaf`` (None: the active message; '': no history), oldest first, with file
        content: one statement. MESSAGE_NOT_FOUND when ``leaf`` is not the session's."""
        params = self._params(
            session_id,
            p_leaf=leaf,
            p_requested=requested,
            p_default=default,
            p_max=maximum,
            p_extra=extra,
        )
        statement = CONTEXT_PATH[self._db.dialect.name]
        rows = (await self._db.execute(statement, params)).mappings().all()
        if not rows:
            raise session_not_found(session_id)
        session = session_from_row({k[2:]: v for k, v in rows[0].items() if k[:2] == "s_"})
        history = with_children(r for r in rows if r["id"] is not None)
        # A window of 0 reads no message at all; otherwise the leaf is always read.
        missing = leaf and (not history or history[-1].id != leaf)
        if missing and (history or not await self._exists(session_id, leaf or "")):
            raise message_not_found(session_id, leaf or "")
        return session, history

    async def _exists(self, session_id: str, message_id: str) -> bool:
        found = await self._db.scalar(
            select(messages.c.id).where(
                and_(
                    messages.c.user_id == self._user,
                    messages.c.session_id == session_id,
                    messages.c.id == message_id,
                )
            )
        )
        return found is not None

    async def newest_descendant(self, session_id: str, message_id: str) -> str:
        """The end of the newest branch through ``message_id`` (MESSAGE_NOT_FOUND)."""
        leaf = await self._db.scalar(
            NEWEST_DESCENDANT, self._params(session_id, p_message=message_id)
        )
        if leaf is None:
            raise message_not_found(session_id, message_id)
        return str(leaf)

    async def question_of(self, session_id: str, message_id: str) -> str:
        """The user message at or above ``message_id``: what a regenerate answers again."""
        row = (
            await self._db.execute(QUESTION_OF, self._params(session_id, p_message=message_id))
        ).first()
        if row is not None:
            return str(row[0])
        if not await self._exists(session_id, message_id):
            raise message_not_found(session_id, message_id)
        raise FailedPrecondition(
            "there is no user message at or above this message to answer again",
            reason=Reason.NOTHING_TO_REGENERATE,
            metadata={"message": names.message(session_id, message_id)},
        )

    async def turn_rounds(self, first_answer_id: str) -> list[str]:
        """A turn's answer ids in order: its first answer and each later round."""
        rows = await self._db.execute(
            TURN_ROUNDS, {"p_user": self._user, "p_first": first_answer_id}
        )
        return [str(i) for (i,) in rows]

    async def by_ids(self, ids: list[str]) -> list[Message]:
        """Messages by id (no attachment content), in ``seq`` order."""
        if not ids:
            return []
        rows = (
            await self._db.execute(
                select(messages)
                .where(and_(messages.c.user_id == self._user, messages.c.id.in_(ids)))
                .order_by(messages.c.seq)
            )
        ).mappings()
        found = [to_message(r) for r in rows]
        await load_children(self._db, self._user, found, with_content=False)
        return found

    async def switch(self, session_id: str, message_id: str, exact: bool) -> Session:
        leaf = message_id
        if not exact:
            leaf = await self.newest_descendant(session_id, message_id)
        elif not await self._exists(session_id, message_id):
            raise message_not_found(session_id, message_id)
        result = await self._db.execute(
            update(sessions)
            .where(and_(sessions.c.user_id == self._user, sessions.c.id == session_id))
            .values(active_message_id=leaf)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise session_not_found(session_id)
        return await SessionRepository(self._db, self._user).get(session_id)

    async def copy_path(
        self, source: str, message_id: str, target: str, quota: int = storage.UNLIMITED
    ) -> int:
        """Copy the path from the root to ``message_id`` of session ``source`` into the new
        session ``target``: the messages (new ids, the same chain), their files, tool calls
        and feedback. How many messages were copied. The copies count against the user's
        storage ``quota`` like new messages (STORAGE_QUOTA_EXCEEDED past it)."""
        _, path = await self.context(source, message_id, 1 << 30, 0, 1 << 30)
        if not path:
            raise message_not_found(source, message_id)
        ids = {m.id: new_message_id() for m in path}
        rows = (
            await self._db.execute(
                select(messages).where(
                    and_(messages.c.user_id == self._user, messages.c.id.in_(list(ids)))
                )
            )
        ).mappings()
        by_id = {r["id"]: dict(r) for r in rows}
        copies = []
        for seq, m in enumerate(path, start=1):
            row = by_id[m.id]
            row.update(id=ids[m.id], session_id=target, seq=seq, parent_id=ids.get(m.parent_id, ""))
            if row["state"] == MessageState.STREAMING.value:
                # A turn still writing it goes on in the original only.
                row["state"] = MessageState.INCOMPLETE.value
            copies.append(row)
        await storage.reserve(self._db, self._user, sum(r["stored_bytes"] for r in copies), quota)
        await self._db.execute(insert(messages), copies)
        files = [
            {
                "message_id": ids[m.id],
                "position": i,
                "filename": a.filename,
                "mime_type": a.mime_type,
                "size_bytes": a.size_bytes,
                "sha256": a.sha256,
                "content": a.content or b"",
                "text_content": a.text_content,
            }
            for m in path
            for i, a in enumerate(m.attachments)
        ]
        if files:
            await self._db.execute(insert(attachments), files)
        call_rows = (
            await self._db.execute(
                select(tool_calls).where(
                    and_(tool_calls.c.user_id == self._user, tool_calls.c.message_id.in_(list(ids)))
                )
            )
        ).mappings()
        calls = [
            dict(r, message_id=ids[r["message_id"]], session_id=target) | _settled(r)
            for r in call_rows
        ]
        if calls:
            await self._db.execute(insert(tool_calls), calls)
        await self._db.execute(
            update(sessions)
            .where(and_(sessions.c.user_id == self._user, sessions.c.id == target))
            .values(
                active_message_id=ids[path[-1].id],
                last_seq=len(path),
                message_count=len(path),
                tools_locked=True,
                update_time_us=now_us(),
            )
        )
        return len(path)


NOT_DECIDED_BEFORE_FORK = "Not approved: the conversation was forked while it waited."


def _settled(call: Any) -> dict[str, Any]:
    """A copied call that waited for approval (or was running) is not waiting in the
    fork: the original's turn owns that decision, the fork starts with the next message."""
    if call["state"] == ToolCallState.PENDING_APPROVAL.value:
        return {"state": ToolCallState.DENIED.value, "result_text": NOT_DECIDED_BEFORE_FORK}
    if call["state"] in (ToolCallState.APPROVED.value, ToolCallState.RUNNING.value):
        return {
            "state": ToolCallState.FAILED.value,
            "is_error": True,
            "result_text": "the conversation was forked while the tool ran",
        }
    return {}


def forked_draft(source: Session, new_id: str, display_name: str) -> Session:
    """The new session of a fork: the original's settings under a new id and title."""
    title = display_name or (f"{source.display_name} (fork)" if source.display_name else "")
    return replace(
        source,
        id=new_id,
        display_name=title,
        message_count=0,
        tools_locked=False,
        active_turn_id="",
        active_message_id="",
    )
