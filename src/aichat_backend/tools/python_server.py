"""Bundled MCP server: run Python code in a sandbox (``python_sandbox``), one fresh one per call.

Run by the pool over stdio (``python -m aichat_backend.tools.python_server``). The tool is
annotated destructive, so under the default ``auto`` policy every call waits for the
user's approval. Limits come from the entry's ``env``: ``AICHAT_PYTHON_SANDBOX_CPU_SECONDS``
(5), ``_WALL_SECONDS`` (10), ``_MEMORY_MB`` (1024: the call's, all its processes
together), ``_PROCESSES`` (8, threads included), ``_OUTPUT_KB`` (64, stdout and stderr
each), ``_SCRATCH_MB`` (16), ``_MAX_CALLS`` (calls running at once in all; 0 sizes it for
the machine) and ``_MAX_CALLS_PER_USER`` (1: a user's next call is refused while one runs).

Where the sandbox cannot be built (no user namespaces, say) the server refuses to start,
so the pool shows it FAILED instead of running code unconfined.
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from aichat_backend.limits.slots import Slots, SlotsBusy
from aichat_backend.tools import python_sandbox
from aichat_backend.tools.caller import caller_id
from aichat_backend.tools.python_sandbox import SandboxLimits, SandboxResult

SERVER_NAME = "aichat-python"


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AICHAT_PYTHON_SANDBOX_", extra="ignore")

    cpu_seconds: int = Field(
        default=5, gt=0, le=600, description="CPU seconds of one call, all its processes."
    )
    wall_seconds: float = Field(
        default=10.0, gt=0, le=1200, description="Wall clock of one call; past it all is killed."
    )
    memory_mb: int = Field(
        default=1024,
        ge=32,
        le=65_536,
        description="Memory of one call, all its processes together (split between them).",
    )
    processes: int = Field(
        default=8, gt=0, le=1024, description="Processes one call may run at once."
    )
    output_kb: int = Field(
        default=64, gt=0, le=10_240, description="Output kept from one call (the rest is cut)."
    )
    scratch_mb: int = Field(
        default=16, gt=0, le=4096, description="Size of the call's writable /work (a tmpfs)."
    )
    max_calls: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="Calls run at once by this server; 0: two per core, within a quarter "
        "of the machine's memory.",
    )
    max_calls_per_user: int = Field(
        default=1,
        gt=0,
        le=1024,
        description="Calls one user runs at once; past it the call is refused (busy).",
    )

    def calls_at_once(self) -> int:
        """``max_calls``, or what this machine holds: two per core, and calls that
        together use at most a quarter of its memory."""
        if self.max_calls:
            return self.max_calls
        per_call = (self.memory_mb + self.scratch_mb) * 1024 * 1024
        quarter = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
        return max(1, min(2 * (os.cpu_count() or 1), quarter // per_call))

    def limits(self) -> SandboxLimits:
        return SandboxLimits(
            cpu_seconds=self.cpu_seconds,
            wall_seconds=self.wall_seconds,
            memory_bytes=self.memory_mb * 1024 * 1024,
            processes=self.processes,
            output_bytes=self.output_kb * 1024,
            scratch_bytes=self.scratch_mb * 1024 * 1024,
        )


def describe(result: SandboxResult, limits: SandboxLimits) -> str:
    """The run as the model reads it: how it ended, then its output."""
    if result.ended == "exited":
        head = f"exit code {result.exit_code}"
    elif result.ended == "timed out":
        head = f"stopped: still running after {limits.wall_seconds:g} s"
    elif result.ended == "output limit":
        head = f"stopped: wrote more than {limits.output_bytes // 1024} KiB of output"
    elif result.ended == "killed by SIGXCPU":
        head = f"stopped: used more than {limits.cpu_seconds} s of CPU time"
    else:
        head = result.ended
    parts = [head]
    if result.stdout:
        parts += ["--- stdout ---", result.stdout.rstrip("\n")]
    if result.stderr:
        parts += ["--- stderr ---", result.stderr.rstrip("\n")]
    return "\n".join(parts)


def build_server(settings: SandboxSettings, *, log_level: str = "WARNING") -> MCPServer:
    limits = settings.limits()
    slots = Slots(settings.calls_at_once(), settings.max_calls_per_user)
    server: MCPServer = MCPServer(
        SERVER_NAME,
        instructions=(
            "run_python runs a Python 3 script (standard library only) in a fresh sandbox: "
            "no network, no files but its own /work, limited CPU time, memory and output."
        ),
        log_level=log_level,  # type: ignore[arg-type]
    )

    @server.tool(
        annotations=ToolAnnotations(
            title="Run Python code",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=False,
        )
    )
    async def run_python(code: str, ctx: Context) -> str:
        """Run a Python 3 script and get its exit code, stdout and stderr. Print what you
        want to see. Standard library only; no network; files only under /work, which
        is empty at the start of every call."""
        user = caller_id(ctx)
        try:
            # A user's next call is refused while one runs; others wait for room in all.
            async with slots.hold(user, wait=limits.wall_seconds, key_waits=False):
                result = await python_sandbox.run(code, limits)
        except SlotsBusy as busy:
            raise ToolError(_busy(busy)) from None
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        text = describe(result, limits)
        if result.exit_code != 0:
            raise ToolError(text)
        return text

    return server


def _busy(busy: SlotsBusy) -> str:
    if busy.scope == "key":
        return (
            f"not run: this user already has {busy.limit} Python run(s) going; "
            "wait for it to finish, then try again"
        )
    return f"not run: the sandbox is busy with {busy.limit} runs; try again shortly"


def main() -> int:
    why_not = python_sandbox.available()
    if why_not is not None:
        print(f"{SERVER_NAME}: {why_not}; refusing to run code unconfined", file=sys.stderr)
        return 2
    build_server(SandboxSettings()).run("stdio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
