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
- O  B-sqlite's OpenAI-compatible API (``/v1/chat/completions``), called by the peers'
     client (``bench_door_arm``): beside each peer in ``peers_openai``;
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
import json
import signal
import time
from pathlib import Path
from typing import Any

from aichat_devtools import bench_peer
from aichat_devtools import bench_procs as procs
from aichat_devtools.bench_clients import Arm
from aichat_devtools.bench_dbreport import pg_per_turn
from aichat_devtools.bench_hold import held_streams, rss_hold
from aichat_devtools.bench_pg import pg_stats
from aichat_devtools.bench_profiles import DEFAULT_PG_ADMIN, PROFILES
from aichat_devtools.bench_report import rnd
from aichat_devtools.bench_result import report
from aichat_devtools.bench_run import Run, log
from aichat_devtools.bench_start import start, stop
from aichat_devtools.bench_table import print_table
from aichat_devtools.bench_turns import db_probe, idle_ttft, knee, realistic, warmup
from aichat_devtools.bench_unary import unary


async def run_all(run: Run) -> dict[str, Any]:
    p = run.profile
    started = time.time()
    machine = procs.machine_info()
    pg_before: dict[str, float] = {}
    pg_turns_before = 0
    try:
        await start(run)
        log("sessions made; warming up")
        await warmup(run)
        await idle_ttft(run)
        await db_probe(run)
        for arm, _ in run.probes.values():
            await arm.aclose()
        for name in ("probe-sqlite", "probe-postgres"):
            if name in run.children:
                await asyncio.to_thread(run.children.pop(name).stop)
                run.sampler.pids.pop(name, None)
        if "B-postgres" in run.arms:
            # Fresh connections: statistics that earlier work left pending in a
            # pooled backend would otherwise land inside the measured window.
            db = run.pg_databases[0]
            await run.pg_conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                db,
            )
            await asyncio.sleep(0.5)
            pg_before = await pg_stats(run, db)
            pg_turns_before = _turns(run.arms["B-postgres"].arm)
        await run.refill()
        await rss_hold(run)
        await run.refill()
        low = await realistic(run, "realistic_low", p.low_rate)
        knee_rate = knee(run, low)
        half = min(knee_rate / 2, p.max_half_knee_rate)
        run.data["knee"] = {
            "estimated_knee_per_s": rnd(knee_rate, 1),
            "half_knee_per_s": rnd(half, 1),
            "how": "1 / (backend CPU seconds per realistic turn at low load), the lowest "
            "over the B arms; half-knee capped at max_half_knee_rate",
        }
        await run.refill()
        half_knee = await realistic(run, "realistic_half_knee", half)
        run.data["realistic"] = {"low": low, "half_knee": half_knee}
        await run.refill()
        await held_streams(run)
        await run.refill()
        await unary(run)
    finally:
        if "B-postgres" in run.arms and pg_before and "backend-postgres" in run.children:
            child = run.children.pop("backend-postgres")
            await asyncio.to_thread(child.stop)
            await asyncio.sleep(0.5)
            after = await pg_stats(run, run.pg_databases[0])
            turns = _turns(run.arms["B-postgres"].arm) - pg_turns_before
            run.data["pg_stat_database"] = pg_per_turn(pg_before, after, turns)
        await stop(run)
    run.data["duration_s"] = round(time.time() - started, 1)
    return report(run, machine, started)


def _stop_all(run: Run) -> None:
    for child in list(run.children.values()):
        child.stop(2)


def _turns(arm: Arm) -> int:
    return int(getattr(arm, "turns", 0))


# --- entry -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--toy", action="store_const", dest="profile", const="toy")
    size.add_argument("--quick", action="store_const", dest="profile", const="quick")
    size.add_argument("--full", action="store_const", dest="profile", const="full")
    parser.add_argument("--out", default="var/bench/latest.json")
    parser.add_argument("--arms", default="A,F,B-sqlite,B-postgres,C,O")
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
        peers_dir=Path(args.peers_dir).resolve(),  # the peers start in the run's work dir
    )
    log(f"profile {profile.name}; work dir {run.workdir}")

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    # Children live in their own sessions (our Ctrl-C is not theirs): whatever happens,
    # none outlives the run.
    atexit.register(_stop_all, run)
    result = asyncio.run(run_all(run))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
