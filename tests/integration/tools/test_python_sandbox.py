"""The bundled Python sandbox through the real pool: escape attempts that must be contained.

The test process plays the backend: it holds a secret in its environment and a file of
its own, runs a listener on 127.0.0.1, and is the parent of the MCP server whose calls
run the code (so ``/proc/<ppid>/environ`` of the server would be ours).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from aichat_backend.tools import python_sandbox
from aichat_backend.tools.pool import MCPPool
from aichat_backend.tools.python_sandbox import UID_BASE
from tests.integration.tools.support import call, make_pool, tool
from tests.support.dev_stack import descendants

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
    pytest.mark.skipif(python_sandbox.available() is not None, reason="sandbox needs root"),
]

SECRET = "sk-backend-secret-for-the-sandbox-test"
LIMITS = {
    "AICHAT_PYTHON_SANDBOX_CPU_SECONDS": "2",
    "AICHAT_PYTHON_SANDBOX_WALL_SECONDS": "8",
    "AICHAT_PYTHON_SANDBOX_OUTPUT_KB": "16",
    "AICHAT_PYTHON_SANDBOX_MEMORY_MB": "128",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[MCPPool]:
    os.environ["AICHAT_TEST_BACKEND_SECRET"] = SECRET  # what the backend would hold
    entry = {
        "command": sys.executable,
        "args": ["-m", "aichat_backend.tools.python_server"],
        "env": LIMITS,
    }
    # A CPU limit far inside the wall clock: on a loaded machine 2 CPU seconds may take
    # longer than 8 wall seconds, and this server is where the CPU limit is what stops.
    cpu_bound = {
        **entry,
        "env": {
            **LIMITS,
            "AICHAT_PYTHON_SANDBOX_CPU_SECONDS": "1",
            "AICHAT_PYTHON_SANDBOX_WALL_SECONDS": "120",
        },
    }
    pool = make_pool({"py": entry, "py_cpu": cpu_bound})
    await pool.start()
    try:
        assert await pool.wait_ready(20), pool.servers()
        yield pool
    finally:
        await pool.aclose()
        del os.environ["AICHAT_TEST_BACKEND_SECRET"]


def sandbox_processes() -> list[int]:
    """Processes of this test's calls still running under a sandbox uid (there must be none
    after a call).

    Every one of them descends from this process: a call's processes live in a PID namespace
    whose first process is unshare's child and dies with unshare (``--kill-child``), and
    unshare is a child of the MCP server this test started (or of this process). Sandbox
    processes elsewhere on the machine are other test runs' (another worker, another
    checkout's suite), busy with calls of their own.
    """
    found = []
    for pid in descendants(os.getpid()):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if uid >= UID_BASE:
            found.append(pid)
    return found


async def run(pool: MCPPool, code: str, server: str = "py") -> tuple[bool, str]:
    result = await call(pool, f"{server}__run_python", timeout=150, code=code)
    assert not sandbox_processes()
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
        assert not sandbox_processes()
