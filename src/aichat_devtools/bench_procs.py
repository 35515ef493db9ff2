"""Processes of a benchmark run: start them pinned, read their CPU and memory from /proc.

Nothing here needs psutil: ``/proc/<pid>/stat`` gives CPU ticks (all threads, live and
ended), ``/proc/<pid>/status`` gives VmRSS, ``/proc/stat`` gives per-core busy time, so a
run can say how busy every core was and how much of that was not ours (other work on a
shared machine).
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
REPO = Path(__file__).resolve().parents[2]


# Every core this process may use, read before the load generator pins itself: children
# that are pinned only later (services, once started) must not inherit its one core.
ALL_CORES: frozenset[int] = (
    frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cores() -> int:
    return os.cpu_count() or 1


def core_plan() -> tuple[int | None, int | None]:
    """(service core, load core): the backend alone on one, upstream + load generator on
    the other. None when the machine has a single core (then nothing is pinned)."""
    if cores() < 2 or not hasattr(os, "sched_setaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def pin_self(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


def pin_process(pid: int, core: int | None) -> None:
    """Pin every thread of ``pid`` (threads made later inherit it from their creator)."""
    if core is None:
        return
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), {core})


# --- /proc readers -----------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of every thread of ``pid`` (ended threads included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of the live threads of ``pid`` (schedstat: exact, no ticks)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{pid}/task/{tid}/schedstat") as f,
        ):
            total += int(f.read().split()[0])
    return total


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon (KiB) and Threads of ``pid``."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def core_busy_seconds() -> list[float]:
    """Busy (not idle, not iowait) seconds of each core since boot."""
    out: list[float] = []
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    ticks = [int(x) for x in line.split()[1:]]
                    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
                    out.append((sum(ticks[:8]) - idle) / CLK_TCK)
    except OSError:
        pass
    return out


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    versions: dict[str, str] = {}
    for dist in ("grpcio", "openai", "protobuf", "SQLAlchemy", "asyncpg"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    return {
        "cpu_model": model or platform.processor(),
        "cores": cores(),
        "memory_mib": mem_kib // 1024,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "libraries": versions,
        "commit": commit,
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


# --- child processes ---------------------------------------------------------------------


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


# --- sampling ----------------------------------------------------------------------------


@dataclass
class Snapshot:
    wall: float
    cpu: dict[str, float]  # process name -> CPU seconds
    cores: list[float]


class Sampler:
    """CPU of named processes (and this one, the load generator) between two points."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.extra_pids: dict[str, list[int]] = {}  # e.g. PostgreSQL backends of our DB

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def watch_group(self, name: str, pids: list[int]) -> None:
        self.extra_pids[name] = pids

    def snap(self) -> Snapshot:
        cpu: dict[str, float] = {"loadgen": self_cpu_seconds()}
        for name, pid in self.pids.items():
            value = proc_cpu_seconds(pid)
            if value is not None:
                cpu[name] = value
        for name, pids in self.extra_pids.items():
            cpu[name] = sum(proc_cpu_seconds(p) or 0.0 for p in pids)
        return Snapshot(time.monotonic(), cpu, core_busy_seconds())


@dataclass
class Usage:
    wall: float
    cpu: dict[str, float]  # seconds per process over the interval
    cores: list[float]  # busy fraction of each core
    foreign: float  # busy core-seconds per second that none of our processes used

    def fraction(self, name: str) -> float:
        return self.cpu.get(name, 0.0) / self.wall if self.wall > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall, 3),
            "cpu_s": {k: round(v, 3) for k, v in self.cpu.items()},
            "cpu_fraction": {k: round(self.fraction(k), 3) for k in self.cpu},
            "core_busy": [round(c, 3) for c in self.cores],
            "foreign_cores": round(self.foreign, 3),
        }


def usage_between(a: Snapshot, b: Snapshot) -> Usage:
    wall = b.wall - a.wall
    cpu = {k: max(0.0, b.cpu[k] - a.cpu.get(k, b.cpu[k])) for k in b.cpu}
    core_fracs = [
        (cb - ca) / wall if wall > 0 else 0.0 for ca, cb in zip(a.cores, b.cores, strict=False)
    ]
    ours = sum(cpu.values()) / wall if wall > 0 else 0.0
    return Usage(wall, cpu, core_fracs, max(0.0, sum(core_fracs) - ours))
