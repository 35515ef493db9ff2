"""Run the real ``aichat-backend`` console script as a child process and watch its stderr.

Readiness is an event, not a guess: the server logs ``serving`` (with the port it bound)
once it accepts RPCs, and ``wait_for_log`` wakes up on that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "aichat-backend"


def command() -> list[str]:
    """The installed console script if there is one, else ``python -m aichat_backend``."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT)]
    return [sys.executable, "-m", "aichat_backend"]


def child_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """A clean environment: none of the caller's AICHAT_* leaks into the child."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHAT_")}
    paths = [str(REPO / "src"), str(REPO / "gen")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["AICHAT_GRPC_ADDRESS"] = "127.0.0.1:0"  # the kernel picks; the log tells us
    env["AICHAT_DATA_DIR"] = str(data_dir)
    env["AICHAT_MODEL_CHECK"] = "false"  # tests count what their fake upstreams see
    env["AICHAT_MCP_STDIO_USER"] = "same"  # see make_settings: the switch has tests of its own
    env.update({f"AICHAT_{k.upper()}": v for k, v in settings.items()})
    return env


class ServeProcess:
    """One child process; its stderr lines are kept and can be awaited."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr_lines: list[str] = []
        self._changed = asyncio.Condition()
        self._eof = False
        self._reader = asyncio.create_task(self._read_stderr())

    @classmethod
    async def start(
        cls, *args: str, env: Mapping[str, str], cwd: Path | None = None
    ) -> ServeProcess:
        proc = await asyncio.create_subprocess_exec(
            *command(),
            *args,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        try:
            while line := await self.proc.stderr.readline():
                async with self._changed:
                    self.stderr_lines.append(line.decode(errors="replace").rstrip("\n"))
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._eof = True
                self._changed.notify_all()

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def json_logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.stderr_lines:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    async def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """The first JSON log entry matching ``predicate``; fails if the process ends first."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.json_logs() if predicate(e)), None)

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: found() is not None or self._eof), timeout
                )
            except TimeoutError:
                raise AssertionError(
                    f"no matching log line within {timeout}s; stderr so far:\n{self.stderr}"
                ) from None
            entry = found()
        if entry is None:
            raise AssertionError(f"process ended (rc={self.proc.returncode}):\n{self.stderr}")
        return entry

    async def wait_serving(self, timeout: float = 20.0) -> int:
        """Wait for the ``serving`` line; return the port the server bound."""
        entry = await self.wait_for_log(lambda e: e.get("msg") == "serving", timeout)
        return int(entry["port"])

    async def wait_exit(self, timeout: float) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(self._reader, 5)
        return rc

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def ensure_dead(self) -> None:
        """Teardown: kill the child if a failed test left it running."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


async def run_to_exit(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 30
) -> tuple[int, str, str]:
    """Run a command that is expected to end by itself: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *command(),
        *args,
        env=dict(env),
        cwd=str(cwd) if cwd else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
