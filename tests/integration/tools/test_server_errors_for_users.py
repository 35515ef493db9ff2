"""Issue 19: a failing server's detail (its command path) is for operators, not every user.

ListToolServers and tool results show users a generic reason; the pool keeps the detail
(``ToolServerInfo.last_error``) for the operator API, and the log has it too.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from aichat.v1 import tool_service_pb2 as tpb

from aichat_backend.tools.base import (
    ApprovalPolicy,
    ServerState,
    ToolAnnotations,
    ToolInfo,
)
from aichat_backend.tools.server_status import CANNOT_CONNECT
from tests.integration.tools.support import make_pool, probe_entry, wait
from tests.support.grpc_helpers import md
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(40)

SECRET_PATH = "/opt/internal-vendor-x/bin/secret-tool"


async def test_users_see_a_generic_reason_operators_the_detail(
    tmp_path: Path, sqlite_url: str, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    servers = {"mcpServers": {"vendor": {"command": SECRET_PATH}, "probe": probe_entry()}}
    path = tmp_path / "mcp-servers.json"
    path.write_text(json.dumps(servers))
    caplog.set_level(logging.WARNING, logger="aichat_backend.tools")
    settings = make_settings(sqlite_url, data_dir=tmp_path, mcp_servers_file=path)
    async with running_server(settings) as server:
        pool = server.app.pool
        assert pool is not None
        assert await pool.wait_ready(20)

        listed = await server.tools.ListToolServers(tpb.ListToolServersRequest(), metadata=md(user))
        by_name = {s.name: s for s in listed.tool_servers}
        vendor = by_name["toolServers/vendor"]
        assert vendor.state == tpb.TOOL_SERVER_STATE_FAILED
        assert vendor.last_error == CANNOT_CONNECT
        assert "secret-tool" not in str(listed) and "/opt/" not in str(listed)
        assert by_name["toolServers/probe"].state == tpb.TOOL_SERVER_STATE_CONNECTED
        assert by_name["toolServers/probe"].last_error == ""

        # The operator's view (what the admin API reads): the whole detail.
        [info] = [s for s in pool.servers() if s.name == "vendor"]
        assert SECRET_PATH in info.last_error
        assert info.user_error == CANNOT_CONNECT
        # And the log has it, for whoever runs the service.
        assert any(SECRET_PATH in r.getMessage() for r in caplog.records)


async def test_a_call_to_a_failed_server_does_not_show_its_detail(tmp_path: Path) -> None:
    pool = make_pool({"vendor": {"command": SECRET_PATH}})
    await pool.start()
    try:
        await wait(pool, lambda: all(s.state is ServerState.FAILED for s in pool.servers()))
        ghost = ToolInfo(
            "vendor", "anything", "vendor__anything", "", {}, ToolAnnotations(), ApprovalPolicy.AUTO
        )
        result = await pool.call(ghost, {}, user_id="u", timeout=1)
        assert result.is_error
        assert "not connected" in result.text and CANNOT_CONNECT in result.text
        assert "secret-tool" not in result.text
    finally:
        await pool.aclose()


async def test_a_server_that_never_answers_says_so_generically(tmp_path: Path) -> None:
    never = tmp_path / "never-opened"
    os.mkfifo(never)
    pool = make_pool({"stuck": probe_entry("--gate", str(never), timeout=0.5)})
    await pool.start()
    try:
        await wait(pool, lambda: all(s.state is ServerState.FAILED for s in pool.servers()))
        [info] = pool.servers()
        assert "no answer within 0.5 s" in info.last_error
        assert info.user_error == "the tool server did not answer in time"
    finally:
        await pool.aclose()
