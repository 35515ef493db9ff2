"""The run's report as the tables printed at the end."""

from __future__ import annotations

import json
from typing import Any

from aichat_devtools.bench_compare import table_rows
from aichat_devtools.bench_held import held_cpu
from aichat_devtools.bench_report import table


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print()
    print(
        f"aichat bench — {result['profile']} — {m['cpu_model']}, {m['cores']} cores, "
        f"Python {m['python']} — service core {result['pinning']['service_core']}, "
        f"load core {result['pinning']['load_core']} — {result['duration_s']} s"
    )
    rows: list[tuple[Any, ...]] = []
    for key, t in result["targets"].items():
        rows.append((key, t["value"], t["target"], t["met"]))
    print(
        table(rows, ["target (arm " + str(result["headline_arm"]) + ")", "value", "target", "met"])
    )
    arms = list(result["arms"])
    print()

    def cell(arm: str, *path: str) -> Any:
        node: Any = result["arms"][arm]
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    per_arm_rows = [
        ["idle TTFT p50 ms", *(cell(a, "idle_ttft", "ttft_ms_p50") for a in arms)],
        ["idle TTFT p99 ms", *(cell(a, "idle_ttft", "ttft_ms_p99") for a in arms)],
        [
            "idle service CPU µs/turn",
            *(cell(a, "idle_ttft", "service_cpu_us_per_turn") for a in arms),
        ],
        ["low-load TTFT p50 ms", *(cell(a, "realistic_low", "ttft_ms_p50") for a in arms)],
        ["low-load gap p99 ms", *(cell(a, "realistic_low", "gap_ms_p99") for a in arms)],
        ["half-knee TTFT p50 ms", *(cell(a, "realistic_half_knee", "ttft_ms_p50") for a in arms)],
        ["half-knee TTFT p99 ms", *(cell(a, "realistic_half_knee", "ttft_ms_p99") for a in arms)],
        ["half-knee gap p99 ms", *(cell(a, "realistic_half_knee", "gap_ms_p99") for a in arms)],
        [
            "half-knee service CPU µs/token",
            *(cell(a, "realistic_half_knee", "service_cpu_us_per_token") for a in arms),
        ],
        [
            "half-knee loadgen CPU µs/token",
            *(cell(a, "realistic_half_knee", "loadgen_cpu_us_per_token") for a in arms),
        ],
        ["paced streams held", *(cell(a, "held", "streams_held") for a in arms)],
        # The floor F beside B: what relaying a token costs with no project code at all.
        [
            "held CPU µs/token (first level)",
            *(held_cpu(cell(a, "held") or {}, coalesced=False) for a in arms),
        ],
        [
            "held CPU µs/token (coalesced)",
            *(held_cpu(cell(a, "held") or {}, coalesced=True) for a in arms),
        ],
        ["RSS KiB per held stream", *(cell(a, "rss", "rss_kib_per_stream") for a in arms)],
        ["idle RSS KiB", *(cell(a, "idle_rss_kib") for a in arms)],
        ["unary SendMessage rps (p99<50ms)", *(cell(a, "unary", "unary_rps") for a in arms)],
        [
            "unary CPU µs/request (light load)",
            *(cell(a, "unary", "service_cpu_us_per_request") for a in arms),
        ],
    ]
    print(table(per_arm_rows, ["per arm", *arms]))
    for key in ("peers", "peers_openai"):
        header, peer_rows = table_rows(result.get(key) or {})
        if peer_rows:
            print()
            print(table(peer_rows, header))
    db = result.get("db") or {}
    if db:
        print()
        rows = [
            (
                kind,
                v.get("statements_per_turn"),
                v.get("transactions_per_turn"),
                v.get("statement_ms_per_turn"),
                v.get("transaction_ms_per_turn"),
                v.get("writes_before_first_token_outside_begin_per_turn"),
                v.get("begin_overlapped_with_upstream_fraction"),
            )
            for kind, v in db.items()
        ]
        print(
            table(
                rows,
                [
                    "database",
                    "stmts/turn",
                    "tx/turn",
                    "stmt ms",
                    "tx ms",
                    "early writes",
                    "begin overlapped",
                ],
            )
        )
    if result.get("pg_stat_database"):
        print("pg_stat_database per turn:", json.dumps(result["pg_stat_database"]))
    if result["skipped"]:
        print("skipped:", "; ".join(f"{k}: {v}" for k, v in result["skipped"].items()))
    if result["flags"]:
        print("flags:")
        for flag in result["flags"]:
            print("  -", flag)
