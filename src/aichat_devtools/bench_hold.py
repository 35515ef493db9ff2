"""Phases that hold streams open: memory per held stream, and the most paced streams held
at once without a stall.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aichat_devtools import bench_procs as procs
from aichat_devtools.bench_clients import Arm, StreamResult
from aichat_devtools.bench_held import max_gap
from aichat_devtools.bench_held import stalled as count_stalled
from aichat_devtools.bench_profiles import PACE_KEPT, PACE_MS, PEER_LOW_LEVELS, PEER_SETTLE_S
from aichat_devtools.bench_report import ms, pct, rnd
from aichat_devtools.bench_run import Run, log, streamer
from aichat_devtools.bench_upstream import scenario_text


async def rss_hold(run: Run) -> None:
    """Hold N streams open at once: the service's RSS per held stream."""
    p = run.profile
    out: dict[str, Any] = {}
    text = scenario_text(0, 1000, 600)  # a token a second: the streams stay open
    for name in [*p.rss_arms, *run.side_by_side]:
        if name not in run.arms or not run.arms[name].rss_process:
            continue
        pid = run.children[run.arms[name].rss_process or ""].pid
        arm = run.arms[name].arm
        before = procs.proc_status(pid)
        first = 0

        def seen() -> None:
            nonlocal first
            first += 1

        # Turn starts arrive at well under what the service can absorb (a fraction of
        # its measured CPU per turn), so the hold measures memory, not an overload.
        rate = run.start_rate(name, 0.5, 150.0)
        ramp = max(0.2, p.rss_streams / rate)
        async with run.measure("rss_hold", name) as m:
            tasks, _ = await run.open_loop(
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
        limit = PEER_SETTLE_S if name in run.peer_arms else 15.0
        settled = await run.settle(run.arms[name].service, limit)
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
    run.data["rss"] = out


async def held_streams(run: Run) -> None:
    """Most paced streams (50 tokens/s) held at once without a stall.

    Streams are added (Poisson, at a fraction of the start capacity) and never
    stopped: at each level every live stream is watched for ``hold_s``; a gap over
    10x the pace (or an error) in that window ends the climb.
    """
    p = run.profile
    out: dict[str, Any] = {}
    for name in [*p.held_arms, *run.side_by_side]:
        if name not in run.arms:
            continue
        arm = run.arms[name].arm
        rate = run.start_rate(name, 0.3, 100.0)
        # A peer may not hold the lowest level at all: finer steps below it for peers,
        # so "streams held" says how many rather than 0.
        hold_levels = p.hold_levels
        if name in run.peer_arms:
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
            more, late = await run.open_loop(start, rate, count=level - len(tasks))
            tasks += more
            await asyncio.sleep(1.0)  # the newest turns reach their first tokens
            ramp_stalls = count_stalled(live, ramp_from, time.monotonic())
            async with run.measure("held_streams", name) as m:
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
            cpu = run.service_cpu(m, name)
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
        limit = PEER_SETTLE_S if name in run.peer_arms else 15.0
        settled = await run.settle(run.arms[name].service, limit)
        out[name] = {
            "streams_held": held,
            "bound": bound,
            "levels": levels,
            "busy_after_cut_s": rnd(settled, 1),
        }
    run.data["held"] = out


def recording_starter(
    arm: Arm, text: str, live: list[StreamResult]
) -> Callable[[], Awaitable[StreamResult]]:
    """Starts streams whose message times are kept (in ``live``) while they run."""

    def start() -> Awaitable[StreamResult]:
        res = StreamResult(marks=[])
        live.append(res)
        return arm.stream(text, into=res)

    return start
