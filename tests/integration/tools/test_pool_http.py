"""The pool against real HTTP MCP servers: Streamable HTTP (the probe in a server thread,
the bundled tasks server as its own process) and the legacy SSE transport."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from aichat_backend.tools.base import ServerState
from aichat_backend.tools.pool import MCPPool
from tests.integration.tools.servers.probe import build
from tests.integration.tools.support import (
    WAIT,
    ThreadedHTTPServer,
    call,
    make_pool,
    state,
    wait,
)
from tests.support.ports import free_port

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]


@dataclass
class Servers:
    pool: MCPPool
    probe: ThreadedHTTPServer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Servers]:
    probe = ThreadedHTTPServer(lambda: build("probe-http").streamable_http_app())
    sse = ThreadedHTTPServer(lambda: build("probe-sse").sse_app())
    await asyncio.gather(asyncio.to_thread(probe.start), asyncio.to_thread(sse.start))
    port = free_port()  # the child binds it only after it has started
    db = tmp_path_factory.mktemp("tasks-http") / "tasks.db"
    tasks = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aichat_backend", "mcp-tasks",
        "--transport", "http", "--port", str(port), "--db", str(db),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    pool = make_pool(
        {
            "probe": {"url": f"{probe.url}/mcp", "timeout": 5},
            "legacy": {"url": f"{probe.url}/mcp", "timeout": 5, "protocol": "legacy"},
            "old": {"url": f"{sse.url}/sse", "transport": "sse", "timeout": 5},
            # Not up yet: the pool retries until the process listens.
            "tasks": {"url": f"http://127.0.0.1:{port}/mcp", "timeout": 5},
        }
    )
    await pool.start()
    try:
        await wait(pool, lambda: all(s.state is ServerState.CONNECTED for s in pool.servers()))
        yield Servers(pool, probe)
    finally:
        await pool.aclose()
        tasks.terminate()
        await tasks.wait()
        await asyncio.gather(asyncio.to_thread(probe.stop), asyncio.to_thread(sse.stop))


async def test_streamable_http_call_carries_the_user(servers: Servers) -> None:
    info = {s.name: s for s in servers.pool.servers()}
    assert info["probe"].transport == "streamable_http"
    assert info["old"].transport == "sse"
    for server in ("probe", "legacy"):
        result = await call(servers.pool, f"{server}__whoami", user="bob")
        assert result.text == "bob"


async def test_sse_transport(servers: Servers) -> None:
    result = await call(servers.pool, "old__whoami", user="carol")
    assert result.text == "carol"


@pytest.mark.parametrize("server", ["probe", "legacy"])
async def test_http_list_changed(servers: Servers, server: str) -> None:
    pool = servers.pool
    name = f"fresh_{uuid.uuid4().hex[:6]}"
    await call(pool, f"{server}__add_tool", tool=name)
    await wait(pool, lambda: pool.find(f"{server}__{name}") is not None)
    assert (await call(pool, f"{server}__{name}")).text == f"I am {name}"


async def test_http_call_timeout(servers: Servers) -> None:
    result = await call(servers.pool, "probe__sleep", timeout=0.3, seconds=30)
    assert result.is_error and result.timed_out
    assert (await call(servers.pool, "probe__whoami", user="after")).text == "after"


async def test_tasks_server_over_http(servers: Servers) -> None:
    pool = servers.pool
    alice, bob = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    added = await call(pool, "tasks__add_task", user=alice, title="over http")
    assert not added.is_error, added.text
    assert (await call(pool, "tasks__list_tasks", user=alice)).structured is not None
    theirs = await call(pool, "tasks__list_tasks", user=bob)
    assert theirs.structured == {"tasks": [], "count": 0}
    assert (await call(pool, "tasks__calculate", expression="6*7")).structured == {
        "expression": "6*7",
        "result": 42,
    }


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_http_server_gone_and_back(protocol: str) -> None:
    server = ThreadedHTTPServer(lambda: build("comeback").streamable_http_app())
    await asyncio.to_thread(server.start)
    pool = make_pool(
        {"web": {"url": f"{server.url}/mcp", "timeout": 5, "protocol": protocol}},
        keepalive_interval=0.1,  # how a handshake-era session notices the server is gone
    )
    await pool.start()
    try:
        assert await pool.wait_ready(WAIT)
        assert (await call(pool, "web__whoami", user="x")).text == "x"
        info = pool.find("web__whoami")
        assert info is not None

        await asyncio.to_thread(server.stop)
        # Noticed without a call: the event stream (auto) or the keepalive (legacy) fails.
        await wait(pool, lambda: state(pool, "web") is not ServerState.CONNECTED)
        gone = await pool.call(info, {}, user_id="x", timeout=2)
        assert gone.is_error
        assert pool.find("web__whoami") is None

        await asyncio.to_thread(server.start)  # same port, a fresh server
        await wait(
            pool,
            lambda: pool.connect_count("web") == 2 and state(pool, "web") is ServerState.CONNECTED,
        )
        assert (await call(pool, "web__whoami", user="y")).text == "y"
    finally:
        await pool.aclose()
        await asyncio.to_thread(server.stop)


@pytest.mark.asyncio(loop_scope="function")
async def test_legacy_http_session_forgotten_by_a_restarted_server() -> None:
    server = ThreadedHTTPServer(lambda: build("amnesiac").streamable_http_app())
    await asyncio.to_thread(server.start)
    pool = make_pool(
        {"web": {"url": f"{server.url}/mcp", "timeout": 5, "protocol": "legacy"}},
        keepalive_interval=3600,  # nothing but the next call will notice
    )
    await pool.start()
    try:
        assert await pool.wait_ready(WAIT)
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)  # same port; the old session id is unknown
        info = pool.find("web__whoami")
        assert info is not None
        forgotten = await pool.call(info, {}, user_id="x", timeout=5)
        assert forgotten.is_error  # and the pool checks its session, and replaces it
        await wait(
            pool,
            lambda: pool.connect_count("web") == 2 and state(pool, "web") is ServerState.CONNECTED,
        )
        assert (await call(pool, "web__whoami", user="z")).text == "z"
    finally:
        await pool.aclose()
        await asyncio.to_thread(server.stop)
