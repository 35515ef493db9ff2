"""Messages with their attachments and tool calls, always scoped by their owner.

The repository's reads and writes; how rows become Messages is ``message_rows``, the
turn's context statements ``context_queries``, a page's children ``message_children``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, case, func, insert, select, update

from aichat_backend import names
from aichat_backend.domain import (
    Attachment,
    ContextSummary,
    Message,
    MessageState,
    Role,
    Session,
    memory_window,
    now_us,
    session_not_found,
)
from aichat_backend.errors import NotFound
from aichat_backend.reasons import Reason
from aichat_backend.store import storage
from aichat_backend.store.context_queries import CONTEXT, RECENT
from aichat_backend.store.database import Tx
from aichat_backend.store.message_children import load_children
from aichat_backend.store.message_paths import sibling_columns
from aichat_backend.store.message_rows import to_message, with_children
from aichat_backend.store.sessions_repo import SessionRepository, session_from_row
from aichat_backend.store.tables import attachments, messages, sessions


def new_message_id() -> str:
    return uuid.uuid4().hex


_INSERT_MESSAGES = insert(messages)


class MessageRepository:
    def __init__(self, db: Tx, user_id: str) -> None:
        self._db = db
        self._user = user_id

    async def append(
        self,
        session_id: str,
        role: Role,
        text: str,
        *,
        state: MessageState = MessageState.COMPLETE,
        message_id: str | None = None,
        model: str = "",
        attachments_in: Sequence[Attachment] = (),
        display_name_if_empty: str | None = None,
        lock_tools: bool = False,
        parent_id: str | None = None,
    ) -> Message:
        """Add a message after ``parent_id`` (None: the session's active message; sequence
        taken atomically). The session's active path moves on to it only if it ended at
        the parent: a turn whose branch the user switched away from runs on there without
        pulling the view back."""
        t = now_us()
        if parent_id is None:
            parent_id = await self.active(session_id)
        new_id = message_id or new_message_id()
        values: dict[str, object] = {
            "last_seq": sessions.c.last_seq + 1,
            "message_count": sessions.c.message_count + 1,
            "update_time_us": t,
            "active_message_id": case(
                (func.coalesce(sessions.c.active_message_id, "") == parent_id, new_id),
                else_=sessions.c.active_message_id,
            ),
        }
        if lock_tools:
            values["tools_locked"] = True
        result = await self._db.execute(
            update(sessions)
            .where(and_(sessions.c.user_id == self._user, sessions.c.id == session_id))
            .values(**values)
            .returning(sessions.c.last_seq, sessions.c.display_name)
        )
        row = result.first()
        if row is None:
            raise session_not_found(session_id)
        seq, display_name = row
        if display_name_if_empty and not display_name:
            await self._db.execute(
                update(sessions)
                .where(and_(sessions.c.user_id == self._user, sessions.c.id == session_id))
                .values(display_name=display_name_if_empty)
            )
        msg = Message(
            session_id=session_id,
            id=new_id,
            parent_id=parent_id,
            seq=seq,
            role=role,
            text=text,
            state=state,
            model=model,
            create_time_us=t,
            attachments=list(attachments_in),
        )
        await self.insert([msg])
        await storage.add(self._db, self._user, storage.message_bytes(msg))
        return msg

    async def active(self, session_id: str) -> str:
        """The session's active message ('' when it has none)."""
        found = await self._db.scalar(
            select(sessions.c.active_message_id).where(
                and_(sessions.c.user_id == self._user, sessions.c.id == session_id)
            )
        )
        return str(found or "")

    async def insert(self, new: Sequence[Message]) -> None:
        """Store messages whose sequence numbers were taken already (one statement each
        for messages and, if any, attachments)."""
        await self._db.execute(
            _INSERT_MESSAGES,
            [
                {
                    "id": m.id,
                    "user_id": self._user,
                    "session_id": m.session_id,
                    "seq": m.seq,
                    "role": m.role.value,
                    "text": m.text,
                    "state": m.state.value,
                    "model": m.model,
                    "finish_reason": m.finish_reason,
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "create_time_us": m.create_time_us,
                    "stored_bytes": storage.message_bytes(m),
                    "parent_id": m.parent_id,
                }
                for m in new
            ],
        )
        files = [(m, i, a) for m in new for i, a in enumerate(m.attachments)]
        if files:
            await self._db.execute(
                insert(attachments),
                [
                    {
                        "message_id": m.id,
                        "position": i,
                        "filename": a.filename,
                        "mime_type": a.mime_type,
                        "size_bytes": a.size_bytes,
                        "sha256": a.sha256,
                        "content": a.content or b"",
                        "text_content": a.text_content,
                    }
                    for m, i, a in files
                ],
            )

    async def page(
        self, session_id: str, limit: int, after_seq: int | None, *, with_content: bool = False
    ) -> list[Message]:
        # With each message's place among its siblings (a listing of every branch).
        query = select(messages, *sibling_columns(messages)).where(
            and_(messages.c.user_id == self._user, messages.c.session_id == session_id)
        )
        if after_seq is not None:
            query = query.where(messages.c.seq > after_seq)
        query = query.order_by(messages.c.seq).limit(limit)
        rows = (await self._db.execute(query)).mappings().all()
        result = [to_message(r) for r in rows]
        await load_children(self._db, self._user, result, with_content=with_content)
        return result

    async def get(self, session_id: str, message_id: str) -> Message:
        row = (
            (
                await self._db.execute(
                    select(messages).where(
                        and_(
                            messages.c.user_id == self._user,
                            messages.c.session_id == session_id,
                            messages.c.id == message_id,
                        )
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(
                f"message {names.message(session_id, message_id)} was not found",
                reason=Reason.MESSAGE_NOT_FOUND,
            )
        result = [to_message(row)]
        await load_children(self._db, self._user, result, with_content=False)
        return result[0]

    async def last_user_before(self, session_id: str, seq: int) -> Message | None:
        row = (
            (
                await self._db.execute(
                    select(messages)
                    .where(
                        and_(
                            messages.c.user_id == self._user,
                            messages.c.session_id == session_id,
                            messages.c.seq < seq,
                            messages.c.role == Role.USER.value,
                        )
                    )
                    .order_by(messages.c.seq.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        return to_message(row) if row is not None else None

    async def context(
        self, session_id: str, requested: int, default: int, maximum: int
    ) -> tuple[Session, list[Message]]:
        """A turn's context: the session, and its last ``domain.memory_window`` messages,
        oldest first, with attachment content. NOT_FOUND if the session is not the user's.

        One statement on PostgreSQL (``context_queries.CONTEXT``); two on SQLite, which
        runs in-process and has no LATERAL join.
        """
        if self._db.dialect.name == "postgresql":
            params = {
                "p_user": self._user,
                "p_sid": session_id,
                "p_requested": requested,
                "p_default": default,
                "p_max": maximum,
            }
            rows = (await self._db.execute(CONTEXT, params)).mappings().all()
            if not rows:
                raise session_not_found(session_id)
            session = session_from_row({k[2:]: v for k, v in rows[0].items() if k[:2] == "s_"})
            return session, with_children(r for r in rows if r["id"] is not None)
        session = await SessionRepository(self._db, self._user).get(session_id)
        window = memory_window(requested, session.memory_limit, default, maximum)
        return session, await self.recent(session_id, window)

    async def recent(self, session_id: str, limit: int) -> list[Message]:
        """The last ``limit`` messages, oldest first, with attachment content (context)."""
        params = {"p_user": self._user, "p_sid": session_id, "p_limit": limit}
        return with_children((await self._db.execute(RECENT, params)).mappings().all())

    async def set_summary(
        self, session_id: str, message_id: str, summary: ContextSummary
    ) -> ContextSummary:
        """Keep a compaction summary on a message unless it has one (then that one)."""
        this = and_(
            messages.c.user_id == self._user,
            messages.c.session_id == session_id,
            messages.c.id == message_id,
        )
        await self._db.execute(
            update(messages)
            .where(this, messages.c.summary_text.is_(None))
            .values(summary_text=summary.text, summary_meta=summary.to_json())
        )
        row = (
            await self._db.execute(
                select(messages.c.summary_text, messages.c.summary_meta).where(this)
            )
        ).first()
        if row is None or row[0] is None:
            raise NotFound(
                f"message {names.message(session_id, message_id)} was not found",
                reason=Reason.MESSAGE_NOT_FOUND,
            )
        return ContextSummary.from_columns(row[0], row[1] or {})

    async def clear(self, session_id: str) -> None:
        result = await self._db.execute(
            update(sessions)
            .where(and_(sessions.c.user_id == self._user, sessions.c.id == session_id))
            .values(
                message_count=0, tools_locked=False, update_time_us=now_us(), active_message_id=None
            )
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise session_not_found(session_id)
        await storage.delete_session_messages(self._db, self._user, session_id)
