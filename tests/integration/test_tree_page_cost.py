"""What reading the active path of a large tree costs (issue 25, item 8): a page of a
1,000-message tree with 10 branches is ONE SQL statement on SQLite and on PostgreSQL,
counted with SQLAlchemy's cursor events around a real ListMessages over gRPC (tagged with
the RPC's request id, so nothing else running in the server is counted).

The figures (statements and milliseconds per page) are printed; run with ``-s`` to see
them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aichat.v1 import session_service_pb2 as spb
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from aichat_backend import request_context
from aichat_backend.domain import Message, Role, now_us
from aichat_backend.store.messages_repo import MessageRepository
from aichat_backend.store.tables import sessions
from tests.support.chat import chat_stack
from tests.support.grpc_helpers import md

pytestmark = pytest.mark.timeout(120)

TRUNK = 550  # the first branch; nine more of 50 fork off it at different depths
BRANCHES = 10
BRANCH_LENGTH = 50


@contextmanager
def statements_by_request() -> Iterator[dict[str, list[str]]]:
    seen: dict[str, list[str]] = {}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.setdefault(request_context.current_request_id(), []).append(statement)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def tree(session_id: str) -> tuple[list[Message], list[str]]:
    """1,000 messages: a trunk of 550, and 9 branches of 50 forking off it every 50
    messages; the leaf of each branch (the last one is the newest, the active path)."""
    made: list[Message] = []
    leaves: list[str] = []
    t = now_us()

    def add(parent: str, n: int) -> str:
        m = Message(
            session_id=session_id,
            id=uuid.uuid4().hex,
            seq=len(made) + 1,
            role=Role.USER if n % 2 == 0 else Role.ASSISTANT,
            text=f"message {len(made) + 1} " + "x" * 200,
            create_time_us=t,
            parent_id=parent,
        )
        made.append(m)
        return m.id

    trunk = [""]
    for n in range(TRUNK):
        trunk.append(add(trunk[-1], n))
    leaves.append(trunk[-1])
    for b in range(1, BRANCHES):
        parent = trunk[b * 50]
        for n in range(BRANCH_LENGTH):
            parent = add(parent, n)
        leaves.append(parent)
    return made, leaves


@pytest.mark.parametrize("page_size", [50])
async def test_a_page_of_the_active_path_of_a_large_tree_is_one_statement(
    database_url: str, user: str, page_size: int
) -> None:
    async with chat_stack("openai", database_url) as stack:
        name = await stack.new_session(user)
        session_id = name.split("/")[1]
        made, leaves = tree(session_id)
        assert len(made) == 1000 and len(leaves) == BRANCHES
        app = stack.server.app
        async with app.db.transaction() as tx:
            await MessageRepository(tx, user).insert(made)
            await tx.execute(
                sessions.update()
                .where((sessions.c.user_id == user) & (sessions.c.id == session_id))
                .values(last_seq=len(made), message_count=len(made), active_message_id=leaves[-1])
            )
        if app.db.dialect == "postgresql":
            # PostgreSQL plans from its statistics, which autovacuum gathers soon after a
            # bulk insert like this one; without them it walks the path with a scan of
            # the table per step (measured: ~100-300 ms a page instead of a few ms).
            async with app.db.transaction() as tx:
                await tx.execute(text("ANALYZE messages"))
        # The active path: 450 messages of the trunk, then the newest branch's 50.
        expected = 9 * 50 + BRANCH_LENGTH
        with statements_by_request() as seen:
            token, pages, timings, listed = "", 0, [], []
            while True:
                tag = uuid.uuid4().hex
                started = time.perf_counter()
                page = await stack.server.sessions.ListMessages(
                    spb.ListMessagesRequest(parent=name, page_size=page_size, page_token=token),
                    metadata=md(user, ("x-request-id", tag)),
                )
                timings.append((time.perf_counter() - started) * 1000)
                pages += 1
                listed.extend(page.messages)
                # One statement for the whole page (SQLite's in-process BEGIN aside: it
                # is transaction control, not a read).
                queries = [q for q in seen[tag] if q.strip().upper() != "BEGIN"]
                assert len(queries) == 1, seen[tag]
                token = page.next_page_token
                if not token:
                    break
        assert len(listed) == expected and pages == expected // page_size
        assert [m.parent for m in listed[1:]] == [m.name for m in listed[:-1]]
        branch_point = listed[9 * 50]  # the first message of the newest branch
        assert (branch_point.sibling_index, branch_point.sibling_count) == (1, 2)
        dialect = app.db.dialect
        print(
            f"\n{dialect}: {pages} pages of {page_size} of a {expected}-message active path "
            f"(1,000-message tree, {BRANCHES} branches): 1 statement each; "
            f"first page {timings[0]:.1f} ms, median "
            f"{sorted(timings)[len(timings) // 2]:.1f} ms, last {timings[-1]:.1f} ms (RPC)"
        )
