"""What a turn sends the database before its first token, statement by statement.

The common turn (no request_id) reads its context and stores its begin, nothing else,
before the client has its first text: the crash-safety of issue 23 (sequence limits,
round answers, recovery) must not add a statement there. A turn with a request_id takes
its key before the model is called, which costs it the begin's round trip up front.
Counted as the benchmark's database probe does: SQLAlchemy's cursor events, tagged with
the RPC's request id (the log's flusher and housekeeping run outside any request).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from sqlalchemy import event
from sqlalchemy.engine import Engine

from aichat_backend import request_context
from aichat_devtools.bench_dbprobe import _classify
from aichat_devtools.fake_llm import Script
from tests.support.chat import chat_stack
from tests.support.grpc_helpers import md
from tests.support.replicas import read_rest

pytestmark = pytest.mark.timeout(60)


@contextmanager
def statements_by_request() -> Iterator[dict[str, list[str]]]:
    seen: dict[str, list[str]] = {}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb, table = _classify(statement)
        seen.setdefault(request_context.current_request_id(), []).append(f"{verb} {table}")

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)


async def _before_first_token(
    stack: Any, seen: dict[str, list[str]], user: str, session: str, request_id: str = ""
) -> list[str]:
    gate = asyncio.Event()
    stack.fake.enqueue(Script(tokens=["first ", "rest"], gate_after=1, gate=gate))
    tag = uuid.uuid4().hex
    call = stack.server.chat.StreamChat(
        cpb.StreamChatRequest(session=session, text="count", request_id=request_id),
        metadata=md(user, ("x-request-id", tag)),
    )
    try:
        while (await call.read()).WhichOneof("event") != "text_delta":
            pass
        before = list(seen.get(tag, []))
    finally:
        gate.set()
    await read_rest(call)
    return before


@pytest.mark.parametrize("provider", ["openai"])
async def test_the_common_turn_sends_nothing_new_before_its_first_token(
    database_url: str, provider: str, user: str
) -> None:
    async with chat_stack(provider, database_url) as stack:
        session = await stack.new_session(user)
        with statements_by_request() as seen:
            plain = await _before_first_token(stack, seen, user, session)
            keyed = await _before_first_token(stack, seen, user, session, "count-1")
    print(f"\nbefore the first token: {plain} (no request_id); {keyed} (with one)")
    if stack.server.app.db.dialect == "postgresql":
        # The context read, and the begin: one statement (claim + both messages).
        assert plain == ["SELECT sessions", "INSERT messages"]
    else:
        # SQLite: the context read (one statement since the tree's path read, issue 25),
        # then the begin: the user's storage counted (within the quota, issue 24.6:
        # in-process, in the same transaction), the claim and its messages.
        assert plain == [
            "SELECT sessions",
            "INSERT user_storage",
            "UPDATE sessions",
            "INSERT messages",
        ]
    writes = [s for s in plain if s.split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert all(s.endswith(("messages", "sessions", "user_storage")) for s in writes)
    assert "INSERT idempotency_keys" in keyed  # taken before the model is called
