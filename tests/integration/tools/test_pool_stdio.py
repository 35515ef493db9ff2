"""The pool against real stdio MCP servers, kept open across this module's tests.

One pool, three children: the probe (2026-07-28 protocol), the probe again forced to the
handshake-era protocol, and the bundled tasks server (``aichat-backend mcp-tasks``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aichat_backend.tools.base import MODEL_NAME_PATTERN, ServerState
from aichat_backend.tools.pool import MCPPool
from tests.integration.tools.servers.probe import DOTTED_TOOL_NAME, LONG_TOOL_NAME
from tests.integration.tools.support import (
    WAIT,
    call,
    make_pool,
    probe_entry,
    tasks_entry,
    tool,
    wait,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]

SECRET = "sk-backend-secret-do-not-leak"
# The SDK's stdio transport adds these harmless ones; Python itself adds LC_CTYPE (PEP 538).
SDK_DEFAULTS = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LC_CTYPE"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MCPPool]:
    db = tmp_path_factory.mktemp("tasks") / "tasks.db"
    backend_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path_factory.mktemp("home")),
        "AICHAT_API_KEY": SECRET,
        "AICHAT_DATABASE_URL": f"postgresql://aichat:{SECRET}@db/aichat",
        "FOR_THE_PROBE": "named-by-its-entry",
    }
    entries = {
        "probe": probe_entry(env={"VISIBLE": "yes", "PASSED": "${FOR_THE_PROBE}"}),
        "legacy": probe_entry(protocol="legacy"),
        "tasks": tasks_entry(db),
    }
    with pytest.MonkeyPatch.context() as patch:
        # The backend's own secrets are in its environment while the children start.
        patch.setenv("AICHAT_API_KEY", SECRET)
        patch.setenv("AICHAT_DATABASE_URL", backend_env["AICHAT_DATABASE_URL"])
        the_pool = make_pool(entries, backend_env)
        await the_pool.start()
        assert await the_pool.wait_ready(WAIT)
    assert all(s.state is ServerState.CONNECTED for s in the_pool.servers()), the_pool.servers()
    yield the_pool
    await the_pool.aclose()


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_servers_report_state_and_tool_counts(pool: MCPPool) -> None:
    servers = {s.name: s for s in pool.servers()}
    assert servers["tasks"].tool_count == 6
    assert servers["probe"].transport == "stdio"
    assert all(s.last_error == "" for s in servers.values())


async def test_user_id_reaches_the_server_in_meta(pool: MCPPool) -> None:
    for server in ("probe", "legacy"):
        result = await call(pool, f"{server}__whoami", user="alice@example.com")
        assert not result.is_error
        assert result.text == "alice@example.com"


async def test_concurrent_calls_keep_their_own_user(pool: MCPPool) -> None:
    users = [user() for _ in range(30)]
    results = await asyncio.gather(*(call(pool, "probe__whoami", user=u) for u in users))
    assert [r.text for r in results] == users


async def test_stdio_child_gets_a_clean_environment(pool: MCPPool) -> None:
    result = await call(pool, "probe__environment")
    env = json.loads(result.text)
    assert set(env) <= SDK_DEFAULTS | {"VISIBLE", "PASSED"}, sorted(env)
    assert env["VISIBLE"] == "yes"
    assert env["PASSED"] == "named-by-its-entry"
    assert not any(name.startswith("AICHAT_") for name in env)
    assert not any(SECRET in value for value in env.values())


async def test_is_error_result(pool: MCPPool) -> None:
    result = await call(pool, "probe__fail", message="the disk is on fire")
    assert result.is_error
    assert not result.timed_out
    assert "the disk is on fire" in result.text


async def test_call_timeout_is_an_error_result(pool: MCPPool) -> None:
    result = await call(pool, "probe__sleep", timeout=0.3, seconds=30)
    assert result.is_error
    assert result.timed_out
    assert "0.3 s" in result.text
    assert result.duration_ms < 5000
    after = await call(pool, "probe__whoami", user="still-here")  # the session survived
    assert after.text == "still-here"


async def test_names_are_valid_unique_and_findable(pool: MCPPool) -> None:
    tools = pool.tools()
    names = [t.model_name for t in tools]
    assert len(names) == len(set(names))
    assert all(re.match(MODEL_NAME_PATTERN, n) for n in names), names
    for info in tools:
        assert pool.find(info.model_name) == info
        assert pool.find(info.resource_name) == info
    by_tool = {t.tool: t for t in tools if t.server == "probe"}
    for odd in (DOTTED_TOOL_NAME, LONG_TOOL_NAME):
        info = by_tool[odd]
        assert info.model_name != f"probe__{odd}"
        result = await pool.call(info, {}, user_id="u", timeout=5)
        assert not result.is_error, result.text


async def test_auto_approval_follows_annotations(pool: MCPPool) -> None:
    asks = {t.tool: t.approval_reason() is not None for t in pool.tools() if t.server == "tasks"}
    assert asks == {
        "list_tasks": False,
        "calculate": False,
        "add_task": True,
        "complete_task": True,
        "update_task": True,
        "delete_task": True,
    }
    assert tool(pool, "tasks__delete_task").annotations.destructive
    assert tool(pool, "tasks__calculate").annotations.read_only


@pytest.mark.parametrize("server", ["probe", "legacy"])
async def test_list_changed_refreshes_the_catalogue(pool: MCPPool, server: str) -> None:
    name = f"fresh_{uuid.uuid4().hex[:6]}"
    added = await call(pool, f"{server}__add_tool", tool=name)
    assert added.text == "added"
    await wait(pool, lambda: pool.find(f"{server}__{name}") is not None)
    result = await call(pool, f"{server}__{name}")
    assert result.text == f"I am {name}"


async def test_refresh_rereads_tool_lists(pool: MCPPool) -> None:
    name = f"quiet_{uuid.uuid4().hex[:6]}"
    await call(pool, "probe__add_tool", tool=name, notify=False)
    assert pool.find(f"probe__{name}") is None  # nobody told the pool
    tools = await pool.refresh()
    assert f"probe__{name}" in {t.model_name for t in tools}


async def test_tasks_are_scoped_by_user(pool: MCPPool) -> None:
    alice, bob = user(), user()
    added = await call(pool, "tasks__add_task", user=alice, title="buy milk", description="2 l")
    assert not added.is_error, added.text
    assert added.structured is not None
    task_id = added.structured["id"]

    bobs = await call(pool, "tasks__list_tasks", user=bob)
    assert bobs.structured == {"tasks": [], "count": 0}
    for name, args in [
        ("complete_task", {}),
        ("update_task", {"title": "hijacked"}),
        ("delete_task", {}),
    ]:
        denied = await call(pool, f"tasks__{name}", user=bob, task_id=task_id, **args)
        assert denied.is_error
        assert f"task {task_id} not found" in denied.text

    done = await call(pool, "tasks__complete_task", user=alice, task_id=task_id)
    assert done.structured is not None and done.structured["completed"] is True
    renamed = await call(pool, "tasks__update_task", user=alice, task_id=task_id, title="milk!")
    assert renamed.structured is not None and renamed.structured["title"] == "milk!"
    pending = await call(pool, "tasks__list_tasks", user=alice, status="pending")
    assert pending.structured == {"tasks": [], "count": 0}
    mine = await call(pool, "tasks__list_tasks", user=alice)
    assert mine.structured is not None and mine.structured["count"] == 1
    deleted = await call(pool, "tasks__delete_task", user=alice, task_id=task_id)
    assert deleted.structured is not None and deleted.structured["deleted"] is True
    empty = await call(pool, "tasks__list_tasks", user=alice)
    assert empty.structured == {"tasks": [], "count": 0}


async def test_tasks_need_a_user_id(pool: MCPPool) -> None:
    result = await call(pool, "tasks__list_tasks", user="")
    assert result.is_error
    assert "no user id" in result.text


async def test_calculator_through_the_server(pool: MCPPool) -> None:
    ok = await call(pool, "tasks__calculate", expression="2 * (3 + 4) ** 2")
    assert not ok.is_error
    assert ok.structured == {"expression": "2 * (3 + 4) ** 2", "result": 98}
    for bad in ("__import__('os')", "9 ** 9 ** 9", "open('/etc/passwd').read()"):
        refused = await call(pool, "tasks__calculate", expression=bad)
        assert refused.is_error, bad


async def test_invalid_arguments_are_an_error_result(pool: MCPPool) -> None:
    result = await call(pool, "tasks__complete_task", task_id="not-a-number")
    assert result.is_error
