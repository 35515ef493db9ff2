"""Which user a stdio tool server runs as (AICHAT_MCP_STDIO_USER), and how it is started."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from aichat_backend.tools import run_as
from aichat_backend.tools.config import parse_servers

ENTRIES = {
    "mcpServers": {
        "tasks": {"command": "tasks-server", "args": ["--db", "t.db"]},
        "web": {"url": "http://127.0.0.1:1/mcp"},
    }
}
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def configs():  # type: ignore[no-untyped-def]
    return parse_servers(ENTRIES, environ={"PATH": "/usr/bin", "HOME": "/root"})


@root_only
def test_a_root_backend_gives_each_stdio_server_a_user_and_home_of_its_own(
    tmp_path: Path,
) -> None:
    tasks, web = run_as.apply(configs(), "", tmp_path)
    assert web.run_as is None  # an HTTP server is not started by us
    assert tasks.run_as is not None
    uid = run_as.server_uid("tasks")
    assert tasks.run_as.uid == uid != 0 and uid == run_as.server_uid("tasks")  # stable
    home = Path(tasks.run_as.home)
    assert home == tmp_path.resolve() / "tool-servers" / "tasks"
    assert (home.stat().st_uid, home.stat().st_mode & 0o777) == (uid, 0o700)
    command, args, env, cwd = run_as.launch(tasks)
    assert command == sys.executable
    wrapper = ["-m", "aichat_backend.tools.drop_user", str(uid), str(uid), "--"]
    assert args == [*wrapper, "tasks-server", "--db", "t.db"]
    assert env["HOME"] == cwd == str(home)


@root_only
def test_same_keeps_the_backends_user_and_root_is_refused(tmp_path: Path) -> None:
    tasks, _ = run_as.apply(configs(), "same", tmp_path)
    assert tasks.run_as is None
    assert run_as.launch(tasks)[:2] == ("tasks-server", ["--db", "t.db"])
    with pytest.raises(ValueError, match="must not be root"):
        run_as.apply(configs(), "0", tmp_path)
    with pytest.raises(ValueError, match="no user named"):
        run_as.apply(configs(), "no-such-user-here", tmp_path)
    tasks, _ = run_as.apply(configs(), "nobody", tmp_path)
    assert tasks.run_as is not None and tasks.run_as.uid == 65534
