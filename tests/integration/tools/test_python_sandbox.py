"""The bundled Python sandbox through the real pool: escape attempts that must be contained.

The test process plays the backend: it holds a secret in its environment and a file of
its own, runs a listener on 127.0.0.1, and is the parent of the MCP server whose calls
run the code (so ``/proc/<ppid>/environ`` of the server would be ours).

Every test runs twice: with the server as root (as the test process is here), and with
the server as a throwaway unprivileged user (``unprivileged``), where the sandbox is
built in a user namespace. Both must contain the same escapes and keep the same budget.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aichat_backend.tools import python_sandbox
from aichat_backend.tools.pool import MCPPool
from tests.integration.tools import sandbox_hogs, unprivileged
from tests.integration.tools.support import call, make_pool, tool
from tests.support.tool_stack import servers_up

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        os.geteuid() != 0, reason="runs the server as root and as a throwaway user: needs root"
    ),
]

SECRET = "sk-backend-secret-for-the-sandbox-test"
MEMORY_MB = 256
LIMITS = {
    "AICHAT_PYTHON_SANDBOX_CPU_SECONDS": "2",
    "AICHAT_PYTHON_SANDBOX_WALL_SECONDS": "8",
    "AICHAT_PYTHON_SANDBOX_OUTPUT_KB": "16",
    "AICHAT_PYTHON_SANDBOX_MEMORY_MB": str(MEMORY_MB),  # the call's, all processes together
    "AICHAT_PYTHON_SANDBOX_PROCESSES": "4",
    "AICHAT_PYTHON_SANDBOX_MAX_CALLS": "16",
}
SERVER_MODULE = "aichat_backend.tools.python_server"


def entry(mode: str, **env: str) -> dict[str, Any]:
    command, args = sys.executable, ["-m", SERVER_MODULE]
    if mode == "unprivileged":
        command, args = unprivileged.wrap(command, args, unprivileged.throwaway_uid())
    return {"command": command, "args": args, "env": {**LIMITS, **env}}


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["root", "unprivileged"])
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[MCPPool]:
    os.environ["AICHAT_TEST_BACKEND_SECRET"] = SECRET  # what the backend would hold
    mode = request.param
    servers = {
        "py": entry(mode),
        # A CPU limit far inside the wall clock: on a loaded machine 2 CPU seconds may take
        # longer than 8 wall seconds, and this server is where the CPU limit is what stops.
        "py_cpu": entry(
            mode,
            AICHAT_PYTHON_SANDBOX_CPU_SECONDS="1",
            AICHAT_PYTHON_SANDBOX_WALL_SECONDS="120",
        ),
        # Room for two calls at once in all (one per user).
        "py_two": entry(mode, AICHAT_PYTHON_SANDBOX_MAX_CALLS="2"),
    }
    pool = make_pool(servers)
    await pool.start()
    try:
        await servers_up(pool)
        yield pool
    finally:
        await pool.aclose()
        del os.environ["AICHAT_TEST_BACKEND_SECRET"]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def leftovers() -> list[int]:
    """Processes below the sandbox servers (there must be none once a call has returned)."""
    tree = _children()
    servers = [
        pid
        for pid in tree.get(os.getpid(), [])
        if SERVER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert servers, "no sandbox server among this process's children"
    found, todo = [], [child for pid in servers for child in tree.get(pid, [])]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


async def run(
    pool: MCPPool, code: str, server: str = "py", user: str = "tester", *, alone: bool = True
) -> tuple[bool, str]:
    """``alone``: no other call is running, so nothing may be left once this one returned."""
    result = await call(pool, f"{server}__run_python", user=user, timeout=150, code=code)
    assert not alone or not leftovers()
    return result.is_error, result.text.removeprefix("Error executing tool run_python: ")


async def test_code_runs_and_asks_for_approval(pool: MCPPool) -> None:
    failed, text = await run(pool, "print(sum(range(10)))")
    assert not failed and text.splitlines() == ["exit code 0", "--- stdout ---", "45"]
    failed, text = await run(pool, "raise SystemExit(3)")
    assert failed and text.startswith("exit code 3")
    assert tool(pool, "py__run_python").approval_reason() is not None


async def test_the_backends_environment_is_out_of_reach(pool: MCPPool) -> None:
    code = f"""
import os, glob
seen = [repr(dict(os.environ))]
for path in [f"/proc/{{os.getppid()}}/environ", "/proc/1/environ", "/proc/self/environ",
             *glob.glob("/proc/*/environ")]:
    try:
        seen.append(open(path, "rb").read().decode(errors="replace"))
    except OSError as exc:
        seen.append(f"{{path}}: {{exc.__class__.__name__}}")
print("\\n".join(seen))
print("found" if {SECRET!r} in "".join(seen) else "not found")
"""
    failed, text = await run(pool, code)
    assert not failed, text
    assert SECRET not in text.replace(repr(SECRET), "")
    assert text.rstrip().endswith("not found")
    assert "environ: FileNotFoundError" in text  # there is no /proc at all


async def test_the_backends_files_are_out_of_reach(pool: MCPPool, tmp_path: Path) -> None:
    own = tmp_path / "backend-config.json"
    own.write_text(SECRET)
    code = f"""
import os
for path in [{str(own)!r}, {str(Path.cwd() / "pyproject.toml")!r}, "/etc/passwd", "/root"]:
    try:
        print(path, "READ", open(path).read()[:40])
    except OSError as exc:
        print(path, exc.__class__.__name__)
print(sorted(os.listdir("/")))
"""
    failed, text = await run(pool, code)
    assert not failed, text
    assert "READ" not in text and SECRET not in text
    assert "['bin', 'dev', 'lib', 'lib64', " in text and "'work'" in text


async def test_writes_outside_the_scratch_folder_fail(pool: MCPPool, tmp_path: Path) -> None:
    targets = [tmp_path / "escaped", Path("/tmp/aichat-sandbox-escape"), Path("/escaped")]
    targets += [Path("/usr/escaped"), Path("/dev/escaped"), Path("/work/../escaped")]
    code = f"""
for path in {[str(t) for t in targets]!r}:
    try:
        open(path, "w").write("x")
        print(path, "WRITTEN")
    except OSError as exc:
        print(path, exc.__class__.__name__)
open("/work/fine.txt", "w").write("scratch is writable")
print(open("/work/fine.txt").read())
"""
    failed, text = await run(pool, code)
    assert not failed, text
    assert "WRITTEN" not in text
    assert "scratch is writable" in text
    assert not any(t.exists() for t in targets)
    # Nor does anything of the call outlive it: the scratch folder starts empty again.
    failed, text = await run(pool, "import os; print(os.listdir('/work'))")
    assert text.splitlines()[-1] == "['main.py']"


async def test_no_network_not_even_to_localhost(pool: MCPPool) -> None:
    accepted: list[object] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    code = f"""
import socket
for target in [("127.0.0.1", {port}), ("8.8.8.8", 53)]:
    try:
        socket.create_connection(target, timeout=2).close()
        print(target, "CONNECTED")
    except OSError as exc:
        print(target, exc.__class__.__name__, exc.errno)
"""
    try:
        failed, text = await run(pool, code)
    finally:
        listener.close()
        await listener.wait_closed()
    assert not failed, text
    assert "CONNECTED" not in text
    assert accepted == []


async def test_a_fork_bomb_is_contained(pool: MCPPool) -> None:
    failed, text = await run(pool, "import os\nwhile True:\n    os.fork()")
    assert failed
    assert "BlockingIOError" in text or text.startswith("stopped")


async def test_an_infinite_loop_stops_at_the_cpu_limit(pool: MCPPool) -> None:
    failed, text = await run(pool, "while True: pass", server="py_cpu")
    assert failed
    assert text.startswith("stopped: used more than 1 s of CPU time")


async def test_sleeping_forever_stops_at_the_wall_clock(pool: MCPPool) -> None:
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(600)\ntime.sleep(600)"
    failed, text = await run(pool, code)  # run() checks no process outlived the call
    assert failed
    assert text.startswith("stopped: still running after 8 s")


async def test_a_child_left_behind_is_ended_with_the_call(pool: MCPPool) -> None:
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(600)\nprint('parent done')"
    failed, text = await run(pool, code)
    assert not failed and "parent done" in text


async def test_huge_output_is_cut(pool: MCPPool) -> None:
    failed, text = await run(pool, "while True: print('x' * 1000)")
    assert failed
    assert text.startswith("stopped: wrote more than 16 KiB of output")
    assert len(text) < 20 * 1024


async def test_huge_memory_is_refused(pool: MCPPool) -> None:
    failed, text = await run(pool, "block = bytearray(1024 ** 3)")
    assert failed
    assert "MemoryError" in text


@pytest.mark.skipif(python_sandbox.available() is not None, reason="no sandbox here")
async def test_a_burst_past_the_cap_on_both_pipes_still_ends_the_call() -> None:
    # 10 MB at once on stdout and on stderr: a reader that stopped at the cap left the
    # pipe paused, its EOF unseen, and Process.wait() waiting forever.
    code = "import os\nos.write(1, b'x' * 10_000_000)\nos.write(2, b'y' * 10_000_000)"
    for _ in range(5):
        async with asyncio.timeout(60):
            result = await python_sandbox.run(
                code, python_sandbox.SandboxLimits(output_bytes=16384)
            )
        assert result.ended == "output limit"
        assert len(result.stdout) <= 16384 and len(result.stderr) <= 16384


# --- the call's memory, and how many calls run at once (issue 24, item 1) -----------------


async def test_all_processes_of_a_call_together_stay_within_its_memory(pool: MCPPool) -> None:
    # Every process the call may fork fills its address space, all of them at once:
    # per-process limits alone let 16 such processes hold 16 times the limit.
    failed, text = await run(pool, sandbox_hogs.forked())
    assert not failed, text
    assert "processes 4" in text  # the hog did fork up to the limit
    assert sandbox_hogs.held_mib(text) <= MEMORY_MB, text


async def test_memory_outside_any_address_space_is_refused(pool: MCPPool) -> None:
    # Anonymous files, System V segments (kept after a detach) and a tmpfs in a user
    # namespace of the code's own: none is in any process's address space.
    failed, text = await run(pool, sandbox_hogs.outside())
    assert not failed, text
    assert sandbox_hogs.held_mib(text) == 0, text
    assert "memfd stopped: PermissionError 1" in text  # refused, not merely full


async def test_a_user_runs_one_call_at_a_time(pool: MCPPool) -> None:
    slow = "import time; time.sleep(3); print('ran')"
    both = await asyncio.gather(*(run(pool, slow, user="alice", alone=False) for _ in "ab"))
    texts = sorted(text for _, text in both)
    assert [failed for failed, _ in sorted(both, key=lambda r: r[1])] == [False, True], both
    assert texts[1].startswith("not run: this user already has 1 Python run"), texts
    # Another user is not held back by alice's call.
    two = await asyncio.gather(*(run(pool, slow, user=u, alone=False) for u in ("alice", "bob")))
    assert [failed for failed, _ in two] == [False, False], two
    assert not leftovers()


async def test_no_more_calls_run_at_once_than_the_total(pool: MCPPool) -> None:
    # Each call reports when its code started and ended (the host's clock): with room for
    # two, no moment is inside three of them; the third call waited for a free slot.
    code = "import time; print('span', time.time()); time.sleep(2); print('span', time.time())"
    results = await asyncio.gather(
        *(run(pool, code, server="py_two", user=f"user{n}", alone=False) for n in range(3))
    )
    assert not leftovers()
    spans = []
    for failed, text in results:
        assert not failed, text
        start, end = (float(line.split()[1]) for line in text.splitlines() if "span" in line)
        spans.append((start, end))
    for start, _ in spans:
        inside = sum(1 for s, e in spans if s <= start < e)
        assert inside <= 2, spans
