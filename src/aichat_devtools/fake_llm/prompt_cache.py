"""The fake upstream's prompt cache: reads and writes by prefix, as each API reports them.

Anthropic caches only where the request says (``cache_control`` on a block, at most
four): a prefix ending at such a point is written once it holds ``min_tokens``; a later
request reads the longest prefix written before that ends at one of its own points or
up to ``LOOKBACK_BLOCKS`` blocks before one. It reports what it read
(``cache_read_input_tokens``), what it wrote past that (``cache_creation_input_tokens``,
up to the last point) and the rest (``input_tokens``, after the last point).

OpenAI caches by itself: every message boundary of a request of ``min_tokens`` or more
is remembered, and a later request reads the longest remembered prefix, reported in
``prompt_tokens_details.cached_tokens`` in steps of ``OPENAI_STEP`` past the minimum.

Entries never expire here (the real caches keep them five minutes after the last hit):
a test is shorter than that. A long-running fake (the demo, a benchmark) forgets them all
once it holds ``MAX_ENTRIES``, so its memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from aichat_devtools.fake_llm.tokens import Unit, prefix_keys

LOOKBACK_BLOCKS = 20
MAX_CACHE_POINTS = 4
OPENAI_STEP = 128
MAX_ENTRIES = 100_000


class TooManyCachePoints(ValueError):
    def __init__(self, found: int) -> None:
        super().__init__(
            f"A maximum of {MAX_CACHE_POINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )


@dataclass(frozen=True, slots=True)
class CacheUse:
    read: int = 0
    written: int = 0


class PromptCache:
    def __init__(self, min_tokens: int = 1024) -> None:
        self.min_tokens = min_tokens
        self._entries: set[str] = set()

    def clear(self) -> None:
        self._entries.clear()

    def _remember(self, keys: list[str]) -> None:
        if len(self._entries) + len(keys) > MAX_ENTRIES:
            self._entries.clear()
        self._entries.update(keys)

    def anthropic(self, model: str, units: list[Unit]) -> CacheUse:
        points = [i for i, unit in enumerate(units) if unit.cache_point]
        if len(points) > MAX_CACHE_POINTS:
            raise TooManyCachePoints(len(points))
        if not points:
            return CacheUse()
        keys = prefix_keys(model, units)
        totals = _running_totals(units)
        hit = -1
        for point in points:
            for i in range(point, max(-1, point - LOOKBACK_BLOCKS - 1), -1):
                if keys[i] in self._entries:
                    hit = max(hit, i)
                    break
        read = totals[hit] if hit >= 0 else 0
        cacheable = [p for p in points if totals[p] >= self.min_tokens]
        self._remember([keys[point] for point in cacheable])
        last = max(cacheable, default=-1)
        written = totals[last] - read if last > hit else 0
        return CacheUse(read=read, written=written)

    def openai(self, model: str, units: list[Unit]) -> int:
        """The cached tokens of this request (and its prefixes remembered)."""
        if not units:
            return 0
        keys = prefix_keys(model, units)
        totals = _running_totals(units)
        hit = max((i for i, key in enumerate(keys) if key in self._entries), default=-1)
        self._remember([k for k, t in zip(keys, totals, strict=True) if t >= self.min_tokens])
        if hit < 0 or totals[hit] < self.min_tokens:
            return 0
        return totals[hit] - (totals[hit] - self.min_tokens) % OPENAI_STEP


def _running_totals(units: list[Unit]) -> list[int]:
    totals: list[int] = []
    running = 0
    for unit in units:
        running += unit.tokens
        totals.append(running)
    return totals
