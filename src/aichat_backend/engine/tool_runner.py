"""Run a round's allowed tool calls in parallel, reporting each as it ends.

Heartbeats go out while calls run, so no proxy idles the stream out; a call's failure
(error result, timeout, server gone) is a result the model sees, not a failed turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence

from aichat_backend.domain import ToolCall, ToolCallState
from aichat_backend.engine.events import Heartbeat, ToolCallUpdate
from aichat_backend.engine.observer import TurnObserver
from aichat_backend.tools.base import ToolInfo, ToolProvider, ToolResult


async def run_calls(
    tools: ToolProvider,
    calls: Sequence[tuple[ToolCall, ToolInfo]],
    *,
    user_id: str,
    timeout: float,
    heartbeat: float,
    started: float,
    observer: TurnObserver,
) -> AsyncGenerator[ToolCallUpdate | Heartbeat, None]:
    running: dict[asyncio.Task[ToolResult], ToolCall] = {}
    infos = {id(call): info for call, info in calls}
    for call, info in calls:
        call.state = ToolCallState.RUNNING
        task = asyncio.create_task(
            tools.call(info, call.arguments, user_id=user_id, timeout=timeout)
        )
        running[task] = call
    try:
        while running:
            done, _ = await asyncio.wait(
                running, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                yield Heartbeat(time.monotonic() - started)
                continue
            for task in done:
                call = running.pop(task)
                result = task.result()
                call.result_text = result.text
                call.is_error = result.is_error
                call.duration_ms = result.duration_ms
                call.state = ToolCallState.FAILED if result.is_error else ToolCallState.SUCCEEDED
                info = infos[id(call)]
                outcome = "timeout" if result.timed_out else ("error" if result.is_error else "ok")
                observer.tool_call(info.server, info.tool, outcome, result.duration_ms / 1000)
                yield ToolCallUpdate(call)
    finally:
        for task in running:
            task.cancel()
