"""The state one benchmark run shares between its phases, and the tools that measure them.

``Run`` holds the arms, the child processes, the CPU sampler, the random source and what
the phases found (``data``, ``flags``, ``phases``); the phase modules (``bench_start``,
``bench_turns``, ``bench_hold``, ``bench_unary``) and ``bench_result`` take it as their
one argument and use only its public attributes and methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aichat_devtools import bench_peer
from aichat_devtools import bench_procs as procs
from aichat_devtools import bench_spawn as spawning
from aichat_devtools.bench_clients import Arm, StreamResult, UnaryResult
from aichat_devtools.bench_grpc_arm import GrpcArm
from aichat_devtools.bench_profiles import LOAD_CORE_LIMIT, NOISE_LIMIT, Profile
from aichat_devtools.bench_report import ms, pct


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Measured:
    """CPU of every process over one phase, and whether the phase can be trusted."""

    phase: str
    arm: str
    usage: procs.Usage | None = None
    lag_ms_p99: float | None = None
    saturated: bool = False
    noisy: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase, "arm": self.arm}
        if self.usage is not None:
            out.update(self.usage.as_dict())
        out.update(loadgen_lag_ms_p99=self.lag_ms_p99, saturated=self.saturated, noisy=self.noisy)
        return out


@dataclass
class ArmSetup:
    arm: Arm
    service: tuple[str, ...]  # sampler names of the processes doing this arm's work
    rss_process: str | None = None


@dataclass
class Run:
    profile: Profile
    out: Path
    seed: int
    arms_wanted: tuple[str, ...]
    pg_admin: str
    keep: bool
    backend_wrapper: str = ""
    peers: tuple[str, ...] = ()
    peers_dir: Path = bench_peer.PEERS_DIR
    rng: random.Random = field(init=False)
    flags: list[str] = field(default_factory=list)
    phases: list[Measured] = field(default_factory=list)
    arms: dict[str, ArmSetup] = field(default_factory=dict)
    children: dict[str, spawning.Child] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.sampler = procs.Sampler()
        self.service_core, self.load_core = procs.core_plan()
        self.workdir = Path(tempfile.mkdtemp(prefix="aichat-bench-"))
        self.pg_databases: list[str] = []
        self.pg_conn: Any = None
        self.upstream_url = ""
        self.record_file = self.workdir / "upstream-arrivals.txt"
        # The DB-probe backends (kind -> arm, statement log), filled by ``bench_start``.
        self.probes: dict[str, tuple[GrpcArm, Path]] = {}

    # --- processes ------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], core: int | None, **env: str) -> spawning.Child:
        """Start a process; service processes start on any core (start-up is CPU-heavy
        and would queue on one core) and are pinned by ``pin_services`` once ready."""
        pin_now = core if core == self.load_core else None
        child = spawning.spawn(name, args, core=pin_now, log_dir=self.workdir / "logs", env=env)
        child.core = core
        self.children[name] = child
        self.sampler.watch(name, child.pid)
        return child

    @property
    def peer_arms(self) -> list[str]:
        return [name for name, s in self.arms.items() if s.arm.kind == "peer"]

    @property
    def side_by_side(self) -> list[str]:
        """The arms every phase measures beside the profile's own: our OpenAI-compatible
        API (arm O) and the peers, which speak the same protocol to the same client."""
        return [name for name, s in self.arms.items() if s.arm.kind in ("door", "peer")]

    def pin_services(self) -> None:
        for child in self.children.values():
            procs.pin_process(child.pid, child.core)

    async def pg_pids(self, database: str) -> list[int]:
        rows = await self.pg_conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", database
        )
        return [int(r["pid"]) for r in rows]

    # --- measuring ------------------------------------------------------------------

    @asynccontextmanager
    async def measure(self, phase: str, arm: str) -> AsyncIterator[Measured]:
        m = Measured(phase, arm)
        if self.pg_conn is not None and "B-postgres" in self.arms:
            db = self.pg_databases[0]
            self.sampler.watch_group("postgres", await self.pg_pids(db))
        lags: list[float] = []
        monitor = asyncio.create_task(_lag_monitor(lags))
        before = self.sampler.snap()
        try:
            yield m
        finally:
            after = self.sampler.snap()
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
            m.usage = procs.usage_between(before, after)
            m.lag_ms_p99 = ms(pct(lags, 99), 2)
            load = m.usage.fraction("loadgen") + m.usage.fraction("upstream")
            if self.load_core is not None and load > LOAD_CORE_LIMIT:
                m.saturated = True
                self.flags.append(
                    f"{phase}/{arm}: load core {load:.0%} busy (loadgen "
                    f"{m.usage.fraction('loadgen'):.0%}, upstream "
                    f"{m.usage.fraction('upstream'):.0%}): rejected"
                )
            if m.usage.foreign > NOISE_LIMIT and m.usage.wall > 0.5:
                m.noisy = True
                self.flags.append(
                    f"{phase}/{arm}: {m.usage.foreign:.2f} cores of CPU not ours (shared "
                    "machine noise)"
                )
            self.phases.append(m)

    def service_cpu(self, m: Measured, arm: str) -> float:
        assert m.usage is not None
        return sum(m.usage.cpu.get(name, 0.0) for name in self.arms[arm].service)

    async def open_loop(
        self,
        start: Callable[[], Awaitable[Any]],
        rate: float,
        duration: float = math.inf,
        count: int | None = None,
    ) -> tuple[list[asyncio.Task[Any]], list[float]]:
        """Poisson arrivals at ``rate``/s for ``duration`` s or ``count`` arrivals."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        end = t0 + duration
        tasks: list[asyncio.Task[Any]] = []
        late: list[float] = []
        nxt = t0 + self.rng.expovariate(rate)
        while nxt < end and (count is None or len(tasks) < count):
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            late.append(max(0.0, loop.time() - nxt))
            tasks.append(asyncio.ensure_future(start()))
            nxt += self.rng.expovariate(rate)
        return tasks, late

    async def finish(
        self,
        tasks: list[asyncio.Task[Any]],
        timeout: float,
        where: str,
        unfinished: Callable[[], StreamResult | UnaryResult],
    ) -> list[Any]:
        """Every task's result within ``timeout``; the ones still running then are cut and
        counted as errors (``BENCH_TIMEOUT``), so one arm that hangs ends no run."""
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            self.flags.append(
                f"{where}: {len(pending)} requests unfinished after {timeout:.0f} s: cut"
            )
            log(f"{where}: {len(pending)} requests unfinished after {timeout:.0f} s: cut")
        out: list[Any] = []
        for task in tasks:
            if task in pending or task.cancelled() or task.exception() is not None:
                res = unfinished()
                res.error = "BENCH_TIMEOUT" if task in pending else "BENCH_ERROR"
                out.append(res)
            else:
                out.append(task.result())
        return out

    # --- phases ---------------------------------------------------------------------

    def order(self, names: Sequence[str]) -> list[str]:
        names = list(names)
        self.rng.shuffle(names)
        return names

    async def refill(self) -> None:
        """Fresh sessions in place of those whose turns failed or were cut off."""
        for name, setup in self.arms.items():
            if isinstance(setup.arm, GrpcArm):
                before = dict(setup.arm.create_failures)
                made = await setup.arm.top_up()
                if made:
                    log(f"{name}: {made} sessions replaced (their turns failed or were cut)")
                if setup.arm.create_failures != before:
                    self.flags.append(
                        f"{name}: CreateSession failed while refilling (retried): "
                        f"{setup.arm.create_failures} — the service was still busy storing "
                        "the ends of the previous phase's cut-off turns"
                    )

    async def settle(self, names: Sequence[str], limit: float = 15.0) -> float:
        """Wait until the given processes are idle again (deferred writes done); returns
        how long that took (``limit`` when they never were)."""
        start = time.monotonic()
        deadline = start + limit
        prev = self.sampler.snap()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            now = self.sampler.snap()
            busy = sum(now.cpu.get(n, 0) - prev.cpu.get(n, 0) for n in names)
            prev = now
            if busy < 0.02:
                break
        return time.monotonic() - start

    def start_rate(self, name: str, share: float, cap: float) -> float:
        """Turn starts per second at ``share`` of what the arm's service can start (from
        its measured CPU per turn): a ramp that tests holding streams, not a burst."""
        per_turn = (self.data.get("idle_ttft", {}).get(name) or {}).get(
            "service_cpu_us_per_turn"
        ) or 5000.0
        return float(min(cap, max(5.0, share * 1e6 / per_turn)))


def streamer(
    arm: Arm, text: str, on_first: Callable[[], None] | None = None
) -> Callable[[], Awaitable[StreamResult]]:
    return lambda: arm.stream(text, on_first=on_first)


async def _lag_monitor(samples: list[float], every: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(every)
        samples.append(max(0.0, loop.time() - t - every))
