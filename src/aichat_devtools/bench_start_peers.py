"""Starting the benchmark's peers (LiteLLM, ...) beside our services, each in a bare
environment of its own; a peer that cannot start is reported as not run, never fatal.
"""

from __future__ import annotations

import asyncio

from aichat_devtools import bench_peer
from aichat_devtools import bench_procs as procs
from aichat_devtools import bench_spawn as spawning
from aichat_devtools.bench_peer_setup import Launch, PeerUnavailable
from aichat_devtools.bench_run import ArmSetup, Run, log


def spawn_peer(run: Run, launch: Launch) -> spawning.Child:
    """A peer in a bare environment of its own, pinned with the services once up."""
    child = spawning.spawn(
        launch.arm,
        launch.args,
        core=None,
        log_dir=run.workdir / "logs",
        bare_env=launch.env,
        cwd=launch.cwd,
    )
    child.core = run.service_core
    run.children[launch.arm] = child
    run.sampler.watch(launch.arm, child.pid)
    return child


async def start_peers(run: Run) -> None:
    async def one(peer: str) -> None:
        name = bench_peer.arm_name(peer)
        try:
            arm, launch = await bench_peer.start_peer(
                peer,
                run.peers_dir,
                run.workdir,
                run.upstream_url + "/v1",
                procs.free_port(),
                lambda launch: spawn_peer(run, launch),
            )
        except PeerUnavailable as exc:
            run.skipped[name] = f"not run: {exc}"
            log(f"{name}: not run, the run goes on without it: {exc}")
            child = run.children.pop(name, None)
            if child is not None:
                await asyncio.to_thread(child.stop)
                run.sampler.pids.pop(name, None)
            return
        run.arms[name] = ArmSetup(arm, (name,), name)
        run.data.setdefault("peer_settings", {})[name] = launch.settings

    await asyncio.gather(*(one(p) for p in run.peers))
