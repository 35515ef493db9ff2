"""Migration 0007 on a database holding data (issue 25): every message's parent becomes
the one stored before it in its session, every session's active message its last one, and
nothing is lost — on SQLite and on a fresh PostgreSQL database.

The data is written at revision 0006 with plain SQL (the tables as they were then), the
migration runs, and the store then reads each session as the line it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from aichat_backend.config import Settings
from aichat_backend.domain import Rating
from aichat_backend.store.database import Database
from aichat_backend.store.schema_upgrade import MIGRATIONS_DIR
from aichat_backend.store.session_store import SqlSessionStore
from tests.support import postgres

pytestmark = pytest.mark.timeout(60)

BEFORE_TREE = "0006"


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    request.getfixturevalue("pg_database_url")  # skips (or fails in CI) without PostgreSQL
    name, url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(name)


def _upgrade(conn: Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def _downgrade(conn: Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.downgrade(cfg, revision)


# Two users' sessions as revision 0006 kept them: a line of messages numbered by seq (one
# session's first messages cleared long ago, so its numbers start at 5), an empty session,
# files, tool calls (one still waiting for approval) and feedback.
SESSIONS = [("alice", "plans", 8), ("alice", "empty", 0), ("bob", "plans", 2)]
MESSAGES = [
    ("alice", "plans", "m5", 5, "user", "first question"),
    ("alice", "plans", "m6", 6, "assistant", "first answer"),
    ("alice", "plans", "m7", 7, "user", "add a task"),
    ("alice", "plans", "m8", 8, "assistant", "may I?"),
    ("bob", "plans", "b1", 1, "user", "hi"),
    ("bob", "plans", "b2", 2, "assistant", "hello"),
]


def _fill_at_0006(conn: Connection) -> None:
    for user, sid, last in SESSIONS:
        conn.execute(
            text(
                "INSERT INTO sessions (user_id, id, display_name, model, system_prompt,"
                " tool_names, memory_limit, labels, message_count, last_seq, tools_locked,"
                " tools_disabled, create_time_us, update_time_us)"
                " VALUES (:u, :s, 'T', '', '', '[]', 0, '{}', :n, :last, false, false, 1, 2)"
            ),
            {"u": user, "s": sid, "n": sum(1 for m in MESSAGES if m[:2] == (user, sid)),
             "last": last},
        )  # fmt: skip
    for user, sid, mid, seq, role, body in MESSAGES:
        conn.execute(
            text(
                "INSERT INTO messages (id, user_id, session_id, seq, role, text, state, model,"
                " finish_reason, input_tokens, output_tokens, create_time_us)"
                " VALUES (:id, :u, :s, :seq, :role, :t, 'complete', '', '', 0, 0, :created)"
            ),
            {"id": mid, "u": user, "s": sid, "seq": seq, "role": role, "t": body, "created": seq},
        )
    conn.execute(
        text(
            "INSERT INTO attachments (message_id, position, filename, mime_type, size_bytes,"
            " sha256, content) VALUES ('m5', 0, 'notes.txt', 'text/plain', 5, 'x', :c)"
        ),
        {"c": b"notes"},
    )
    conn.execute(
        text(
            "INSERT INTO tool_calls (message_id, id, user_id, session_id, position, tool_name,"
            " server, arguments, state, result_text, is_error, duration_ms, approval_reason,"
            " create_time_us, update_time_us) VALUES ('m8', 'call-1', 'alice', 'plans', 0,"
            " 'tasks__add_task', 'tasks', :args, 'pending_approval', '', false, 0, 'writes',"
            " 1, 1)"
        ),
        {"args": json.dumps({"title": "water the plants"})},
    )
    conn.execute(
        text(
            "UPDATE messages SET feedback_rating = 'up', feedback_comment = 'good',"
            " feedback_time_us = 3 WHERE id = 'm6'"
        )
    )


def _check_migrated(conn: Connection) -> None:
    rows = conn.execute(
        text("SELECT user_id, session_id, id, parent_id FROM messages ORDER BY user_id, seq")
    ).all()
    parents = {(u, s, m): p for u, s, m, p in rows}
    assert parents == {
        ("alice", "plans", "m5"): "",
        ("alice", "plans", "m6"): "m5",
        ("alice", "plans", "m7"): "m6",
        ("alice", "plans", "m8"): "m7",
        ("bob", "plans", "b1"): "",
        ("bob", "plans", "b2"): "b1",
    }
    active = dict(
        ((u, s), a)
        for u, s, a in conn.execute(text("SELECT user_id, id, active_message_id FROM sessions"))
    )
    assert active == {("alice", "plans"): "m8", ("alice", "empty"): None, ("bob", "plans"): "b2"}


def _migrate_with_data(conn: Connection) -> None:
    _upgrade(conn, BEFORE_TREE)
    _fill_at_0006(conn)
    _upgrade(conn, "head")
    _check_migrated(conn)
    # And back, and up again: the downgrade drops only what 0007 added.
    _downgrade(conn, BEFORE_TREE)
    assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == len(MESSAGES)
    _upgrade(conn, "head")
    _check_migrated(conn)


async def test_migration_0007_keeps_every_session_as_the_line_it_was(fresh_url: str) -> None:
    if fresh_url.startswith("sqlite"):
        engine = create_engine(fresh_url)
        with engine.begin() as conn:
            _migrate_with_data(conn)
        engine.dispose()
    else:
        aengine = create_async_engine(fresh_url)
        async with aengine.begin() as aconn:
            await aconn.run_sync(_migrate_with_data)
        await aengine.dispose()

    db = Database(Settings(database_url=fresh_url))
    await db.migrate()  # at the head already: nothing to do
    store = SqlSessionStore(db, 3600)
    try:
        page = await store.list_path("alice", "plans", None, None, 50, 1 << 20)
        shown: list[Any] = [
            (m.id, m.parent_id, m.sibling_index, m.sibling_count) for m in page.messages
        ]
        assert shown == [
            ("m5", "", 0, 1),
            ("m6", "m5", 0, 1),
            ("m7", "m6", 0, 1),
            ("m8", "m7", 0, 1),
        ]
        assert [m.text for m in page.messages] == [m[5] for m in MESSAGES[:4]]
        first, answer, _, waiting = page.messages
        assert [a.filename for a in first.attachments] == ["notes.txt"]
        assert answer.feedback is not None and answer.feedback.rating is Rating.UP
        assert [(c.id, c.state.value) for c in waiting.tool_calls] == [
            ("call-1", "pending_approval")
        ]
        assert (page.leaf_id, page.more) == ("m8", False)
        empty = await store.list_path("alice", "empty", None, None, 50, 1 << 20)
        assert empty.messages == []
        bob = await store.list_path("bob", "plans", None, None, 50, 1 << 20)
        assert [m.id for m in bob.messages] == ["b1", "b2"]
        session = await store.get_session("alice", "plans")
        assert (session.active_message_id, session.message_count) == ("m8", 4)
    finally:
        await db.dispose()
