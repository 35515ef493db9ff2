"""Starting and stopping a run's processes: the upstream, the relay, the backends (SQLite,
PostgreSQL, the DB probes), Envoy and the peers (bench_start_peers), pinned to their cores once up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys

from aichat_devtools import bench_procs as procs
from aichat_devtools import bench_spawn as spawning
from aichat_devtools.bench_clients import DirectArm
from aichat_devtools.bench_door_arm import DoorArm
from aichat_devtools.bench_envoy_arm import EnvoyArm
from aichat_devtools.bench_grpc_arm import GrpcArm
from aichat_devtools.bench_pg import pg_admin_connect, pg_create
from aichat_devtools.bench_profiles import BENCH_LIMITS
from aichat_devtools.bench_run import ArmSetup, Run, log
from aichat_devtools.bench_start_peers import start_peers


def backend_env(run: Run, port: int, database_url: str, replica: str) -> dict[str, str]:
    return {
        "AICHAT_GRPC_ADDRESS": f"127.0.0.1:{port}",
        # Off unless an arm needs it (two backends run at once: no fixed port for both).
        "AICHAT_OPENAI_ADDRESS": "",
        "AICHAT_DATABASE_URL": database_url,
        "AICHAT_DATA_DIR": str(run.workdir / replica),
        "AICHAT_LLM_PROVIDER": "openai",
        "AICHAT_LLM_BASE_URL": run.upstream_url + "/v1",
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


async def start(run: Run) -> None:
    p = run.profile
    procs.pin_self(run.load_core)
    if run.service_core is None:
        run.flags.append("single core (or no affinity control): nothing is pinned")
    want = set(run.arms_wanted)
    up = run.spawn(
        "upstream",
        spawning.python_module(
            "aichat_devtools.bench_upstream",
            "--port",
            "0",
            "--record-file",
            str(run.record_file),
        ),
        run.load_core,
    )
    line = await asyncio.to_thread(up.wait_line, "listening on ", 20)
    run.upstream_url = line.split("listening on ", 1)[1].strip()

    pg_url = probe_pg_url = ""
    if want & {"B-postgres"} and await pg_admin_connect(run):
        pg_url = await pg_create(run)
        probe_pg_url = await pg_create(run) if p.name != "toy" else ""
    ports: dict[str, int] = {}
    starts: list[tuple[str, GrpcArm]] = []

    def backend(name: str, url: str, module: str, replica: str, **extra: str) -> GrpcArm:
        port = procs.free_port()
        ports[name] = port
        env = backend_env(run, port, url, replica)
        env.update(extra)
        args = spawning.python_module(module, "serve", "--env-only")
        if module == "aichat_backend" and run.backend_wrapper:
            # Try a change without editing the service: a script that patches, then
            # runs the CLI (``sys.argv[1:]`` is ``serve --env-only``).
            args = [sys.executable, run.backend_wrapper, "serve", "--env-only"]
        run.spawn(replica, args, run.service_core, **env)
        arm = GrpcArm(name, f"127.0.0.1:{port}", "backend")
        starts.append((name, arm))
        return arm

    sqlite_url = f"sqlite:///{run.workdir / 'b-sqlite' / 'aichat.db'}"
    if "A" in want:
        run.arms["A"] = ArmSetup(DirectArm("A", run.upstream_url + "/v1"), ())
    if "F" in want:
        port = procs.free_port()
        run.spawn(
            "relay",
            spawning.python_module(
                "aichat_devtools.bench_relay",
                "--port",
                str(port),
                "--upstream",
                run.upstream_url + "/v1",
            ),
            run.service_core,
        )
        relay = GrpcArm("F", f"127.0.0.1:{port}", "relay")
        starts.append(("F", relay))
        run.arms["F"] = ArmSetup(relay, ("relay",), "relay")
    if want & {"B-sqlite", "C", "O"}:
        # Arm O is the same backend's OpenAI-compatible listener.
        door = procs.free_port() if "O" in want else 0
        extra = {"AICHAT_OPENAI_ADDRESS": f"127.0.0.1:{door}"} if door else {}
        arm = backend("B-sqlite", sqlite_url, "aichat_backend", "backend-sqlite", **extra)
        run.arms["B-sqlite"] = ArmSetup(arm, ("backend-sqlite",), "backend-sqlite")
        if door:
            run.arms["O"] = ArmSetup(
                DoorArm("O", f"http://127.0.0.1:{door}/v1"), ("backend-sqlite",), "backend-sqlite"
            )
    if pg_url:
        arm = backend("B-postgres", pg_url, "aichat_backend", "backend-postgres")
        run.arms["B-postgres"] = ArmSetup(arm, ("backend-postgres", "postgres"), "backend-postgres")
    probe_out = run.workdir / "dbprobe"
    probe_out.mkdir(exist_ok=True)
    run.probes.clear()
    if "B-sqlite" in want and p.db_turns:
        path = probe_out / "sqlite.jsonl"
        probe_url = f"sqlite:///{run.workdir / 'probe-sqlite' / 'aichat.db'}"
        arm = backend(
            "probe-sqlite",
            probe_url,
            "aichat_devtools.bench_dbprobe",
            "probe-sqlite",
            BENCH_DBPROBE_OUT=str(path),
        )
        run.probes["sqlite"] = (arm, path)
    if probe_pg_url and p.name != "toy":
        path = probe_out / "postgres.jsonl"
        arm = backend(
            "probe-postgres",
            probe_pg_url,
            "aichat_devtools.bench_dbprobe",
            "probe-postgres",
            BENCH_DBPROBE_OUT=str(path),
        )
        run.probes["postgres"] = (arm, path)
    log("upstream up; waiting for the services")
    await asyncio.gather(*(arm.wait_ready(60) for _, arm in starts), start_peers(run))
    run.pin_services()
    log("services up")
    if "C" in want:
        await start_envoy(run, ports.get("B-sqlite"))
    elif "C" not in run.skipped:
        run.skipped["C"] = "not requested"
    log(
        f"processes up: {', '.join(run.children)}; arms: {', '.join(run.arms)}"
        + (f"; skipped: {run.skipped}" if run.skipped else "")
    )
    sessions = max(p.rss_streams, max(p.hold_levels), 64) + 16
    await asyncio.gather(
        *(s.arm.make_sessions(sessions) for s in run.arms.values() if isinstance(s.arm, GrpcArm)),
        *(arm.make_sessions(8) for arm, _ in run.probes.values()),
    )
    if "C" in run.arms:
        c = run.arms["C"].arm
        assert isinstance(c, EnvoyArm)
        c.pool = run.arms["B-sqlite"].arm.pool  # type: ignore[attr-defined]


async def start_envoy(run: Run, backend_port: int | None) -> None:
    reason = envoy_unavailable()
    if reason or backend_port is None:
        run.skipped["C"] = reason or "no B-sqlite backend to put Envoy in front of"
        return
    try:
        from aichat_devtools import dev_envoy, dev_token

        keys, _ = dev_token.ensure_keys(run.workdir / "keys")
        # Envoy reads the web page's config at start (its /web/config.json route).
        web_config = dev_envoy.write_web_config(os.environ, run.workdir / "web-config.json")
        listen = procs.free_port()
        config = dev_envoy.render(
            ports={
                dev_envoy.LISTENER_PORT: listen,
                dev_envoy.ADMIN_PORT: procs.free_port(),
                dev_envoy.BACKEND_PORT: backend_port,
            },
            paths={"var/dev-jwks.json": keys.jwks_path, dev_envoy.WEB_CONFIG: web_config},
            listen_address="127.0.0.1",
        )
        path = dev_envoy.write(config, run.workdir / "envoy.yaml")
        binary = dev_envoy.envoy_binary() or "envoy"
        run.spawn(
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
            run.service_core,
        )
        backend = run.arms["B-sqlite"].arm
        assert isinstance(backend, GrpcArm)
        tokens = {
            f"bench-{i}": dev_token.make_token(keys, f"bench-{i}", ttl_seconds=6 * 3600)
            for i in range(16)
        }
        arm = EnvoyArm("C", f"http://127.0.0.1:{listen}", backend, tokens)
        await arm.wait_ready(30)
        run.pin_services()
        run.arms["C"] = ArmSetup(arm, ("envoy", "backend-sqlite"), "envoy")
    except Exception as exc:
        run.skipped["C"] = f"Envoy did not start: {type(exc).__name__}: {exc}"


async def stop(run: Run) -> None:
    for setup in run.arms.values():
        with contextlib.suppress(Exception):
            await setup.arm.aclose()
    for arm, _ in run.probes.values():
        with contextlib.suppress(Exception):
            await arm.aclose()
    for name in list(run.children):
        await asyncio.to_thread(run.children[name].stop)
    if run.pg_conn is not None:
        for name in run.pg_databases:
            with contextlib.suppress(Exception):
                await run.pg_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await run.pg_conn.close()
    if not run.keep:
        shutil.rmtree(run.workdir, ignore_errors=True)


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
