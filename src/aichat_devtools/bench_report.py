"""Numbers out of a benchmark run: percentiles, per-arm summaries, the printed table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from aichat_devtools.bench_clients import StreamResult, UnaryResult


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks; None when empty."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def ms(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value * 1000, digits)


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ttft_summary(results: Sequence[StreamResult]) -> dict[str, Any]:
    ttfts = [r.ttft for r in results if r.ttft is not None]
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error or "NO_TEXT"] = errors.get(r.error or "NO_TEXT", 0) + 1
    return {
        "n": len(results),
        "errors": errors,
        "ttft_ms_p50": ms(pct(ttfts, 50)),
        "ttft_ms_p90": ms(pct(ttfts, 90)),
        "ttft_ms_p99": ms(pct(ttfts, 99)),
        "ttft_ms_max": ms(max(ttfts) if ttfts else None),
        "ttft_ms_mean": ms(sum(ttfts) / len(ttfts) if ttfts else None),
    }


def gap_summary(results: Sequence[StreamResult], stall_s: float) -> dict[str, Any]:
    gaps = [g for r in results for g in r.gaps]
    messages = sum(r.messages for r in results)
    tokens = sum(r.tokens for r in results)
    return {
        "gaps": len(gaps),
        "gap_ms_p50": ms(pct(gaps, 50)),
        "gap_ms_p99": ms(pct(gaps, 99)),
        "gap_ms_max": ms(max(gaps) if gaps else None),
        "stalled_streams": sum(1 for r in results if any(g > stall_s for g in r.gaps)),
        "messages": messages,
        "tokens": tokens,
        "tokens_per_message": rnd(tokens / messages if messages else None),
    }


def unary_summary(results: Sequence[UnaryResult], window: float) -> dict[str, Any]:
    lat = [r.latency for r in results if r.ok]
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {
        "n": len(results),
        "offered_rps": rnd(len(results) / window if window else None, 1),
        "errors": errors,
        "latency_ms_p50": ms(pct(lat, 50)),
        "latency_ms_p99": ms(pct(lat, 99)),
        "latency_ms_max": ms(max(lat) if lat else None),
    }


def diff(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return None if a is None or b is None else round(a - b, digits)


def ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, digits)


# --- the table ---------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)
    ]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)
