"""Ours against a peer: every figure side by side, the ratio ours/peer, and which way is
better, from the per-arm report of one run."""

from __future__ import annotations

from typing import Any

from aichat_devtools.bench_compare import HELD_CPU, compare, table_rows


def arm(idle_p50: float, cpu_token: float, held: int, levels: list[tuple[int, float]]) -> Any:
    return {
        "idle_ttft": {"ttft_ms_p50": idle_p50, "ttft_ms_p99": idle_p50 * 2},
        "realistic_half_knee": {"service_cpu_us_per_token": cpu_token},
        "held": {
            "streams_held": held,
            "levels": [{"streams": n, "service_cpu_us_per_token": c} for n, c in levels],
        },
        "idle_rss_kib": 110 * 1024,
        "unary": {"unary_rps": None},
    }


def test_ratios_say_which_way_is_better_and_compare_held_cpu_at_the_same_streams() -> None:
    arms = {
        "A": arm(2.0, 0.0, 100, []),
        "B-sqlite": arm(3.0, 170.0, 250, [(50, 80.0), (100, 70.0)]),
        # The peer starts lower and stops at 50: compared at 50 streams, not at 5.
        "P-x": arm(12.0, 850.0, 40, [(5, 900.0), (40, 600.0), (50, 400.0)]),
    }
    result = compare(arms, "B-sqlite", ["P-x", "P-missing"])
    assert list(result) == ["P-x"]  # a peer that did not run has no column
    figures = result["P-x"]["figures"]

    added = figures["idle added TTFT p50 ms (vs A)"]
    assert (added["ours"], added["peer"]) == (1.0, 10.0)
    assert added["ratio_ours_over_peer"] == 0.1
    assert added["ours_better"] is True

    held = figures["paced streams held"]
    assert held["better"] == "higher"
    assert held["ratio_ours_over_peer"] == 6.25
    assert held["ours_better"] is True

    cpu = figures[HELD_CPU]
    assert (cpu["streams"], cpu["ours"], cpu["peer"]) == (50, 80.0, 400.0)
    assert cpu["ratio_ours_over_peer"] == 0.2

    rss = figures["idle RSS MiB"]
    assert rss["ratio_ours_over_peer"] == 1.0 and rss["ours_better"] is True  # a tie is ours

    unary = figures["unary rps (p99 < 50 ms)"]
    assert unary["ratio_ours_over_peer"] is None and unary["ours_better"] is None

    header, rows = table_rows(result)
    assert header == ["ours vs peers (same run)", "B-sqlite", "P-x", "B-sqlite/P-x", "better"]
    assert [r[0] for r in rows][-1] == HELD_CPU
    assert all(len(r) == len(header) for r in rows)


def test_no_common_held_level_compares_nothing() -> None:
    arms = {
        "A": arm(2.0, 0.0, 0, []),
        "B-sqlite": arm(3.0, 170.0, 250, [(50, 80.0)]),
        "P-x": arm(12.0, 850.0, 5, [(5, 900.0), (10, 950.0)]),
    }
    cpu = compare(arms, "B-sqlite", ["P-x"])["P-x"]["figures"][HELD_CPU]
    assert cpu["streams"] is None
    assert cpu["ratio_ours_over_peer"] is None
    assert table_rows({}) == ([], [])
