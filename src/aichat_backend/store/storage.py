"""Storage per user: what each message counts, the per-user counter, and the quota.

Every message row carries ``stored_bytes`` (its text, reasoning, attachments and tool
calls); the ``user_storage`` row of its owner is their sum, kept by the same write or
delete that changes a message (never a SUM over the user's messages on a request). The database is
the truth, so every replica sees the same counter.

A turn's first write takes its bytes against the quota:

- with attachments (the big ones), or on SQLite: ``reserve`` in the turn's transaction,
  an upsert that adds only while the total stays within the quota (row-locked on
  PostgreSQL, so concurrent turns of one user cannot both pass); the claim failing after
  it rolls it back;
- a text-only turn on PostgreSQL keeps its one statement (``answers_repo``): the claim
  reads the counter in its WHERE and the count is added from the claim's row. Concurrent
  text turns of one user may then pass together: past the quota by at most their texts
  (max_concurrent_turns_per_user times AICHAT_MAX_MESSAGE_BYTES).

An answer is counted when it is written, by the difference with what its row counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from aichat_backend.domain import Attachment, Message
from aichat_backend.errors import ResourceExhausted
from aichat_backend.reasons import Reason
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import messages, user_storage

# No quota: a bound no counter reaches, so the statements need no second shape.
UNLIMITED = 1 << 62


@dataclass(frozen=True, slots=True)
class StorageQuota:
    """Bytes each user may store (0: unlimited), and who is not held."""

    quota_bytes: int = 0
    exempt_users: frozenset[str] = frozenset()

    def of(self, user_id: str) -> int:
        """The user's bound (``UNLIMITED`` when none holds them)."""
        if self.quota_bytes <= 0 or user_id in self.exempt_users:
            return UNLIMITED
        return self.quota_bytes


def text_bytes(s: str | None) -> int:
    return len(s.encode("utf-8", "surrogatepass")) if s else 0


def attachment_bytes(files: Iterable[Attachment]) -> int:
    return sum(a.size_bytes + text_bytes(a.text_content) for a in files)


def message_bytes(m: Message) -> int:
    """What a message counts: its text, its reasoning, its attachments and its tool
    calls' arguments and results (a round's answer is written again once its tools ran:
    the results are counted then, by the difference)."""
    reasoning = sum(text_bytes(b.text) + text_bytes(b.data) for b in m.reasoning)
    calls = sum(
        text_bytes(c.result_text) + text_bytes(json.dumps(c.arguments, ensure_ascii=False))
        for c in m.tool_calls
    )
    return text_bytes(m.text) + reasoning + attachment_bytes(m.attachments) + calls


def quota_exceeded(quota: int, stored: int, needed: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"storing this message needs {needed} bytes; {stored} of your {quota} bytes of "
        "storage are used: delete sessions or clear messages to make room",
        reason=Reason.STORAGE_QUOTA_EXCEEDED,
        metadata={
            "quota_bytes": str(quota),
            "stored_bytes": str(stored),
            "needed_bytes": str(needed),
        },
    )


def _insert(dialect: str) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(user_storage)


def _adding(stmt: Any, *, within: Any = None) -> Any:
    c = user_storage.c
    added = c.stored_bytes + stmt.excluded.stored_bytes
    return stmt.on_conflict_do_update(
        index_elements=["user_id"], set_={"stored_bytes": added}, where=within
    )


def _reserve(dialect: str) -> Any:
    """Adds ``p_size`` only while the total stays within ``p_quota``; returns the total."""
    row = select(cast(bindparam("p_user"), String), cast(bindparam("p_size"), BigInteger)).where(
        bindparam("p_size", type_=BigInteger) <= bindparam("p_quota", type_=BigInteger)
    )
    stmt = _insert(dialect).from_select(["user_id", "stored_bytes"], row)
    within = user_storage.c.stored_bytes + stmt.excluded.stored_bytes <= bindparam("p_quota")
    return _adding(stmt, within=within).returning(user_storage.c.stored_bytes)


def _add(dialect: str) -> Any:
    stmt = _insert(dialect).values(user_id=bindparam("p_user"), stored_bytes=bindparam("p_size"))
    return _adding(stmt)


_RESERVE = {d: _reserve(d) for d in ("postgresql", "sqlite")}
_ADD = {d: _add(d) for d in ("postgresql", "sqlite")}
_STORED = select(user_storage.c.stored_bytes).where(user_storage.c.user_id == bindparam("p_user"))


def stored_now() -> Any:
    """The counter as a scalar subquery (0 for a user who never stored anything)."""
    return func.coalesce(_STORED.scalar_subquery(), 0)


def add_from(cte: Any, size: Any) -> Any:
    """PostgreSQL: add ``size`` (a column of ``cte``) to ``p_user``'s counter once per
    row ``cte`` returned: a write that did not land counts nothing."""
    row = select(cast(bindparam("p_user"), String), size).select_from(cte)
    return _adding(postgresql.insert(user_storage).from_select(["user_id", "stored_bytes"], row))


async def stored(db: Tx, user_id: str) -> int:
    return int(await db.scalar(_STORED, {"p_user": user_id}) or 0)


async def reserve(db: Tx, user_id: str, size: int, quota: int) -> None:
    """Count ``size`` more bytes for the user, or refuse them past ``quota`` (nothing
    counted). Inside the write's transaction: its rollback returns them."""
    if size <= 0:
        return
    params = {"p_user": user_id, "p_size": size, "p_quota": quota}
    if (await db.execute(_RESERVE[db.dialect.name], params)).first() is None:
        raise quota_exceeded(quota, await stored(db, user_id), size)


async def add(db: Tx, user_id: str, size: int) -> None:
    """Count ``size`` bytes more (or fewer, when negative) for the user, unconditionally."""
    if size:
        await db.execute(_ADD[db.dialect.name], {"p_user": user_id, "p_size": size})


async def rewrite_delta(
    db: Tx, user_id: str, message_id: str, size: int, states: Sequence[str] = ()
) -> int:
    """What rewriting a message to ``size`` bytes adds (0 if it is gone, or not in one
    of ``states`` when given). Locks the row on PostgreSQL until the transaction ends,
    so a concurrent delete subtracts what this write leaves."""
    query = select(messages.c.stored_bytes).where(
        and_(messages.c.user_id == user_id, messages.c.id == message_id)
    )
    if states:
        query = query.where(or_(*(messages.c.state == s for s in states)))
    before = await db.scalar(query.with_for_update())
    return 0 if before is None else size - int(before)


def _of_session(user_id: str, session_id: str) -> Any:
    return and_(messages.c.user_id == user_id, messages.c.session_id == session_id)


# PostgreSQL: the deleted rows' own counts, in one statement with the delete (a row a
# concurrent write held is deleted, and counted, as that write left it).
_DELETE_AND_RELEASE = text(
    """
    WITH gone AS (
      DELETE FROM messages WHERE user_id = :p_user AND session_id = :p_sid
      RETURNING stored_bytes
    )
    UPDATE user_storage
       SET stored_bytes = user_storage.stored_bytes
                          - (SELECT COALESCE(SUM(stored_bytes), 0) FROM gone)
     WHERE user_id = :p_user
    """
)


async def delete_session_messages(db: Tx, user_id: str, session_id: str) -> None:
    """Delete a session's messages (attachments and tool calls cascade) and take what
    they counted off the user's counter, in the caller's transaction."""
    if db.dialect.name == "postgresql":
        await db.execute(_DELETE_AND_RELEASE, {"p_user": user_id, "p_sid": session_id})
        return
    # SQLite: writers take turns (one connection, serialized), so sum, then delete.
    total = await db.scalar(
        select(func.coalesce(func.sum(messages.c.stored_bytes), 0)).where(
            _of_session(user_id, session_id)
        )
    )
    await db.execute(delete(messages).where(_of_session(user_id, session_id)))
    if total:
        await db.execute(
            update(user_storage)
            .where(user_storage.c.user_id == user_id)
            .values(stored_bytes=user_storage.c.stored_bytes - literal(int(total)))
        )


async def largest(
    db: Tx, limit: int, after: tuple[int, str] | None, user_id: str = ""
) -> list[tuple[str, int]]:
    """Users by stored bytes, largest first, after a (bytes, user) keyset position."""
    c = user_storage.c
    query = select(c.user_id, c.stored_bytes).where(c.stored_bytes > 0)
    if user_id:
        query = query.where(c.user_id == user_id)
    if after is not None:
        size, who = after
        query = query.where(
            or_(c.stored_bytes < size, and_(c.stored_bytes == size, c.user_id < who))
        )
    # Both descending: the index on (stored_bytes, user_id) read backwards.
    query = query.order_by(c.stored_bytes.desc(), c.user_id.desc()).limit(limit)
    return [(u, int(b)) for u, b in await db.execute(query)]
