"""Starting a benchmark run's child processes (pinned with taskset) and stopping them.

Each child's stderr goes to a log file and its stdout lines are collected in the
background, so a caller can wait for a "listening on" line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aichat_devtools.bench_procs import ALL_CORES, REPO


@dataclass
class Child:
    """A process the benchmark started; stdout lines are collected in the background."""

    name: str
    proc: subprocess.Popen[str]
    core: int | None
    log_path: Path
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if not self.alive():
                break
            time.sleep(0.02)
        raise RuntimeError(
            f"{self.name} did not print {prefix!r} (rc={self.proc.poll()}); see {self.log_path}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(2)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without AICHAT_*, with src/ and gen/ importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHAT_")}
    paths = [str(REPO / "src"), str(REPO / "gen")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def spawn(
    name: str,
    args: Sequence[str],
    *,
    core: int | None,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    bare_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start ``args`` pinned to ``core``; stderr goes to ``log_dir/name.log``.

    ``bare_env`` is the whole environment instead of ours (for third-party peers)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log: IO[str] = open(log_path, "w")  # noqa: SIM115 - owned by the child's lifetime
    cmd = list(args)
    cpus = str(core) if core is not None else ",".join(str(c) for c in sorted(ALL_CORES))
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=dict(bare_env) if bare_env is not None else child_env(env or {}),
        cwd=str(cwd or REPO),
        start_new_session=True,  # our Ctrl-C is not theirs; we stop them ourselves
    )
    log.close()
    child = Child(name=name, proc=proc, core=core, log_path=log_path)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            child.lines.append(line.rstrip("\n"))

    child._reader = threading.Thread(target=read, name=f"{name}-stdout", daemon=True)
    child._reader.start()
    return child


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
