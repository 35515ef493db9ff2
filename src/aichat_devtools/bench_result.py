"""The run's report: the headline figures, the targets, and every arm's results."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from aichat_devtools.bench_compare import compare
from aichat_devtools.bench_held import held_cpu, held_row
from aichat_devtools.bench_profiles import BENCH_LIMITS, HEADLINE, TARGETS
from aichat_devtools.bench_report import diff, ratio, rnd
from aichat_devtools.bench_run import Run

# --- the report -----------------------------------------------------------------


def report(run: Run, machine: dict[str, Any], started: float) -> dict[str, Any]:
    d = run.data
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
        "profile": run.profile.name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": d.get("duration_s"),
        "machine": machine,
        "backend_limits": BENCH_LIMITS,
        "backend_wrapper": run.backend_wrapper or None,
        "pinning": {
            "service_core": run.service_core,
            "load_core": run.load_core,
            "service": "backend(s), relay, Envoy, peers",
            "load": "upstream, load generator",
        },
        "targets": targets,
        "arms": per_arm(run),
        # Ours (the headline arm) against each peer of this run, figure by figure.
        "peers": compare(per_arm(run), b, run.peer_arms),
        # Our OpenAI-compatible API (arm O) against the same peers: one protocol, one client.
        "peers_openai": compare(per_arm(run), "O", run.peer_arms) if "O" in run.arms else {},
        "peer_settings": d.get("peer_settings"),
        "knee": d.get("knee"),
        "db": d.get("db"),
        "pg_stat_database": d.get("pg_stat_database"),
        "skipped": run.skipped,
        "flags": run.flags,
        "phases": [m.as_dict() for m in run.phases],
        "profile_settings": asdict(run.profile),
    }
    result["machine"]["loadavg_at_end"] = list(__import__("os").getloadavg())
    return result


def per_arm(run: Run) -> dict[str, Any]:
    d = run.data
    out: dict[str, Any] = {}
    for name in run.arms:
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


def _max_or_none(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
