"""Processes of a benchmark run: pin them to cores, read their CPU and memory from /proc.

Starting them is ``bench_spawn``.

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
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
