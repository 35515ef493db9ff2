"""Ours against each peer from the same run: the figures side by side and their ratio.

A ratio is ours / peer for every figure; ``better`` says which way is good (lower for
times, CPU and memory; higher for streams held and requests per second), so a reader
never has to guess whether 0.6 is a win.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aichat_devtools.bench_report import diff, ratio, rnd

Arm = Mapping[str, Any]


def _get(arm: Arm, *path: str) -> Any:
    node: Any = arm
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _held_cpu_at(arm: Arm, streams: int | None) -> Any:
    for row in _get(arm, "held", "levels") or []:
        if row.get("streams") == streams:
            return row.get("service_cpu_us_per_token")
    return None


def common_held_level(mine: Arm, theirs: Arm) -> int | None:
    """The fewest streams both arms were measured at (ours' first level, when the peer got
    that far; peers start lower): CPU per relayed token is compared at the same number of
    streams, or not at all."""

    def levels(arm: Arm) -> set[int]:
        return {int(r["streams"]) for r in _get(arm, "held", "levels") or [] if "streams" in r}

    both = levels(mine) & levels(theirs)
    return min(both) if both else None


def _added(section: str, key: str) -> Callable[[Arm, Arm], Any]:
    return lambda arm, a: diff(_get(arm, section, key), _get(a, section, key))


def _plain(*path: str) -> Callable[[Arm, Arm], Any]:
    return lambda arm, _a: _get(arm, *path)


# (label, how to read it from an arm (and arm A), which way is better)
FIGURES: list[tuple[str, Callable[[Arm, Arm], Any], str]] = [
    ("idle added TTFT p50 ms (vs A)", _added("idle_ttft", "ttft_ms_p50"), "lower"),
    ("idle added TTFT p99 ms (vs A)", _added("idle_ttft", "ttft_ms_p99"), "lower"),
    ("idle service CPU µs/turn", _plain("idle_ttft", "service_cpu_us_per_turn"), "lower"),
    ("low-load TTFT p50 ms", _plain("realistic_low", "ttft_ms_p50"), "lower"),
    ("low-load gap p99 ms", _plain("realistic_low", "gap_ms_p99"), "lower"),
    ("half-knee TTFT p50 ms", _plain("realistic_half_knee", "ttft_ms_p50"), "lower"),
    ("half-knee TTFT p99 ms", _plain("realistic_half_knee", "ttft_ms_p99"), "lower"),
    ("half-knee gap p99 ms", _plain("realistic_half_knee", "gap_ms_p99"), "lower"),
    (
        "half-knee service CPU µs/token",
        _plain("realistic_half_knee", "service_cpu_us_per_token"),
        "lower",
    ),
    ("paced streams held", _plain("held", "streams_held"), "higher"),
    ("RSS KiB per held stream", _plain("rss", "rss_kib_per_stream"), "lower"),
    ("idle RSS MiB", lambda arm, _a: _mib(_get(arm, "idle_rss_kib")), "lower"),
    ("unary rps (p99 < 50 ms)", _plain("unary", "unary_rps"), "higher"),
    ("unary CPU µs/request (light load)", _plain("unary", "service_cpu_us_per_request"), "lower"),
]


HELD_CPU = "held CPU µs/token (same streams)"


def _mib(kib: Any) -> float | None:
    return rnd(kib / 1024, 1) if isinstance(kib, int | float) else None


def compare(arms: Mapping[str, Arm], ours: str, peers: list[str]) -> dict[str, Any]:
    """{peer: {figure: {ours, peer, ratio, better, ours_better}}} for the peers that ran."""
    a = arms.get("A") or {}
    mine = arms.get(ours) or {}
    out: dict[str, Any] = {}
    for peer in peers:
        theirs = arms.get(peer)
        if theirs is None:
            continue
        rows: dict[str, Any] = {}
        for label, read, better in FIGURES:
            x, y = read(mine, a), read(theirs, a)
            r = ratio(x, y) if isinstance(x, int | float) and isinstance(y, int | float) else None
            ours_better = None
            if isinstance(x, int | float) and isinstance(y, int | float):
                ours_better = x <= y if better == "lower" else x >= y
            rows[label] = {
                "ours": x,
                "peer": y,
                "ratio_ours_over_peer": r,
                "better": better,
                "ours_better": ours_better,
            }
        level = common_held_level(mine, theirs)
        x, y = _held_cpu_at(mine, level), _held_cpu_at(theirs, level)
        rows[HELD_CPU] = {
            "ours": x,
            "peer": y,
            "ratio_ours_over_peer": ratio(x, y),
            "better": "lower",
            "ours_better": None if x is None or y is None else x <= y,
            "streams": level,
        }
        out[peer] = {"ours": ours, "figures": rows}
    return out


def table_rows(comparison: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows for the printed table: ours, then each peer and ours/peer."""
    peers = list(comparison)
    if not peers:
        return [], []
    ours = comparison[peers[0]]["ours"]
    header = ["ours vs peers (same run)", ours]
    for peer in peers:
        header += [peer, f"{ours}/{peer}"]
    header.append("better")
    rows: list[list[Any]] = []
    labels = [(label, better) for label, _read, better in FIGURES] + [(HELD_CPU, "lower")]
    for label, better in labels:
        first = comparison[peers[0]]["figures"][label]
        row: list[Any] = [label, first["ours"]]
        for peer in peers:
            cell = comparison[peer]["figures"][label]
            row += [cell["peer"], cell["ratio_ours_over_peer"]]
        row.append(better)
        rows.append(row)
    return header, rows
