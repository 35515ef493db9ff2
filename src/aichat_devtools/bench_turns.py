"""Phases of whole streamed turns: warm-up, idle TTFT, realistic load (low and half the
knee), the knee estimate, and the per-turn database probe.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aichat_devtools import bench_procs as procs
from aichat_devtools.bench_clients import StreamResult
from aichat_devtools.bench_dbreport import analyse_db
from aichat_devtools.bench_profiles import STALL_S
from aichat_devtools.bench_report import gap_summary, rnd, ttft_summary
from aichat_devtools.bench_run import Run, log, streamer
from aichat_devtools.bench_upstream import scenario_text


async def warmup(run: Run) -> None:
    text = scenario_text(0, 0, run.profile.idle_tokens)
    for name in run.arms:
        for _ in range(run.profile.warmup):
            await run.arms[name].arm.stream(text)
    for arm, _ in run.probes.values():
        for _ in range(3):
            await arm.stream(text)
    await asyncio.sleep(0.2)
    for name, setup in run.arms.items():
        if setup.rss_process and setup.rss_process in run.children:
            st = procs.proc_status(run.children[setup.rss_process].pid)
            run.data.setdefault("idle_rss_kib", {})[name] = st.get("VmRSS")


async def idle_ttft(run: Run) -> None:
    """Added TTFT: one request in flight, an instant upstream, arms interleaved."""
    p = run.profile
    text = scenario_text(0, 0, p.idle_tokens)
    results: dict[str, list[StreamResult]] = {name: [] for name in run.arms}
    cpu: dict[str, float] = dict.fromkeys(run.arms, 0.0)
    pids = {
        name: [run.children[s].pid for s in setup.service if s in run.children]
        for name, setup in run.arms.items()
    }
    async with run.measure("idle_ttft", "all"):
        for _ in range(p.idle_samples):
            for name in run.order(list(run.arms)):
                before = sum(procs.proc_cpu_ns(pid) for pid in pids[name])
                results[name].append(await run.arms[name].arm.stream(text))
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
    run.data["idle_ttft"] = out
    log(
        "idle TTFT p50/p99 ms: "
        + ", ".join(f"{n} {out[n]['ttft_ms_p50']}/{out[n]['ttft_ms_p99']}" for n in out)
    )


async def realistic(run: Run, label: str, rate: float) -> dict[str, Any]:
    """Open-loop Poisson turns on the realistic upstream, each arm a window per round."""
    p = run.profile
    ttft_ms, delay_ms, n = p.realistic
    text = scenario_text(ttft_ms, delay_ms, n)
    stream_s = (ttft_ms + delay_ms * n) / 1000
    results: dict[str, list[StreamResult]] = {name: [] for name in run.arms}
    cpu: dict[str, float] = dict.fromkeys(run.arms, 0.0)
    loadgen: dict[str, float] = dict.fromkeys(run.arms, 0.0)
    rejected: dict[str, bool] = dict.fromkeys(run.arms, False)
    for _ in range(p.rounds):
        for name in run.order(list(run.arms)):
            arm = run.arms[name].arm
            async with run.measure(label, name) as m:
                tasks, _late = await run.open_loop(
                    streamer(arm, text),
                    rate,
                    p.window_s,  # type: ignore[misc]
                )
                done = await run.finish(
                    tasks, stream_s * 4 + 30, f"{label}/{name}", lambda: StreamResult()
                )
            results[name].extend(done)
            cpu[name] += run.service_cpu(m, name)
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
        summary["service_cpu_us_per_token"] = rnd(cpu[name] / tokens * 1e6, 2) if tokens else None
        summary["loadgen_cpu_us_per_token"] = (
            rnd(loadgen[name] / tokens * 1e6, 2) if tokens else None
        )
        summary["rejected_load_core_saturated"] = rejected[name]
        out[name] = summary
    log(
        f"{label} @ {rate:.1f}/s TTFT p50 ms: "
        + ", ".join(f"{n} {out[n]['ttft_ms_p50']}" for n in run.arms)
    )
    return out


async def db_probe(run: Run) -> None:
    """Statements and time per turn, and what ran before the first token."""
    out: dict[str, Any] = {}
    for kind, (arm, path) in run.probes.items():
        turns: dict[str, StreamResult] = {}
        for i in range(run.profile.db_turns):
            tag = f"db-{kind}-{i}-{uuid.uuid4().hex[:6]}"
            turns[tag] = await arm.stream(scenario_text(0, 0, 16, rec=tag), tag=tag)
        await asyncio.sleep(0.3)
        out[kind] = analyse_db(turns, path, run.record_file)
    if out:
        run.data["db"] = out
        for kind, d in out.items():
            log(
                f"db {kind}: {d.get('statements_per_turn')} statements, "
                f"{d.get('transactions_per_turn')} transactions, "
                f"{d.get('statement_ms_per_turn')} ms statements / "
                f"{d.get('transaction_ms_per_turn')} ms in transactions per turn"
            )


def knee(run: Run, low: dict[str, Any]) -> float:
    costs = [
        low[name]["service_cpu_us_per_turn"]
        for name in ("B-sqlite", "B-postgres")
        if name in low and low[name].get("service_cpu_us_per_turn")
    ]
    if not costs:
        return run.profile.low_rate * 4
    return 1e6 / float(max(costs))
