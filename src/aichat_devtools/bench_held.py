"""Reading held streams: gaps and stalls inside a window, and the level the report uses."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from aichat_devtools.bench_clients import StreamResult
from aichat_devtools.bench_profiles import STALL_S


def gaps_in(res: StreamResult, w0: float, w1: float) -> list[float]:
    """Gaps between a stream's messages that end inside [w0, w1], plus the silence from
    its last message to w1 (a stream that stopped talking is stalled too)."""
    marks = res.marks or []
    if not marks or res.t_end:
        return []
    times = [t for t, _ in marks]
    gaps = [b - a for a, b in itertools.pairwise(times) if w0 <= b <= w1]
    if times[-1] <= w1:
        gaps.append(w1 - max(times[-1], w0))
    return gaps


def stalled(live: Sequence[StreamResult], w0: float, w1: float) -> int:
    return sum(1 for res in live if any(g > STALL_S for g in gaps_in(res, w0, w1)))


def max_gap(live: Sequence[StreamResult], w0: float, w1: float) -> float | None:
    gaps = [g for res in live for g in gaps_in(res, w0, w1)]
    return max(gaps) if gaps else None


def held_row(held: dict[str, Any], coalesced: bool) -> dict[str, Any]:
    """The first held level (one token per message), or the last level where messages
    carried 1.5+ tokens on average (the writer was busy, deltas were joined)."""
    levels: list[dict[str, Any]] = held.get("levels", [])
    if not coalesced:
        return levels[0] if levels else {}
    joined = [lv for lv in levels if (lv.get("tokens_per_message") or 0) >= 1.5]
    return joined[-1] if joined else {}


def held_cpu(held: dict[str, Any], coalesced: bool) -> float | None:
    value = held_row(held, coalesced).get("service_cpu_us_per_token")
    return float(value) if value is not None else None
