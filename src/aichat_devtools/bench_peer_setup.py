"""What every benchmark peer shares: how one is launched, the bare environment it runs
in, install steps that fail with a reason, and the end of its log."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_TIMEOUT_S = 1200.0
MODEL = "bench"


class PeerUnavailable(Exception):
    """The peer cannot be installed or started here; the message says why."""


@dataclass
class Launch:
    """How to start one peer and reach it."""

    arm: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    base_url: str  # OpenAI-compatible, ends in /v1
    ready_url: str
    api_key: str
    headers: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # what we set, for the report


def peer_env(home: Path, bin_dir: Path, **extra: str) -> dict[str, str]:
    """A bare environment: none of the caller's variables (tokens, keys, PYTHONPATH to our
    sources) reach third-party code; only a PATH, a HOME of its own and its settings."""
    env = {
        "PATH": os.pathsep.join([str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def run_step(args: list[str], what: str, env: Mapping[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            env={**os.environ, **(env or {})},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    if proc.returncode != 0:
        lines = [
            ln
            for ln in (proc.stderr or proc.stdout).splitlines()
            if ln.strip() and "WARNING" not in ln
        ]
        raise PeerUnavailable(f"{what} failed (exit {proc.returncode}): {' | '.join(lines[-2:])}")


def log_tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log (the work dir and its logs go when the run ends)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) or "(empty)"
