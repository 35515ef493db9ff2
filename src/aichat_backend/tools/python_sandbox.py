"""Run untrusted Python in a throwaway sandbox: one fresh process tree per call.

What contains the code (see ``sandbox_init`` for how the inside is built):

- new user, mount, PID, network, IPC and UTS namespaces: no network at all, no view of
  any process outside, mounts private to the call, and no namespace of its own below;
- a chroot of read-only system and Python directories plus a tmpfs ``/work`` (the only
  writable place, ``scratch_bytes`` big, gone with the call): no file of the backend's;
- no capability, ``no_new_privs``, an empty environment, and for a root server a user id
  of its own; a seccomp filter (``sandbox_seccomp``) refusing memory that no limit sees
  (anonymous files, shared memory, message queues) and new namespaces;
- resource limits: CPU seconds, processes, address space, file size, open files, no core.
  The call's memory is bounded as a whole: ``memory_bytes`` is split between its
  ``processes`` (each may map ``memory_bytes // processes``), so all of them together
  hold at most ``memory_bytes`` (plus ``scratch_bytes`` of files and the two small
  supervising processes). A cgroup would count pages instead of address space, but this
  host offers no writable cgroup v2 memory controller, and the sum needs none;
- a wall-clock timeout and an output cap enforced from here: past either, the namespace's
  first process is killed and with it every process in the namespace.

It needs no privilege: as root or as an ordinary user (through a user namespace, which
the kernel must allow) it runs the same way. ``available()`` says why not where it can't.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aichat_backend.tools import sandbox_seccomp

INIT = Path(__file__).with_name("sandbox_init.py")
# A uid range no account uses, so each call's processes are alone under theirs.
UID_BASE, UID_SPAN = 1_900_000_000, 100_000_000
MAX_CODE_BYTES = 100_000
PIPE_DRAIN_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_bytes: int = 1024 * 1024 * 1024  # the call's, all its processes together
    processes: int = 8  # threads count too
    output_bytes: int = 64 * 1024  # stdout and stderr each
    scratch_bytes: int = 16 * 1024 * 1024
    open_files: int = 64

    @property
    def process_memory_bytes(self) -> int:
        """What each process may map: the budget's share, so the shares sum to it."""
        return self.memory_bytes // self.processes


@dataclass(frozen=True, slots=True)
class SandboxResult:
    stdout: str
    stderr: str
    exit_code: int | None  # None: killed by a signal or by us
    ended: str  # "exited", "timed out", "output limit", "killed by SIGKILL", ...


def available() -> str | None:
    """None when the sandbox can run here, else why not (checked once, by running one)."""
    return _probe()


@functools.cache
def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the Python sandbox needs Linux namespaces"
    if not sandbox_seccomp.supported():
        return f"the Python sandbox has no system call filter for {sandbox_seccomp.machine()}"
    command, config = _command(SandboxLimits(), tempfile.mkdtemp(prefix="aichat-probe-"))
    try:
        done = subprocess.run(command, input=b"pass", capture_output=True, env={}, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the Python sandbox could not start ({type(exc).__name__})"
    finally:
        shutil.rmtree(str(config["root"]), ignore_errors=True)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {done.returncode}"
        return "the Python sandbox cannot be built here (user namespaces refused?): " + why[:300]
    return None


def _interpreter() -> tuple[str, list[str]]:
    """The bare interpreter (not a venv's) and the directories it needs to run."""
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    prefix = os.path.realpath(sys.base_prefix)
    system = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
    return python, [*system, *([] if prefix.startswith("/usr/") else [prefix])]


def _command(limits: SandboxLimits, root: str) -> tuple[list[str], dict[str, Any]]:
    python, read_only = _interpreter()
    config: dict[str, Any] = {
        "root": root,
        "python": python,
        "read_only": read_only,
        "scratch_bytes": limits.scratch_bytes,
        "max_code_bytes": MAX_CODE_BYTES,
        "seccomp": sandbox_seccomp.program().hex(),
        "limits": {
            "RLIMIT_CPU": limits.cpu_seconds,
            "RLIMIT_AS": limits.process_memory_bytes,
            "RLIMIT_NPROC": limits.processes,
            "RLIMIT_FSIZE": limits.scratch_bytes,
            "RLIMIT_NOFILE": limits.open_files,
            "RLIMIT_CORE": 0,
            "RLIMIT_MEMLOCK": 0,
            "RLIMIT_MSGQUEUE": 0,
        },
    }
    if os.geteuid() == 0:
        # Root outside: the code runs as a uid of its own (unprivileged, as itself).
        config["uid"] = UID_BASE + secrets.randbelow(UID_SPAN)
    return [python, "-I", "-S", "-B", str(INIT), json.dumps(config)], config


async def run(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    limits = limits or SandboxLimits()
    why_not = available()
    if why_not is not None:
        raise RuntimeError(why_not)
    encoded = code.encode()
    if len(encoded) > MAX_CODE_BYTES:
        raise ValueError(f"the code is longer than {MAX_CODE_BYTES} bytes")
    root = tempfile.mkdtemp(prefix="aichat-sandbox-")
    command, _ = _command(limits, root)
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},
            cwd=root,
            start_new_session=True,
        )
        return await _supervise(process, encoded, limits)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # empty: its mounts lived in the namespace


async def _supervise(
    process: asyncio.subprocess.Process, code: bytes, limits: SandboxLimits
) -> SandboxResult:
    assert process.stdin and process.stdout and process.stderr
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.wall_seconds
    over_limit = asyncio.Event()
    out, err = bytearray(), bytearray()

    async def read(stream: asyncio.StreamReader, into: bytearray) -> None:
        # Read to the end even past the cap (discarding): a paused pipe never reports its
        # EOF, and asyncio's Process.wait() waits for that as well as for the exit.
        while chunk := await stream.read(65536):
            room = max(0, limits.output_bytes - len(into))
            into += chunk[:room]
            if len(chunk) > room:
                over_limit.set()

    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(code)
        await process.stdin.drain()
        process.stdin.close()
    reading = asyncio.gather(read(process.stdout, out), read(process.stderr, err))
    limit_hit = asyncio.ensure_future(over_limit.wait())
    ended = "exited"
    try:
        waiters: set[asyncio.Future[Any]] = {reading, limit_hit}
        done, _ = await asyncio.wait(
            waiters, timeout=limits.wall_seconds, return_when="FIRST_COMPLETED"
        )
        if limit_hit in done:
            ended = "output limit"
        elif reading not in done:
            ended = "timed out"
        else:  # both pipes closed; the code may still run without them
            try:
                await asyncio.wait_for(process.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                ended = "timed out"
    finally:
        limit_hit.cancel()
        if process.returncode is None:
            _kill(process)
        # Every writer is dead now (the namespace went with its pid 1): the pipes end.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reading, PIPE_DRAIN_SECONDS)
        await process.wait()
    status = process.returncode
    exit_code = status if status is not None and 0 <= status < 128 else None
    if ended == "exited" and exit_code is None and status is not None:
        number = -status if status < 0 else status - 128
        with contextlib.suppress(ValueError):
            ended = f"killed by {signal.Signals(number).name}"
    return SandboxResult(
        out.decode(errors="replace"), err.decode(errors="replace"), exit_code, ended
    )


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the namespace's first process (so the kernel ends all of it), then its handle."""
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
        for pid in children.split():
            os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
