"""Bounded waits on conditions something else makes true (a server's coroutine, a child)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(what: str, condition: Callable[[], bool], within: float = 10.0) -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)
