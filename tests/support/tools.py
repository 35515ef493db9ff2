"""Locating the real binaries the end-to-end tests drive (installed by `make install`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def binary(name: str) -> str:
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `make install`")
    return found


async def run(
    *argv: str,
    stdin: bytes | None = None,
    limit: float = 20,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=None if env is None else {**os.environ, **env},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
    return proc.returncode or 0, out.decode(), err.decode()


async def grpcurl(
    target: str, *args: str, data: Any = None, user: str | None = None
) -> tuple[int, str, str]:
    argv = [binary("grpcurl"), "-plaintext", "-max-time", "15"]
    if user is not None:
        argv += ["-H", f"x-user-id: {user}"]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    return await run(*argv, target, *args)
