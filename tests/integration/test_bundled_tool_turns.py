"""The bundled SQL, user lookup and Python servers in real chat turns (engine + pool + approval).

The SQL and lookup tools are read-only, so the model's calls run at once; the sandbox is
destructive, so its call waits for the user's approval before any code runs.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb

from aichat_backend.tools import python_sandbox
from aichat_devtools.fake_llm import Script
from tests.integration.tools.readonly_pg import ReadOnlyDatabase, readonly_db
from tests.support.chat import ChatStack
from tests.support.grpc_helpers import md
from tests.support.tool_stack import tool_stack

pytestmark = pytest.mark.timeout(90)
__all__ = ["readonly_db"]


def bundled(module: str, **env: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-m", f"aichat_backend.tools.{module}"], "env": env}


@pytest.fixture
async def stack(
    readonly_db: ReadOnlyDatabase, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[ChatStack]:
    servers = {
        "sql": bundled("sql_server", AICHAT_SQL_TOOL_DATABASE_URL=readonly_db.url),
        "me": bundled("user_lookup_server", AICHAT_USER_LOOKUP_DATABASE_URL=readonly_db.url),
    }
    if python_sandbox.available() is None:
        servers["python"] = bundled("python_server")
    async with tool_stack("openai", sqlite_url, tmp_path, servers) as s:
        yield s


def tool_states(events: list[cpb.StreamChatResponse]) -> list[tuple[str, int]]:
    return [(e.tool_call.tool_name, e.tool_call.state) for e in events if e.HasField("tool_call")]


async def test_sql_and_profile_run_at_once(stack: ChatStack) -> None:
    user = "alice"  # a row of the lookup table; this stack's chat database is its own
    session = await stack.new_session(user)
    stack.fake.enqueue(
        Script(
            tool_calls=[
                ("q1", "sql__query", {"sql": "SELECT count(*) AS n FROM items"}),
                ("p1", "me__my_profile", {"user_id": "bob"}),  # asks for someone else
            ]
        ),
        Script(tokens=["You are on pro; 250 items."]),
    )
    events = await stack.turn(user, session, "how many items, and what is my plan?")
    succeeded = {
        name for name, state in tool_states(events) if state == rpb.TOOL_CALL_STATE_SUCCEEDED
    }
    assert succeeded == {"sql__query", "me__my_profile"}  # neither asked for approval
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    sent = str(stack.fake.requests[-1].body["messages"])
    assert "| 250 |" in sent
    assert "id: alice" in sent and "bob" not in sent.replace('"user_id": "bob"', "")


@pytest.mark.skipif(python_sandbox.available() is not None, reason="sandbox needs root")
async def test_code_runs_only_after_approval(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(
        Script(tool_calls=[("c1", "python__run_python", {"code": "print(6 * 7)"})]),
        Script(tokens=["It printed 42."]),
    )
    events = await stack.turn(user, session, "run some python")
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_AWAITING_APPROVAL
    asked = events[-2].approval_required.tool_calls
    assert [c.tool_name for c in asked] == ["python__run_python"]
    assert len(stack.fake.requests) == 1  # nothing ran yet
    resumed = [
        e
        async for e in stack.server.chat.ResolveToolCalls(
            cpb.ResolveToolCallsRequest(
                session=session,
                decisions=[cpb.ToolCallDecision(tool_call_id="c1", approved=True)],
            ),
            metadata=md(user),
        )
    ]
    assert ("python__run_python", rpb.TOOL_CALL_STATE_SUCCEEDED) in tool_states(resumed)
    assert resumed[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    assert "42" in str(stack.fake.requests[-1].body["messages"])
