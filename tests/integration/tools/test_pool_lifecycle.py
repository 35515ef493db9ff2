"""Start-up in parallel, failure and retry, reconnect after a server dies, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from aichat_backend.tools.base import (
    ApprovalPolicy,
    ServerState,
    ToolAnnotations,
    ToolInfo,
)
from tests.integration.tools.support import call, make_pool, probe_entry, state, wait

pytestmark = pytest.mark.timeout(40)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_parallel_connect_with_failing_slow_and_flaky_servers(tmp_path: Path) -> None:
    gate = tmp_path / "slow-may-start"
    os.mkfifo(gate)
    never = tmp_path / "never-opened"
    os.mkfifo(never)
    flaky_up = tmp_path / "flaky-may-start"
    pool = make_pool(
        {
            "fast": probe_entry(),
            "slow": probe_entry("--gate", str(gate), timeout=30),
            "broken": {"command": str(tmp_path / "no-such-server")},
            "stuck": probe_entry("--gate", str(never), timeout=0.5),
            "flaky": probe_entry("--fail-unless", str(flaky_up)),
            "off": probe_entry(enabled=False),
        }
    )
    await pool.start()  # returns at once: nothing has connected yet

    def errors() -> dict[str, str]:
        return {s.name: s.last_error for s in pool.servers()}

    try:
        # The failing ones keep their last error while they are retried.
        await wait(
            pool,
            lambda: (
                state(pool, "fast") is ServerState.CONNECTED
                and all(errors()[name] for name in ("broken", "flaky", "stuck"))
            ),
        )
        # The slow server is still starting, and nothing waited for it.
        assert state(pool, "slow") is ServerState.CONNECTING
        assert state(pool, "off") is ServerState.DISABLED
        result = await call(pool, "fast__whoami", user="early-bird")
        assert result.text == "early-bird"
        assert {t.server for t in pool.tools()} == {"fast"}

        assert "no-such-server" in errors()["broken"]
        assert "no answer within 0.5 s" in errors()["stuck"]
        assert state(pool, "off") is ServerState.DISABLED

        # A tool of a server that is down is an error result, not an exception.
        ghost = ToolInfo(
            "broken", "anything", "broken__anything", "", {}, ToolAnnotations(), ApprovalPolicy.AUTO
        )
        down = await pool.call(ghost, {}, user_id="u", timeout=1)
        assert down.is_error
        assert "not connected" in down.text

        # The flaky server is retried with backoff until it comes up.
        flaky_up.touch()
        await wait(pool, lambda: state(pool, "flaky") is ServerState.CONNECTED)
        await asyncio.to_thread(gate.write_bytes, b"go")
        await wait(pool, lambda: state(pool, "slow") is ServerState.CONNECTED)
        assert await pool.wait_ready(1)
        assert state(pool, "broken") is not ServerState.CONNECTED
        assert {t.server for t in pool.tools()} == {"fast", "slow", "flaky"}
    finally:
        await pool.aclose()


async def test_reconnect_after_the_server_dies(tmp_path: Path) -> None:
    pool = make_pool({"probe": probe_entry()})
    await pool.start()
    try:
        assert await pool.wait_ready(15)
        first_pid = int((await call(pool, "probe__pid")).text)

        # Dies in the middle of a call: that call is an error result, then a new child.
        crashed = await call(pool, "probe__crash")
        assert crashed.is_error
        assert "went away" in crashed.text
        await wait(
            pool,
            lambda: (
                pool.connect_count("probe") == 2 and state(pool, "probe") is ServerState.CONNECTED
            ),
        )
        second_pid = int((await call(pool, "probe__pid")).text)
        assert second_pid != first_pid

        # Killed while idle: the closed pipe alone is enough to notice and reconnect.
        os.kill(second_pid, signal.SIGKILL)
        await wait(
            pool,
            lambda: (
                pool.connect_count("probe") == 3 and state(pool, "probe") is ServerState.CONNECTED
            ),
        )
        third_pid = int((await call(pool, "probe__pid")).text)
        assert third_pid not in (first_pid, second_pid)
    finally:
        await pool.aclose()
    # aclose ends the child, and the pool's tools with it.
    assert not _alive(third_pid)
    assert pool.tools() == []
