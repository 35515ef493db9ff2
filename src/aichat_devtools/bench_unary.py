"""The unary phase: SendMessage requests/s at p99 under the limit, climbing the rate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aichat_devtools.bench_clients import Arm, UnaryResult
from aichat_devtools.bench_profiles import UNARY_P99_S
from aichat_devtools.bench_report import ms, pct, rnd, unary_summary
from aichat_devtools.bench_run import Run, log
from aichat_devtools.bench_upstream import scenario_text


async def unary(run: Run) -> None:
    """SendMessage requests/s at p99 < 50 ms (open loop, stepping up the rate); F's
    relay answers the same request with no project code, the floor for the B arms."""
    p = run.profile
    text = scenario_text(0, 0, 8)
    out: dict[str, Any] = {}
    for name in ("F", "B-sqlite", "B-postgres", *run.side_by_side):
        if name not in run.arms:
            continue
        arm = run.arms[name].arm
        # Capacity from the CPU of a unary request itself, measured at a light load
        # first. The idle phase's streamed turn (16 messages) overstated it by half
        # or more, so the climb stopped below the rate the service could really take.
        idle = (run.data.get("idle_ttft", {}).get(name) or {}).get("service_cpu_us_per_turn")
        light = min(50.0, 0.3e6 / idle) if idle else 20.0
        calibration, _ = await _unary_step(run, name, arm, text, light)
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
        climb = [*p.unary_factors, *(last * 1.2**k for k in range(1, p.unary_extra_steps + 1))]
        for factor in climb:
            rate = capacity * factor
            # A step that fails is run once more before the climb stops: one pause
            # (a collector run after the phases before) can spoil a 5 s window's
            # p99 alone. Both attempts are kept in the report.
            for attempt in (1, 2):
                s, saturated = await _unary_step(run, name, arm, text, rate)
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
    run.data["unary"] = out


async def _unary_step(
    run: Run, name: str, arm: Arm, text: str, rate: float
) -> tuple[dict[str, Any], bool]:
    p = run.profile
    async with run.measure("unary", name) as m:
        tasks, late = await run.open_loop(unary_caller(arm, text), rate, p.unary_window_s)
        results = await run.finish(tasks, 60, f"unary/{name}", lambda: UnaryResult(0.0, 0.0, False))
    s = unary_summary(results, p.unary_window_s)
    assert m.usage is not None
    s.update(
        rate_target=rnd(rate, 1),
        service_cpu_fraction=rnd(run.service_cpu(m, name) / m.usage.wall),
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


def unary_caller(arm: Arm, text: str) -> Callable[[], Awaitable[UnaryResult]]:
    return lambda: arm.unary(text)
