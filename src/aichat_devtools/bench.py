"""What the service adds to the provider, measured side by side in one run.

    python -m aichat_devtools.bench --quick     # make bench-quick, < 3 minutes
    python -m aichat_devtools.bench --full      # make bench
    python -m aichat_devtools.bench --toy       # the test suite's smoke run, < 30 s

Arms, all against one fake upstream (``bench_upstream``, its own process, TCP_NODELAY):

- A  the openai SDK straight to the upstream (the reference);
- F  a bare grpc.aio relay with no project code (``bench_relay``): the floor;
- B  the backend (``python -m aichat_backend serve``) over gRPC, persistence on, once on
     SQLite (``B-sqlite``, the headline arm: database work on the backend's own core) and
     once on PostgreSQL (``B-postgres``, a throwaway database);
- C  REST/SSE through Envoy to B-sqlite, when ``envoy.yaml`` and its renderer exist;
- P-<peer>  with ``--peer litellm``: the proxy a user would pick instead, installed in its
     own environment and run with its production settings (``bench_peer``); its figures
     beside ours, and ours/peer ratios, are in the report's ``peers`` (``bench_compare``).

The backend, the relay and Envoy are pinned to one core, the upstream and this process
(the load generator) to the other. Every phase records each process's CPU from /proc;
a phase where the load core saturates is flagged and its numbers are not trusted.
Arrivals are open-loop Poisson; arms take turns within each round.

Results: ``var/bench/latest.json`` (``--out``) and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import math
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aichat_devtools import bench_peer
from aichat_devtools import bench_procs as procs
from aichat_devtools.bench_clients import (
    Arm,
    DirectArm,
    EnvoyArm,
    GrpcArm,
    StreamResult,
    UnaryResult,
)
from aichat_devtools.bench_compare import compare
from aichat_devtools.bench_dbreport import analyse_db, pg_per_turn
from aichat_devtools.bench_held import held_cpu, held_row, max_gap
from aichat_devtools.bench_held import stalled as count_stalled
from aichat_devtools.bench_profiles import (
    BENCH_LIMITS,
    DEFAULT_PG_ADMIN,
    HEADLINE,
    LOAD_CORE_LIMIT,
    NOISE_LIMIT,
    PACE_KEPT,
    PACE_MS,
    PEER_LOW_LEVELS,
    PEER_SETTLE_S,
    PROFILES,
    STALL_S,
    TARGETS,
    UNARY_EXTRA_STEPS,
    UNARY_P99_S,
    Profile,
)
from aichat_devtools.bench_report import (
    diff,
    gap_summary,
    ms,
    pct,
    ratio,
    rnd,
    ttft_summary,
    unary_summary,
)
from aichat_devtools.bench_table import print_table
from aichat_devtools.bench_upstream import scenario_text


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
    children: dict[str, procs.Child] = field(default_factory=dict)
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

    # --- processes ------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], core: int | None, **env: str) -> procs.Child:
        """Start a process; service processes start on any core (start-up is CPU-heavy
        and would queue on one core) and are pinned by ``pin_services`` once ready."""
        pin_now = core if core == self.load_core else None
        child = procs.spawn(name, args, core=pin_now, log_dir=self.workdir / "logs", env=env)
        child.core = core
        self.children[name] = child
        self.sampler.watch(name, child.pid)
        return child

    def spawn_peer(self, launch: bench_peer.Launch) -> procs.Child:
        """A peer in a bare environment of its own, pinned with the services once up."""
        child = procs.spawn(
            launch.arm,
            launch.args,
            core=None,
            log_dir=self.workdir / "logs",
            bare_env=launch.env,
            cwd=launch.cwd,
        )
        child.core = self.service_core
        self.children[launch.arm] = child
        self.sampler.watch(launch.arm, child.pid)
        return child

    async def start_peers(self) -> None:
        async def one(peer: str) -> None:
            name = bench_peer.arm_name(peer)
            try:
                arm, launch = await bench_peer.start_peer(
                    peer,
                    self.peers_dir,
                    self.workdir,
                    self.upstream_url + "/v1",
                    procs.free_port(),
                    self.spawn_peer,
                )
            except bench_peer.PeerUnavailable as exc:
                self.skipped[name] = f"not run: {exc}"
                log(f"{name}: not run, the run goes on without it: {exc}")
                child = self.children.pop(name, None)
                if child is not None:
                    await asyncio.to_thread(child.stop)
                    self.sampler.pids.pop(name, None)
                return
            self.arms[name] = ArmSetup(arm, (name,), name)
            self.data.setdefault("peer_settings", {})[name] = launch.settings

        await asyncio.gather(*(one(p) for p in self.peers))

    @property
    def peer_arms(self) -> list[str]:
        return [name for name, s in self.arms.items() if s.arm.kind == "peer"]

    def pin_services(self) -> None:
        for child in self.children.values():
            procs.pin_process(child.pid, child.core)

    def backend_env(self, port: int, database_url: str, replica: str) -> dict[str, str]:
        return {
            "AICHAT_GRPC_ADDRESS": f"127.0.0.1:{port}",
            "AICHAT_DATABASE_URL": database_url,
            "AICHAT_DATA_DIR": str(self.workdir / replica),
            "AICHAT_LLM_PROVIDER": "openai",
            "AICHAT_LLM_BASE_URL": self.upstream_url + "/v1",
            "AICHAT_API_KEY": "bench",
            "AICHAT_LLM_MODEL": "bench",
            "AICHAT_LOG_LEVEL": "warning",
            "AICHAT_REPLICA_ID": replica,
            "AICHAT_SHUTDOWN_GRACE_SECONDS": "2",
            # The start-up check would add one upstream call to what the bench measures.
            "AICHAT_MODEL_CHECK": "false",
            # Per-user limits that never refuse a benchmark turn; the limiter still runs.
            **BENCH_LIMITS,
        }

    async def pg_admin_connect(self) -> bool:
        try:
            import asyncpg  # type: ignore[import-untyped]

            self.pg_conn = await asyncpg.connect(self.pg_admin, timeout=5)
            return True
        except Exception as exc:
            self.skipped["B-postgres"] = f"PostgreSQL unreachable: {type(exc).__name__}: {exc}"
            return False

    async def pg_create(self) -> str:
        name = f"aichat_bench_{uuid.uuid4().hex[:10]}"
        await self.pg_conn.execute(f'CREATE DATABASE "{name}"')
        self.pg_databases.append(name)
        host = self.pg_admin.split("://", 1)[1].rsplit("/", 1)[0]
        return f"postgresql+asyncpg://{host}/{name}"

    async def pg_pids(self, database: str) -> list[int]:
        rows = await self.pg_conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", database
        )
        return [int(r["pid"]) for r in rows]

    async def pg_stats(self, database: str) -> dict[str, float]:
        await self.pg_conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await self.pg_conn.fetchrow(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted,"
            " tup_updated, tup_deleted, blks_hit, blks_read, active_time, session_time"
            " FROM pg_stat_database WHERE datname = $1",
            database,
        )
        return {k: float(v or 0) for k, v in dict(row or {}).items()}

    async def start(self) -> None:
        p = self.profile
        procs.pin_self(self.load_core)
        if self.service_core is None:
            self.flags.append("single core (or no affinity control): nothing is pinned")
        want = set(self.arms_wanted)
        up = self.spawn(
            "upstream",
            procs.python_module(
                "aichat_devtools.bench_upstream",
                "--port",
                "0",
                "--record-file",
                str(self.record_file),
            ),
            self.load_core,
        )
        line = await asyncio.to_thread(up.wait_line, "listening on ", 20)
        self.upstream_url = line.split("listening on ", 1)[1].strip()

        pg_url = probe_pg_url = ""
        if want & {"B-postgres"} and await self.pg_admin_connect():
            pg_url = await self.pg_create()
            probe_pg_url = await self.pg_create() if p.name != "toy" else ""
        ports: dict[str, int] = {}
        starts: list[tuple[str, GrpcArm]] = []

        def backend(name: str, url: str, module: str, replica: str, **extra: str) -> GrpcArm:
            port = procs.free_port()
            ports[name] = port
            env = self.backend_env(port, url, replica)
            env.update(extra)
            args = procs.python_module(module, "serve", "--env-only")
            if module == "aichat_backend" and self.backend_wrapper:
                # Try a change without editing the service: a script that patches, then
                # runs the CLI (``sys.argv[1:]`` is ``serve --env-only``).
                args = [sys.executable, self.backend_wrapper, "serve", "--env-only"]
            self.spawn(replica, args, self.service_core, **env)
            arm = GrpcArm(name, f"127.0.0.1:{port}", "backend")
            starts.append((name, arm))
            return arm

        sqlite_url = f"sqlite:///{self.workdir / 'b-sqlite' / 'aichat.db'}"
        if "A" in want:
            self.arms["A"] = ArmSetup(DirectArm("A", self.upstream_url + "/v1"), ())
        if "F" in want:
            port = procs.free_port()
            self.spawn(
                "relay",
                procs.python_module(
                    "aichat_devtools.bench_relay",
                    "--port",
                    str(port),
                    "--upstream",
                    self.upstream_url + "/v1",
                ),
                self.service_core,
            )
            relay = GrpcArm("F", f"127.0.0.1:{port}", "relay")
            starts.append(("F", relay))
            self.arms["F"] = ArmSetup(relay, ("relay",), "relay")
        if want & {"B-sqlite", "C"}:
            arm = backend("B-sqlite", sqlite_url, "aichat_backend", "backend-sqlite")
            self.arms["B-sqlite"] = ArmSetup(arm, ("backend-sqlite",), "backend-sqlite")
        if pg_url:
            arm = backend("B-postgres", pg_url, "aichat_backend", "backend-postgres")
            self.arms["B-postgres"] = ArmSetup(
                arm, ("backend-postgres", "postgres"), "backend-postgres"
            )
        probe_out = self.workdir / "dbprobe"
        probe_out.mkdir(exist_ok=True)
        self.probes: dict[str, tuple[GrpcArm, Path]] = {}
        if "B-sqlite" in want and p.db_turns:
            path = probe_out / "sqlite.jsonl"
            probe_url = f"sqlite:///{self.workdir / 'probe-sqlite' / 'aichat.db'}"
            arm = backend(
                "probe-sqlite",
                probe_url,
                "aichat_devtools.bench_dbprobe",
                "probe-sqlite",
                BENCH_DBPROBE_OUT=str(path),
            )
            self.probes["sqlite"] = (arm, path)
        if probe_pg_url and p.name != "toy":
            path = probe_out / "postgres.jsonl"
            arm = backend(
                "probe-postgres",
                probe_pg_url,
                "aichat_devtools.bench_dbprobe",
                "probe-postgres",
                BENCH_DBPROBE_OUT=str(path),
            )
            self.probes["postgres"] = (arm, path)
        log("upstream up; waiting for the services")
        await asyncio.gather(*(arm.wait_ready(60) for _, arm in starts), self.start_peers())
        self.pin_services()
        log("services up")
        if "C" in want:
            await self.start_envoy(ports.get("B-sqlite"))
        elif "C" not in self.skipped:
            self.skipped["C"] = "not requested"
        log(
            f"processes up: {', '.join(self.children)}; arms: {', '.join(self.arms)}"
            + (f"; skipped: {self.skipped}" if self.skipped else "")
        )
        sessions = max(p.rss_streams, max(p.hold_levels), 64) + 16
        await asyncio.gather(
            *(
                s.arm.make_sessions(sessions)
                for s in self.arms.values()
                if isinstance(s.arm, GrpcArm)
            ),
            *(arm.make_sessions(8) for arm, _ in self.probes.values()),
        )
        if "C" in self.arms:
            c = self.arms["C"].arm
            assert isinstance(c, EnvoyArm)
            c.pool = self.arms["B-sqlite"].arm.pool  # type: ignore[attr-defined]

    async def start_envoy(self, backend_port: int | None) -> None:
        reason = envoy_unavailable()
        if reason or backend_port is None:
            self.skipped["C"] = reason or "no B-sqlite backend to put Envoy in front of"
            return
        try:
            from aichat_devtools import dev_envoy, dev_token

            keys, _ = dev_token.ensure_keys(self.workdir / "keys")
            listen = procs.free_port()
            config = dev_envoy.render(
                ports={
                    dev_envoy.LISTENER_PORT: listen,
                    dev_envoy.ADMIN_PORT: procs.free_port(),
                    dev_envoy.BACKEND_PORT: backend_port,
                },
                paths={"var/dev-jwks.json": keys.jwks_path},
                listen_address="127.0.0.1",
            )
            path = dev_envoy.write(config, self.workdir / "envoy.yaml")
            binary = dev_envoy.envoy_binary() or "envoy"
            self.spawn(
                "envoy",
                [
                    binary,
                    "-c",
                    str(path),
                    "--disable-hot-restart",
                    "--concurrency",
                    "1",
                    "--log-level",
                    "warning",
                ],
                self.service_core,
            )
            backend = self.arms["B-sqlite"].arm
            assert isinstance(backend, GrpcArm)
            tokens = {
                f"bench-{i}": dev_token.make_token(keys, f"bench-{i}", ttl_seconds=6 * 3600)
                for i in range(16)
            }
            arm = EnvoyArm("C", f"http://127.0.0.1:{listen}", backend, tokens)
            await arm.wait_ready(30)
            self.pin_services()
            self.arms["C"] = ArmSetup(arm, ("envoy", "backend-sqlite"), "envoy")
        except Exception as exc:
            self.skipped["C"] = f"Envoy did not start: {type(exc).__name__}: {exc}"

    async def stop(self) -> None:
        for setup in self.arms.values():
            with contextlib.suppress(Exception):
                await setup.arm.aclose()
        for arm, _ in getattr(self, "probes", {}).values():
            with contextlib.suppress(Exception):
                await arm.aclose()
        for name in list(self.children):
            await asyncio.to_thread(self.children[name].stop)
        if self.pg_conn is not None:
            for name in self.pg_databases:
                with contextlib.suppress(Exception):
                    await self.pg_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await self.pg_conn.close()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

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

    async def warmup(self) -> None:
        text = scenario_text(0, 0, self.profile.idle_tokens)
        for name in self.arms:
            for _ in range(self.profile.warmup):
                await self.arms[name].arm.stream(text)
        for arm, _ in self.probes.values():
            for _ in range(3):
                await arm.stream(text)
        await asyncio.sleep(0.2)
        for name, setup in self.arms.items():
            if setup.rss_process and setup.rss_process in self.children:
                st = procs.proc_status(self.children[setup.rss_process].pid)
                self.data.setdefault("idle_rss_kib", {})[name] = st.get("VmRSS")

    async def idle_ttft(self) -> None:
        """Added TTFT: one request in flight, an instant upstream, arms interleaved."""
        p = self.profile
        text = scenario_text(0, 0, p.idle_tokens)
        results: dict[str, list[StreamResult]] = {name: [] for name in self.arms}
        cpu: dict[str, float] = dict.fromkeys(self.arms, 0.0)
        pids = {
            name: [self.children[s].pid for s in setup.service if s in self.children]
            for name, setup in self.arms.items()
        }
        async with self.measure("idle_ttft", "all"):
            for _ in range(p.idle_samples):
                for name in self.order(list(self.arms)):
                    before = sum(procs.proc_cpu_ns(pid) for pid in pids[name])
                    results[name].append(await self.arms[name].arm.stream(text))
                    # The service's own trailing work (the answer's write) is part of a turn.
                    await asyncio.sleep(0.002)
                    after = sum(procs.proc_cpu_ns(pid) for pid in pids[name])
                    cpu[name] += (after - before) / 1e9
        out = {}
        for name, rs in results.items():
            summary = ttft_summary(rs)
            turns = len(rs)
            summary["service_cpu_us_per_turn"] = rnd(cpu[name] / turns * 1e6, 1) if turns else None
            summary["tokens_per_message"] = gap_summary(rs, STALL_S)["tokens_per_message"]
            out[name] = summary
        self.data["idle_ttft"] = out
        log(
            "idle TTFT p50/p99 ms: "
            + ", ".join(f"{n} {out[n]['ttft_ms_p50']}/{out[n]['ttft_ms_p99']}" for n in out)
        )

    async def realistic(self, label: str, rate: float) -> dict[str, Any]:
        """Open-loop Poisson turns on the realistic upstream, each arm a window per round."""
        p = self.profile
        ttft_ms, delay_ms, n = p.realistic
        text = scenario_text(ttft_ms, delay_ms, n)
        stream_s = (ttft_ms + delay_ms * n) / 1000
        results: dict[str, list[StreamResult]] = {name: [] for name in self.arms}
        cpu: dict[str, float] = dict.fromkeys(self.arms, 0.0)
        loadgen: dict[str, float] = dict.fromkeys(self.arms, 0.0)
        rejected: dict[str, bool] = dict.fromkeys(self.arms, False)
        for _ in range(p.rounds):
            for name in self.order(list(self.arms)):
                arm = self.arms[name].arm
                async with self.measure(label, name) as m:
                    tasks, _late = await self.open_loop(
                        streamer(arm, text),
                        rate,
                        p.window_s,  # type: ignore[misc]
                    )
                    done = await self.finish(
                        tasks, stream_s * 4 + 30, f"{label}/{name}", lambda: StreamResult()
                    )
                results[name].extend(done)
                cpu[name] += self.service_cpu(m, name)
                assert m.usage is not None
                loadgen[name] += m.usage.cpu.get("loadgen", 0.0)
                rejected[name] |= m.saturated
        out: dict[str, Any] = {"rate_per_s": rnd(rate, 2), "upstream": p.realistic}
        for name, rs in results.items():
            summary = ttft_summary(rs)
            summary.update(gap_summary(rs, STALL_S))
            tokens = summary["tokens"] or 0
            summary["service_cpu_s"] = rnd(cpu[name])
            summary["service_cpu_us_per_turn"] = rnd(cpu[name] / len(rs) * 1e6, 1) if rs else None
            summary["service_cpu_us_per_token"] = (
                rnd(cpu[name] / tokens * 1e6, 2) if tokens else None
            )
            summary["loadgen_cpu_us_per_token"] = (
                rnd(loadgen[name] / tokens * 1e6, 2) if tokens else None
            )
            summary["rejected_load_core_saturated"] = rejected[name]
            out[name] = summary
        log(
            f"{label} @ {rate:.1f}/s TTFT p50 ms: "
            + ", ".join(f"{n} {out[n]['ttft_ms_p50']}" for n in self.arms)
        )
        return out

    async def db_probe(self) -> None:
        """Statements and time per turn, and what ran before the first token."""
        out: dict[str, Any] = {}
        for kind, (arm, path) in self.probes.items():
            turns: dict[str, StreamResult] = {}
            for i in range(self.profile.db_turns):
                tag = f"db-{kind}-{i}-{uuid.uuid4().hex[:6]}"
                turns[tag] = await arm.stream(scenario_text(0, 0, 16, rec=tag), tag=tag)
            await asyncio.sleep(0.3)
            out[kind] = analyse_db(turns, path, self.record_file)
        if out:
            self.data["db"] = out
            for kind, d in out.items():
                log(
                    f"db {kind}: {d.get('statements_per_turn')} statements, "
                    f"{d.get('transactions_per_turn')} transactions, "
                    f"{d.get('statement_ms_per_turn')} ms statements / "
                    f"{d.get('transaction_ms_per_turn')} ms in transactions per turn"
                )

    async def rss_hold(self) -> None:
        """Hold N streams open at once: the service's RSS per held stream."""
        p = self.profile
        out: dict[str, Any] = {}
        text = scenario_text(0, 1000, 600)  # a token a second: the streams stay open
        for name in [*p.rss_arms, *self.peer_arms]:
            if name not in self.arms or not self.arms[name].rss_process:
                continue
            pid = self.children[self.arms[name].rss_process or ""].pid
            arm = self.arms[name].arm
            before = procs.proc_status(pid)
            first = 0

            def seen() -> None:
                nonlocal first
                first += 1

            # Turn starts arrive at well under what the service can absorb (a fraction of
            # its measured CPU per turn), so the hold measures memory, not an overload.
            rate = self.start_rate(name, 0.5, 150.0)
            ramp = max(0.2, p.rss_streams / rate)
            async with self.measure("rss_hold", name) as m:
                tasks, _ = await self.open_loop(
                    streamer(arm, text, seen),
                    p.rss_streams / ramp,
                    count=p.rss_streams,
                )
                deadline = time.monotonic() + 30
                while first < len(tasks) and time.monotonic() < deadline:
                    if sum(t.done() for t in tasks) + first >= len(tasks):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                held = procs.proc_status(pid)
                held_count = sum(1 for t in tasks if not t.done())
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            limit = PEER_SETTLE_S if name in self.peer_arms else 15.0
            settled = await self.settle(self.arms[name].service, limit)
            after = procs.proc_status(pid)
            delta = held.get("VmRSS", 0) - before.get("VmRSS", 0)
            # Per stream that was streaming: one still waiting for its first token (a slow
            # peer starts them late) is open but not yet held.
            streaming = min(held_count, first)
            out[name] = {
                "streams": p.rss_streams,
                "held": held_count,
                "first_token_seen": first,
                "rss_before_kib": before.get("VmRSS"),
                "rss_held_kib": held.get("VmRSS"),
                "rss_after_kib": after.get("VmRSS"),
                "threads_held": held.get("Threads"),
                "streaming": streaming,
                "rss_kib_per_stream": rnd(delta / streaming, 1) if streaming else None,
                "ramp_s": rnd(ramp, 2),
                "busy_after_cut_s": rnd(settled, 1),
                "saturated": m.saturated,
            }
            log(
                f"rss {name}: {out[name]['rss_kib_per_stream']} KiB/stream over {streaming} "
                f"streaming ({held_count} open); busy {settled:.1f} s after the cut"
            )
        self.data["rss"] = out

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

    async def held_streams(self) -> None:
        """Most paced streams (50 tokens/s) held at once without a stall.

        Streams are added (Poisson, at a fraction of the start capacity) and never
        stopped: at each level every live stream is watched for ``hold_s``; a gap over
        10x the pace (or an error) in that window ends the climb.
        """
        p = self.profile
        out: dict[str, Any] = {}
        for name in [*p.held_arms, *self.peer_arms]:
            if name not in self.arms:
                continue
            arm = self.arms[name].arm
            rate = self.start_rate(name, 0.3, 100.0)
            # A peer may not hold the lowest level at all: finer steps below it for peers,
            # so "streams held" says how many rather than 0.
            hold_levels = p.hold_levels
            if name in self.peer_arms:
                hold_levels = (*(n for n in PEER_LOW_LEVELS if n < p.hold_levels[0]), *hold_levels)
            top = hold_levels[-1]
            budget = top / rate + len(hold_levels) * (p.hold_s + 1.5) + 10
            text = scenario_text(0, PACE_MS, int(budget * 1000 / PACE_MS))
            live: list[StreamResult] = []
            tasks: list[asyncio.Task[Any]] = []

            start = recording_starter(arm, text, live)
            levels: list[dict[str, Any]] = []
            held, bound = 0, "not reached (highest level tried)"
            ramp_from = time.monotonic()
            for level in hold_levels:
                more, late = await self.open_loop(start, rate, count=level - len(tasks))
                tasks += more
                await asyncio.sleep(1.0)  # the newest turns reach their first tokens
                ramp_stalls = count_stalled(live, ramp_from, time.monotonic())
                async with self.measure("held_streams", name) as m:
                    w0 = time.monotonic()
                    await asyncio.sleep(p.hold_s)
                    w1 = time.monotonic()
                ramp_from = w1
                stalled = count_stalled(live, w0, w1)
                errors: dict[str, int] = {}
                for res in live:
                    if res.error:
                        errors[res.error] = errors.get(res.error, 0) + 1
                window = [(t, k) for res in live for t, k in (res.marks or ()) if w0 <= t <= w1]
                tokens = sum(k for _, k in window)
                assert m.usage is not None
                cpu = self.service_cpu(m, name)
                row: dict[str, Any] = {
                    "streams": level,
                    "stalled_streams": stalled,
                    "stalled_while_adding": ramp_stalls,
                    "errors": errors,
                    "gap_ms_max": ms(max_gap(live, w0, w1)),
                    "tokens_per_s": rnd(tokens / (w1 - w0), 1),
                    # Delivered vs produced: a saturated relay without coalescing keeps
                    # every gap short yet falls further behind the model each second.
                    "pace_kept": rnd(tokens / (w1 - w0) / (level * 1000 / PACE_MS)),
                    "tokens_per_message": rnd(tokens / len(window) if window else None),
                    "service_cpu_fraction": rnd(cpu / m.usage.wall if m.usage.wall else None),
                    "service_cpu_us_per_token": rnd(cpu / tokens * 1e6, 2) if tokens else None,
                    "loadgen_fraction": rnd(m.usage.fraction("loadgen")),
                    "upstream_fraction": rnd(m.usage.fraction("upstream")),
                    "arrivals_late_ms_p99": ms(pct(late, 99), 2),
                    "start_rate_per_s": rnd(rate, 1),
                    "saturated": m.saturated,
                    "noisy": m.noisy,
                }
                levels.append(row)
                log(
                    f"held {name} {level}: stalled {stalled} (while adding {ramp_stalls}), "
                    f"errors {errors}, max gap {row['gap_ms_max']} ms, "
                    f"{row['tokens_per_message']} tokens/message, pace kept {row['pace_kept']}, "
                    f"service CPU "
                    f"{row['service_cpu_fraction']}, load core "
                    f"{(row['loadgen_fraction'] or 0) + (row['upstream_fraction'] or 0):.2f}"
                )
                behind = (row["pace_kept"] or 0) < PACE_KEPT
                if not stalled and not errors and not behind and not m.saturated:
                    held = level
                    continue
                if m.saturated:
                    bound = "load core saturated (load generator + upstream): a lower bound"
                elif (row["service_cpu_fraction"] or 0) > 0.9:
                    bound = "service core saturated"
                else:
                    bound = "stalls before the service core saturated"
                if behind and not stalled and not errors:
                    bound += f"; delivered {row['pace_kept']:.0%} of the tokens made (behind)"
                break
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # In a short run LiteLLM's first unary step right after this phase had a p99 of
            # 47 s: peers get longer to go idle after their streams are cut, and how long
            # each arm stayed busy is kept.
            limit = PEER_SETTLE_S if name in self.peer_arms else 15.0
            settled = await self.settle(self.arms[name].service, limit)
            out[name] = {
                "streams_held": held,
                "bound": bound,
                "levels": levels,
                "busy_after_cut_s": rnd(settled, 1),
            }
        self.data["held"] = out

    async def unary(self) -> None:
        """SendMessage requests/s at p99 < 50 ms (open loop, stepping up the rate); F's
        relay answers the same request with no project code, the floor for the B arms."""
        p = self.profile
        text = scenario_text(0, 0, 8)
        out: dict[str, Any] = {}
        for name in ("F", "B-sqlite", "B-postgres", *self.peer_arms):
            if name not in self.arms:
                continue
            arm = self.arms[name].arm
            # Capacity from the CPU of a unary request itself, measured at a light load
            # first. The idle phase's streamed turn (16 messages) overstated it by half
            # or more, so the climb stopped below the rate the service could really take.
            idle = (self.data.get("idle_ttft", {}).get(name) or {}).get("service_cpu_us_per_turn")
            light = min(50.0, 0.3e6 / idle) if idle else 20.0
            calibration, _ = await self._unary_step(name, arm, text, light)
            calibration["calibration"] = True
            cpu = calibration["service_cpu_fraction"]
            offered = calibration["offered_rps"]
            per_req = cpu / offered * 1e6 if cpu and offered else 20000.0
            capacity = 1e6 / per_req
            steps: list[dict[str, Any]] = [calibration]
            best: float | None = None
            bound = "p99 over the limit, or errors"
            # The profile's steps, then on by a fifth each while they pass: CPU per request
            # falls as the load grows (the calibration's includes the idle process's own),
            # so the estimate is where the climb starts, not where it ends.
            last = p.unary_factors[-1]
            climb = [*p.unary_factors, *(last * 1.2**k for k in range(1, UNARY_EXTRA_STEPS + 1))]
            for factor in climb:
                rate = capacity * factor
                # A step that fails is run once more before the climb stops: one pause
                # (a collector run after the phases before) can spoil a 5 s window's
                # p99 alone. Both attempts are kept in the report.
                for attempt in (1, 2):
                    s, saturated = await self._unary_step(name, arm, text, rate)
                    s["attempt"] = attempt
                    steps.append(s)
                    if s["passed"] or saturated:
                        break
                if saturated:
                    bound = "load core saturated: a lower bound"
                if not s["passed"] or saturated:
                    break
                best = s["offered_rps"]
            else:
                bound = "every rate tried passed: a lower bound"
            out[name] = {
                "unary_rps": best,
                "bound": bound,
                "service_cpu_us_per_request": rnd(per_req, 1),
                "capacity_estimate_rps": rnd(capacity, 1),
                "steps": steps,
            }
        self.data["unary"] = out

    async def _unary_step(
        self, name: str, arm: Arm, text: str, rate: float
    ) -> tuple[dict[str, Any], bool]:
        p = self.profile
        async with self.measure("unary", name) as m:
            tasks, late = await self.open_loop(unary_caller(arm, text), rate, p.unary_window_s)
            results = await self.finish(
                tasks, 60, f"unary/{name}", lambda: UnaryResult(0.0, 0.0, False)
            )
        s = unary_summary(results, p.unary_window_s)
        assert m.usage is not None
        s.update(
            rate_target=rnd(rate, 1),
            service_cpu_fraction=rnd(self.service_cpu(m, name) / m.usage.wall),
            loadgen_fraction=rnd(m.usage.fraction("loadgen")),
            upstream_fraction=rnd(m.usage.fraction("upstream")),
            arrivals_late_ms_p99=ms(pct(late, 99), 2),
            saturated=m.saturated,
        )
        s["passed"] = (
            not s["errors"]
            and s["latency_ms_p99"] is not None
            and s["latency_ms_p99"] < UNARY_P99_S * 1000
        )
        log(
            f"unary {name} @ {rate:.0f}/s: p99 {s['latency_ms_p99']} ms, errors "
            f"{s['errors']}, service CPU {s['service_cpu_fraction']}"
        )
        return s, m.saturated

    async def run(self) -> dict[str, Any]:
        p = self.profile
        started = time.time()
        machine = procs.machine_info()
        pg_before: dict[str, float] = {}
        pg_turns_before = 0
        try:
            await self.start()
            log("sessions made; warming up")
            await self.warmup()
            await self.idle_ttft()
            await self.db_probe()
            for arm, _ in self.probes.values():
                await arm.aclose()
            for name in ("probe-sqlite", "probe-postgres"):
                if name in self.children:
                    await asyncio.to_thread(self.children.pop(name).stop)
                    self.sampler.pids.pop(name, None)
            if "B-postgres" in self.arms:
                # Fresh connections: statistics that earlier work left pending in a
                # pooled backend would otherwise land inside the measured window.
                db = self.pg_databases[0]
                await self.pg_conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    db,
                )
                await asyncio.sleep(0.5)
                pg_before = await self.pg_stats(db)
                pg_turns_before = _turns(self.arms["B-postgres"].arm)
            await self.refill()
            await self.rss_hold()
            await self.refill()
            low = await self.realistic("realistic_low", p.low_rate)
            knee = self.knee(low)
            half = min(knee / 2, p.max_half_knee_rate)
            self.data["knee"] = {
                "estimated_knee_per_s": rnd(knee, 1),
                "half_knee_per_s": rnd(half, 1),
                "how": "1 / (backend CPU seconds per realistic turn at low load), the lowest "
                "over the B arms; half-knee capped at max_half_knee_rate",
            }
            await self.refill()
            half_knee = await self.realistic("realistic_half_knee", half)
            self.data["realistic"] = {"low": low, "half_knee": half_knee}
            await self.refill()
            await self.held_streams()
            await self.refill()
            await self.unary()
        finally:
            if "B-postgres" in self.arms and pg_before and "backend-postgres" in self.children:
                child = self.children.pop("backend-postgres")
                await asyncio.to_thread(child.stop)
                await asyncio.sleep(0.5)
                after = await self.pg_stats(self.pg_databases[0])
                turns = _turns(self.arms["B-postgres"].arm) - pg_turns_before
                self.data["pg_stat_database"] = pg_per_turn(pg_before, after, turns)
            await self.stop()
        self.data["duration_s"] = round(time.time() - started, 1)
        return self.report(machine, started)

    def knee(self, low: dict[str, Any]) -> float:
        costs = [
            low[name]["service_cpu_us_per_turn"]
            for name in ("B-sqlite", "B-postgres")
            if name in low and low[name].get("service_cpu_us_per_turn")
        ]
        if not costs:
            return self.profile.low_rate * 4
        return 1e6 / float(max(costs))

    # --- the report -----------------------------------------------------------------

    def report(self, machine: dict[str, Any], started: float) -> dict[str, Any]:
        d = self.data
        idle = d.get("idle_ttft", {})
        real = d.get("realistic", {})
        low, half = real.get("low", {}), real.get("half_knee", {})
        b = HEADLINE if HEADLINE in idle else next((a for a in idle if a.startswith("B")), "")

        def get(section: dict[str, Any], arm: str, key: str) -> Any:
            return section.get(arm, {}).get(key)

        headline: dict[str, Any] = {
            "headline_arm": b,
            "added_ttft_ms_p50": diff(get(idle, b, "ttft_ms_p50"), get(idle, "A", "ttft_ms_p50")),
            "added_ttft_ms_p99": diff(get(idle, b, "ttft_ms_p99"), get(idle, "A", "ttft_ms_p99")),
            "added_ttft_vs_floor_ms_p50": diff(
                get(idle, b, "ttft_ms_p50"), get(idle, "F", "ttft_ms_p50")
            ),
            "ttft_ratio_p50": ratio(get(low, b, "ttft_ms_p50"), get(low, "A", "ttft_ms_p50")),
            "ttft_ratio_p50_half_knee": ratio(
                get(half, b, "ttft_ms_p50"), get(half, "A", "ttft_ms_p50")
            ),
            "added_gap_ms_p99": _max_or_none(
                diff(get(low, b, "gap_ms_p99"), get(low, "A", "gap_ms_p99")),
                diff(get(half, b, "gap_ms_p99"), get(half, "A", "gap_ms_p99")),
            ),
            "streams_held": d.get("held", {}).get(b, {}).get("streams_held"),
            # Relaying only (no turn starts in the window), one token per message.
            "cpu_us_per_token": held_cpu(d.get("held", {}).get(b, {}), coalesced=False),
            # The same figure for the floor relay F (no project code), for comparison.
            "cpu_us_per_token_floor": held_cpu(d.get("held", {}).get("F", {}), coalesced=False),
            # The service core saturated, deltas joined into fuller messages.
            "cpu_us_per_token_coalesced": held_cpu(d.get("held", {}).get(b, {}), coalesced=True),
            "tokens_per_message_coalesced": held_row(d.get("held", {}).get(b, {}), True).get(
                "tokens_per_message"
            ),
            # Whole realistic turns at half the knee: per-turn work spread over 64 tokens.
            "cpu_us_per_token_half_knee": get(half, b, "service_cpu_us_per_token"),
            "cpu_us_per_turn_idle": get(idle, b, "service_cpu_us_per_turn"),
            "rss_kib_per_stream": d.get("rss", {}).get(b, {}).get("rss_kib_per_stream"),
            "idle_rss_mib": rnd((d.get("idle_rss_kib", {}).get(b) or 0) / 1024, 1) or None,
            "unary_rps": d.get("unary", {}).get(b, {}).get("unary_rps"),
            "unary_rps_floor": d.get("unary", {}).get("F", {}).get("unary_rps"),
        }
        db = d.get("db", {}).get("sqlite" if b == "B-sqlite" else "postgres", {})
        headline["db_statements_per_turn"] = db.get("statements_per_turn")
        headline["db_ms_per_turn"] = db.get("statement_ms_per_turn")
        headline["db_writes_before_first_token_outside_begin"] = db.get(
            "writes_before_first_token_outside_begin_per_turn"
        )
        targets = {}
        for key, (op, bound) in TARGETS.items():
            value = headline.get(key)
            met = None if value is None else (value <= bound if op == "<=" else value >= bound)
            targets[key] = {"target": f"{op} {bound:g}", "value": value, "met": met}
        result: dict[str, Any] = {
            **headline,
            "profile": self.profile.name,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": d.get("duration_s"),
            "machine": machine,
            "backend_limits": BENCH_LIMITS,
            "backend_wrapper": self.backend_wrapper or None,
            "pinning": {
                "service_core": self.service_core,
                "load_core": self.load_core,
                "service": "backend(s), relay, Envoy, peers",
                "load": "upstream, load generator",
            },
            "targets": targets,
            "arms": self.per_arm(),
            # Ours (the headline arm) against each peer of this run, figure by figure.
            "peers": compare(self.per_arm(), b, self.peer_arms),
            "peer_settings": d.get("peer_settings"),
            "knee": d.get("knee"),
            "db": d.get("db"),
            "pg_stat_database": d.get("pg_stat_database"),
            "skipped": self.skipped,
            "flags": self.flags,
            "phases": [m.as_dict() for m in self.phases],
            "profile_settings": asdict(self.profile),
        }
        result["machine"]["loadavg_at_end"] = list(__import__("os").getloadavg())
        return result

    def per_arm(self) -> dict[str, Any]:
        d = self.data
        out: dict[str, Any] = {}
        for name in self.arms:
            out[name] = {
                "idle_ttft": d.get("idle_ttft", {}).get(name),
                "realistic_low": d.get("realistic", {}).get("low", {}).get(name),
                "realistic_half_knee": d.get("realistic", {}).get("half_knee", {}).get(name),
                "held": d.get("held", {}).get(name),
                "rss": d.get("rss", {}).get(name),
                "idle_rss_kib": d.get("idle_rss_kib", {}).get(name),
                "unary": d.get("unary", {}).get(name),
            }
        return out


def _stop_all(run: Run) -> None:
    for child in list(run.children.values()):
        child.stop(2)


def streamer(
    arm: Arm, text: str, on_first: Callable[[], None] | None = None
) -> Callable[[], Awaitable[StreamResult]]:
    return lambda: arm.stream(text, on_first=on_first)


def unary_caller(arm: Arm, text: str) -> Callable[[], Awaitable[UnaryResult]]:
    return lambda: arm.unary(text)


def _turns(arm: Arm) -> int:
    return int(getattr(arm, "turns", 0))


def _max_or_none(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def recording_starter(
    arm: Arm, text: str, live: list[StreamResult]
) -> Callable[[], Awaitable[StreamResult]]:
    """Starts streams whose message times are kept (in ``live``) while they run."""

    def start() -> Awaitable[StreamResult]:
        res = StreamResult(marks=[])
        live.append(res)
        return arm.stream(text, into=res)

    return start


async def _lag_monitor(samples: list[float], every: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(every)
        samples.append(max(0.0, loop.time() - t - every))


def envoy_unavailable() -> str:
    try:
        from aichat_devtools import dev_envoy
    except ImportError:
        return "skipped: no envoy config (aichat_devtools.dev_envoy)"
    if not hasattr(dev_envoy, "render") or not dev_envoy.CONFIG.exists():
        return "skipped: no envoy config (envoy.yaml and its renderer)"
    if dev_envoy.envoy_binary() is None:
        return "skipped: no envoy binary"
    return ""


# --- entry -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--toy", action="store_const", dest="profile", const="toy")
    size.add_argument("--quick", action="store_const", dest="profile", const="quick")
    size.add_argument("--full", action="store_const", dest="profile", const="full")
    parser.add_argument("--out", default="var/bench/latest.json")
    parser.add_argument("--arms", default="A,F,B-sqlite,B-postgres,C")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg-admin-dsn", default=DEFAULT_PG_ADMIN)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, DBs)")
    parser.add_argument(
        "--backend-wrapper",
        default="",
        help="run the B backends as `python FILE serve --env-only` (A/B a patch)",
    )
    parser.add_argument(
        "--peer",
        default="",
        help="comma-separated peers to run beside ours, installed on first use "
        f"({', '.join(sorted(bench_peer.PREPARE))})",
    )
    parser.add_argument("--peers-dir", default=str(bench_peer.PEERS_DIR))
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile or "quick"]
    run = Run(
        profile=profile,
        out=Path(args.out),
        seed=args.seed,
        arms_wanted=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
        pg_admin=args.pg_admin_dsn,
        keep=args.keep,
        backend_wrapper=str(Path(args.backend_wrapper).resolve()) if args.backend_wrapper else "",
        peers=tuple(p.strip() for p in args.peer.split(",") if p.strip()),
        peers_dir=Path(args.peers_dir),
    )
    log(f"profile {profile.name}; work dir {run.workdir}")

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    # Children live in their own sessions (our Ctrl-C is not theirs): whatever happens,
    # none outlives the run.
    atexit.register(_stop_all, run)
    result = asyncio.run(run.run())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
