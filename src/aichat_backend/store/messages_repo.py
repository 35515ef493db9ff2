"""Messages with their attachments and tool calls, always scoped by their owner."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, delete, func, insert, select, true, update
from sqlalchemy.engine import RowMapping

from aichat_backend import names
from aichat_backend.domain import (
    Attachment,
    Feedback,
    Message,
    MessageState,
    Rating,
    Role,
    Session,
    ToolCall,
    ToolCallState,
    memory_window,
    now_us,
)
from aichat_backend.errors import NotFound
from aichat_backend.store.database import Tx
from aichat_backend.store.sessions_repo import (
    SessionRepository,
    session_from_row,
    session_not_found,
)
from aichat_backend.store.tables import attachments, messages, sessions, tool_calls


def new_message_id() -> str:
    return uuid.uuid4().hex


def _to_message(row: RowMapping) -> Message:
    return Message(
        session_id=row["session_id"],
        id=row["id"],
        seq=row["seq"],
        role=Role(row["role"]),
        text=row["text"],
        state=MessageState(row["state"]),
        model=row["model"],
        finish_reason=row["finish_reason"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        create_time_us=row["create_time_us"],
        feedback=_feedback(row),
    )


def _feedback(row: RowMapping) -> Feedback | None:
    rating = row.get("feedback_rating")
    if rating is None:
        return None
    return Feedback(Rating(rating), row["feedback_comment"] or "", row["feedback_time_us"] or 0)


_INSERT_MESSAGES = insert(messages)
# The history read of every turn, built once (see sessions_repo._GET): the last messages
# with their attachments and tool calls in one statement, not three. A message has one
# kind of child or none (user messages carry files, answers carry calls); rows repeat
# only if one had both, and _children() takes each child once either way.
_WINDOW = (
    select(messages)
    .where(
        and_(messages.c.user_id == bindparam("p_user"), messages.c.session_id == bindparam("p_sid"))
    )
    .order_by(messages.c.seq.desc())
    .limit(bindparam("p_limit", type_=Integer))
    .subquery("w")
)
_RECENT = (
    select(
        _WINDOW,
        attachments.c.position.label("a_position"),
        attachments.c.filename.label("a_filename"),
        attachments.c.mime_type.label("a_mime_type"),
        attachments.c.size_bytes.label("a_size_bytes"),
        attachments.c.sha256.label("a_sha256"),
        attachments.c.content.label("a_content"),
        attachments.c.text_content.label("a_text_content"),
        tool_calls.c.id.label("t_id"),
        tool_calls.c.tool_name.label("t_tool_name"),
        tool_calls.c.arguments.label("t_arguments"),
        tool_calls.c.state.label("t_state"),
        tool_calls.c.server.label("t_server"),
        tool_calls.c.result_text.label("t_result_text"),
        tool_calls.c.is_error.label("t_is_error"),
        tool_calls.c.duration_ms.label("t_duration_ms"),
        tool_calls.c.approval_reason.label("t_approval_reason"),
    )
    .select_from(
        _WINDOW.outerjoin(attachments, attachments.c.message_id == _WINDOW.c.id).outerjoin(
            tool_calls,
            and_(
                tool_calls.c.message_id == _WINDOW.c.id,
                tool_calls.c.user_id == bindparam("p_user"),
            ),
        )
    )
    .order_by(_WINDOW.c.seq, attachments.c.position, tool_calls.c.position)
)
# PostgreSQL only: a turn's whole context read, the session and its last messages (with
# files and calls), in one statement instead of two round trips. The window is
# domain.memory_window with the session's own limit read in the same statement.
_P_REQUESTED = bindparam("p_requested", type_=Integer)
_P_MAX = bindparam("p_max", type_=Integer)
_CONTEXT_WINDOW = (
    select(messages)
    .where(and_(messages.c.user_id == sessions.c.user_id, messages.c.session_id == sessions.c.id))
    .order_by(messages.c.seq.desc())
    .limit(
        case(
            (_P_REQUESTED > 0, func.least(_P_REQUESTED, _P_MAX)),
            (sessions.c.memory_limit > 0, func.least(sessions.c.memory_limit, _P_MAX)),
            else_=func.least(bindparam("p_default", type_=Integer), _P_MAX),
        )
    )
    .lateral("w")
)
_CONTEXT = (
    select(
        *(c.label(f"s_{c.name}") for c in sessions.c),
        _CONTEXT_WINDOW,
        *(c for c in _RECENT.selected_columns if c.name.startswith(("a_", "t_"))),
    )
    .select_from(
        sessions.outerjoin(_CONTEXT_WINDOW, true())
        .outerjoin(attachments, attachments.c.message_id == _CONTEXT_WINDOW.c.id)
        .outerjoin(
            tool_calls,
            and_(
                tool_calls.c.message_id == _CONTEXT_WINDOW.c.id,
                tool_calls.c.user_id == bindparam("p_user"),
            ),
        )
    )
    .where(and_(sessions.c.user_id == bindparam("p_user"), sessions.c.id == bindparam("p_sid")))
    .order_by(_CONTEXT_WINDOW.c.seq, attachments.c.position, tool_calls.c.position)
)
_ATTACHMENT_COLUMNS = (
    attachments.c.message_id,
    attachments.c.filename,
    attachments.c.mime_type,
    attachments.c.size_bytes,
    attachments.c.sha256,
)


def _attachments_of(*extra: Any) -> Any:
    return (
        select(*_ATTACHMENT_COLUMNS, *extra)
        .where(attachments.c.message_id.in_(bindparam("p_ids", expanding=True)))
        .order_by(attachments.c.message_id, attachments.c.position)
    )


_ATTACHMENTS = _attachments_of()
_ATTACHMENTS_WITH_CONTENT = _attachments_of(attachments.c.content, attachments.c.text_content)
_TOOL_CALLS = (
    select(tool_calls)
    .where(
        and_(
            tool_calls.c.user_id == bindparam("p_user"),
            tool_calls.c.message_id.in_(bindparam("p_ids", expanding=True)),
        )
    )
    .order_by(tool_calls.c.message_id, tool_calls.c.position)
)


def _to_attachment(row: RowMapping, prefix: str, *, with_content: bool) -> Attachment:
    """An attachment from its columns, named ``{prefix}filename`` and so on."""
    return Attachment(
        filename=row[f"{prefix}filename"],
        mime_type=row[f"{prefix}mime_type"],
        size_bytes=row[f"{prefix}size_bytes"],
        sha256=row[f"{prefix}sha256"],
        content=row[f"{prefix}content"] if with_content else None,
        text_content=row[f"{prefix}text_content"] if with_content else None,
    )


def _to_tool_call(row: RowMapping, prefix: str) -> ToolCall:
    """A tool call from its columns, named ``{prefix}id`` and so on."""
    return ToolCall(
        id=row[f"{prefix}id"],
        tool_name=row[f"{prefix}tool_name"],
        arguments=dict(row[f"{prefix}arguments"] or {}),
        state=ToolCallState(row[f"{prefix}state"]),
        server=row[f"{prefix}server"],
        result_text=row[f"{prefix}result_text"],
        is_error=row[f"{prefix}is_error"],
        duration_ms=row[f"{prefix}duration_ms"],
        approval_reason=row[f"{prefix}approval_reason"],
    )


def _with_children(rows: Iterable[RowMapping]) -> list[Message]:
    """Messages from rows of a message joined with its attachments and tool calls
    (``a_``/``t_`` columns), each child taken once, in row order."""
    by_id: dict[str, Message] = {}
    files: set[tuple[str, int]] = set()
    calls: set[tuple[str, str]] = set()
    for r in rows:
        m = by_id.get(r["id"])
        if m is None:
            m = by_id[r["id"]] = _to_message(r)
        position = r["a_position"]
        if position is not None and (m.id, position) not in files:
            files.add((m.id, position))
            m.attachments.append(_to_attachment(r, "a_", with_content=True))
        call_id = r["t_id"]
        if call_id is not None and (m.id, call_id) not in calls:
            calls.add((m.id, call_id))
            m.tool_calls.append(_to_tool_call(r, "t_"))
    return list(by_id.values())


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
    ) -> Message:
        """Add a message at the end of a session (sequence taken atomically)."""
        t = now_us()
        values: dict[str, object] = {
            "last_seq": sessions.c.last_seq + 1,
            "message_count": sessions.c.message_count + 1,
            "update_time_us": t,
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
            id=message_id or new_message_id(),
            seq=seq,
            role=role,
            text=text,
            state=state,
            model=model,
            create_time_us=t,
            attachments=list(attachments_in),
        )
        await self.insert([msg])
        return msg

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
        query = select(messages).where(
            and_(messages.c.user_id == self._user, messages.c.session_id == session_id)
        )
        if after_seq is not None:
            query = query.where(messages.c.seq > after_seq)
        query = query.order_by(messages.c.seq).limit(limit)
        rows = (await self._db.execute(query)).mappings().all()
        result = [_to_message(r) for r in rows]
        await self._load_children(result, with_content=with_content)
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
                reason="MESSAGE_NOT_FOUND",
            )
        result = [_to_message(row)]
        await self._load_children(result, with_content=False)
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
        return _to_message(row) if row is not None else None

    async def context(
        self, session_id: str, requested: int, default: int, maximum: int
    ) -> tuple[Session, list[Message]]:
        """A turn's context: the session, and its last ``domain.memory_window`` messages,
        oldest first, with attachment content. NOT_FOUND if the session is not the user's.

        One statement on PostgreSQL (``_CONTEXT``); two on SQLite, which runs in-process
        and has no LATERAL join.
        """
        if self._db.dialect.name == "postgresql":
            params = {
                "p_user": self._user,
                "p_sid": session_id,
                "p_requested": requested,
                "p_default": default,
                "p_max": maximum,
            }
            rows = (await self._db.execute(_CONTEXT, params)).mappings().all()
            if not rows:
                raise session_not_found(session_id)
            session = session_from_row({k[2:]: v for k, v in rows[0].items() if k[:2] == "s_"})
            return session, _with_children(r for r in rows if r["id"] is not None)
        session = await SessionRepository(self._db, self._user).get(session_id)
        window = memory_window(requested, session.memory_limit, default, maximum)
        return session, await self.recent(session_id, window)

    async def recent(self, session_id: str, limit: int) -> list[Message]:
        """The last ``limit`` messages, oldest first, with attachment content (context)."""
        params = {"p_user": self._user, "p_sid": session_id, "p_limit": limit}
        return _with_children((await self._db.execute(_RECENT, params)).mappings().all())

    async def clear(self, session_id: str) -> None:
        result = await self._db.execute(
            update(sessions)
            .where(and_(sessions.c.user_id == self._user, sessions.c.id == session_id))
            .values(message_count=0, tools_locked=False, update_time_us=now_us())
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise session_not_found(session_id)
        await self._db.execute(
            delete(messages).where(
                and_(messages.c.user_id == self._user, messages.c.session_id == session_id)
            )
        )

    async def _load_children(self, msgs: list[Message], *, with_content: bool) -> None:
        if not msgs:
            return
        by_id = {m.id: m for m in msgs}
        ids = list(by_id)
        query = _ATTACHMENTS_WITH_CONTENT if with_content else _ATTACHMENTS
        att_rows = (await self._db.execute(query, {"p_ids": ids})).mappings().all()
        for r in att_rows:
            by_id[r["message_id"]].attachments.append(
                _to_attachment(r, "", with_content=with_content)
            )
        params = {"p_user": self._user, "p_ids": ids}
        tc_rows = (await self._db.execute(_TOOL_CALLS, params)).mappings().all()
        grouped: dict[str, list[ToolCall]] = defaultdict(list)
        for r in tc_rows:
            grouped[r["message_id"]].append(_to_tool_call(r, ""))
        for mid, calls in grouped.items():
            by_id[mid].tool_calls = calls
