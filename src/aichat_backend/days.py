"""UTC calendar days: the key of a daily token budget and of a daily usage row.

Its own module so the limiters and the usage store share one spelling of a day without
the store depending on the limits package.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

SECONDS_PER_DAY = 86_400


def utc_day(wall_seconds: float) -> str:
    """The UTC calendar day (YYYY-MM-DD) of a Unix time."""
    return _day_name(int(wall_seconds // SECONDS_PER_DAY))


@functools.lru_cache(maxsize=4)
def _day_name(day_number: int) -> str:
    # Every turn asks (usage and budgets); strftime each time cost ~50 µs of a turn.
    return datetime.fromtimestamp(day_number * SECONDS_PER_DAY, UTC).strftime("%Y-%m-%d")
