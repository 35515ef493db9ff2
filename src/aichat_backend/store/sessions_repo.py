"""Sessions, always scoped by their owner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, bindparam, delete, false, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from aichat_backend import names
from aichat_backend.domain import Session, now_us, session_not_found
from aichat_backend.errors import AlreadyExists
from aichat_backend.reasons import Reason
from aichat_backend.store import storage
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import sessions


def session_from_row(row: Mapping[Any, Any], now: int | None = None) -> Session:
    # The turn holding the session, while its lease is valid (a crashed replica's claim
    # runs out and is swept): read from the same row, so listing sessions stays one query.
    turn = row.get("active_turn_id")
    expires = row.get("active_turn_expires_us")
    running = bool(turn) and expires is not None and expires >= (now or now_us())
    return Session(
        user_id=row["user_id"],
        id=row["id"],
        display_name=row["display_name"],
        model=row["model"],
        system_prompt=row["system_prompt"],
        tool_names=list(row["tool_names"] or []),
        memory_limit=row["memory_limit"],
        labels=dict(row["labels"] or {}),
        message_count=row["message_count"],
        tools_locked=row["tools_locked"],
        create_time_us=row["create_time_us"],
        update_time_us=row["update_time_us"],
        tools_disabled=bool(row.get("tools_disabled")),
        active_turn_id=str(turn) if running else "",
        active_message_id=row.get("active_message_id") or "",
    )


# Built once: a statement object keeps its cache key, so SQLAlchemy skips building the
# WHERE clause and its key on every call (about a third of a small query's CPU, measured).
_GET = select(sessions).where(
    and_(sessions.c.user_id == bindparam("p_user"), sessions.c.id == bindparam("p_sid"))
)
_GET_FOR_UPDATE = _GET.with_for_update()


class SessionRepository:
    def __init__(self, db: Tx, user_id: str) -> None:
        self._db = db
        self._user = user_id

    def _mine(self, session_id: str) -> Any:
        return and_(sessions.c.user_id == self._user, sessions.c.id == session_id)

    async def create(self, s: Session) -> Session:
        t = now_us()
        values = {
            "user_id": self._user,
            "id": s.id,
            "display_name": s.display_name,
            "model": s.model,
            "system_prompt": s.system_prompt,
            "tool_names": list(s.tool_names),
            "memory_limit": s.memory_limit,
            "labels": dict(s.labels),
            "message_count": 0,
            "last_seq": 0,
            "tools_locked": False,
            "tools_disabled": s.tools_disabled,
            "title_by_user": bool(s.display_name),
            "create_time_us": t,
            "update_time_us": t,
        }
        try:
            async with self._db.begin_nested():
                await self._db.execute(insert(sessions).values(**values))
        except IntegrityError:
            raise AlreadyExists(
                f"session {names.session(s.id)} already exists",
                reason=Reason.SESSION_ALREADY_EXISTS,
                metadata={"resource": names.session(s.id)},
            ) from None
        return session_from_row(values)  # type: ignore[arg-type]

    async def get(self, session_id: str, *, for_update: bool = False) -> Session:
        query = _GET_FOR_UPDATE if for_update else _GET
        params = {"p_user": self._user, "p_sid": session_id}
        row = (await self._db.execute(query, params)).mappings().first()
        if row is None:
            raise session_not_found(session_id)
        return session_from_row(row)

    async def page(self, limit: int, after: tuple[int, str] | None) -> list[Session]:
        query = select(sessions).where(sessions.c.user_id == self._user)
        if after is not None:
            t, sid = after
            query = query.where(
                or_(
                    sessions.c.update_time_us < t,
                    and_(sessions.c.update_time_us == t, sessions.c.id < sid),
                )
            )
        query = query.order_by(sessions.c.update_time_us.desc(), sessions.c.id.desc()).limit(limit)
        rows = (await self._db.execute(query)).mappings().all()
        now = now_us()
        return [session_from_row(r, now) for r in rows]

    async def update(self, session_id: str, changes: dict[str, Any]) -> Session:
        values = dict(changes, update_time_us=now_us())
        if "display_name" in changes:
            values["title_by_user"] = True  # a title model never renames it now
        result = await self._db.execute(
            update(sessions).where(self._mine(session_id)).values(**values)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise session_not_found(session_id)
        return await self.get(session_id)

    async def write_title(self, session_id: str, title: str) -> bool:
        """A model's title, unless the user named the session (checked in the same
        UPDATE: a rename committed first wins, and one committed after overwrites it)."""
        result = await self._db.execute(
            update(sessions)
            .where(self._mine(session_id), sessions.c.title_by_user == false())
            .values(display_name=title)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def delete(self, session_id: str) -> None:
        # The messages first, so that what they counted leaves the user's storage with them.
        await storage.delete_session_messages(self._db, self._user, session_id)
        result = await self._db.execute(delete(sessions).where(self._mine(session_id)))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise session_not_found(session_id)
