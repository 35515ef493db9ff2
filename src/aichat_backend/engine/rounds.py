"""The rounds of a turn: a model call, then (if it asked for tools) a tool round.

A round's answer is a stored placeholder written once when the round ends. A tool round
stores the calls with the answer, runs the allowed ones, and either asks the user to
approve the rest (the turn ends AWAITING_APPROVAL) or starts the next round with the
results. The last round's answer, the session's release and the usage are one write.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncGenerator

from aichat_backend.domain import MessageState, ToolCall, ToolCallState
from aichat_backend.engine.context import assistant_message, tool_result_message
from aichat_backend.engine.context_plan import ContextPlanner
from aichat_backend.engine.events import (
    ApprovalRequired,
    ToolCallUpdate,
    TurnEvent,
    TurnOutcome,
)
from aichat_backend.engine.final_write import FinalWrites
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.observer import TurnObserver
from aichat_backend.engine.requests import ChatConfig
from aichat_backend.engine.round_stream import RoundStream
from aichat_backend.engine.tool_runner import run_calls
from aichat_backend.engine.turn_end import turn_ended
from aichat_backend.engine.turn_run import TurnRun, answered_by, returned_calls
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.engine.usage import PricesOf, add_usage, call_usage, set_usage
from aichat_backend.errors import AichatError, Internal, InvalidArgument, Unavailable
from aichat_backend.providers.base import ChatMessage, ChatRole
from aichat_backend.reasons import Reason
from aichat_backend.records import Usage
from aichat_backend.tools.base import ToolInfo, ToolProvider

NO_MORE_TOOLS = (
    "You have used the maximum number of tool rounds for this message. Answer the user now "
    "with what you have, without calling tools."
)


class TurnRounds:
    def __init__(
        self,
        store: TurnStore,
        config: ChatConfig,
        tools: ToolProvider | None,
        observer: TurnObserver,
        lifecycle: TurnLifecycle,
        final: FinalWrites,
        prices: PricesOf,
        planner: ContextPlanner,
    ) -> None:
        self._planner = planner
        self._store = store
        self._prices = prices
        self._config = config
        self._tools = tools
        self._observer = observer
        self._lifecycle = lifecycle
        self._final = final

    def open_stream(self, run: TurnRun) -> RoundStream:
        """Send the run's current request upstream (the round's model call starts now)."""
        return RoundStream(
            run.request,
            run.targets,
            self._config.retry,
            self._config.heartbeat_seconds,
            run.started,
            self._lifecycle.load,
            self._config.busy_flush_seconds,
            run.relay_text,
        )

    async def run(self, run: TurnRun) -> AsyncGenerator[TurnEvent, None]:
        """The events of every round from ``run.stream`` on, ending with TurnEnded."""
        while True:
            stream = run.stream
            assert stream is not None
            while (delta := await stream.next_event()) is not None:
                yield delta
            model = answered_by(run, stream)
            if stream.first_token_at is not None and not run.first_token_seen:
                # The first text of the answer, in whichever round (tools may come first).
                run.first_token_seen = True
                self._observer.first_token(model, stream.first_token_at - run.started)
            finished = stream.finished
            if finished is not None and finished.input_tokens:
                run.last_input_tokens = finished.input_tokens  # how full the context is
            usage = call_usage(model, finished, self._prices)
            add_usage(run, usage)
            if finished is not None:
                self._observer.tokens(model, finished.input_tokens, finished.output_tokens)
            # Every model that failed counts, the ones a fallback stood in for too.
            for failed in [*stream.fallback_errors, *filter(None, [stream.error])]:
                provider = failed.metadata.get("provider", "unknown")
                self._observer.provider_error(provider, failed.reason)
            error: AichatError | None = None
            if stream.stopped and not stream.done:
                stream.cancel()
                error = Unavailable(
                    "the server is shutting down; the partial answer was stored: send the "
                    "next message again (another replica will take it)",
                    reason=Reason.SERVER_SHUTTING_DOWN,
                    retry_after=1.0,
                )
                outcome = TurnOutcome.CANCELLED
            elif stream.error is not None:
                outcome, error = TurnOutcome.FAILED, stream.error
                if run.context is not None and self._planner.retries(run, stream.error):
                    # Too long for the provider: one compaction, one retry.
                    try:
                        async for compacted in self._planner.after_refusal(run, stream.error):
                            yield compacted
                        run.stream = self.open_stream(run)
                        continue
                    except InvalidArgument as exc:
                        error = exc
            elif finished is None:
                outcome = TurnOutcome.FAILED
                error = Internal(
                    "the model's answer ended unexpectedly",
                    reason=Reason.PROVIDER_STREAM_INTERRUPTED,
                )
            elif stream.tool_calls and run.calls_client(stream.tool_calls):
                # The caller's own functions: the turn ends, handing the calls back.
                async for event in self._return_calls(run, stream, usage):
                    yield event
                return
            elif stream.tool_calls and run.tools:
                async for event in self._tool_round(run, stream, usage):
                    yield event
                if run.stream is stream:  # the round ended the turn (approval asked)
                    return
                continue
            else:
                outcome = TurnOutcome.COMPLETED
            async for event in self._end(run, outcome, error, stream, usage):
                yield event
            return

    async def _end(
        self,
        run: TurnRun,
        outcome: TurnOutcome,
        error: AichatError | None,
        stream: RoundStream,
        usage: Usage | None,
    ) -> AsyncGenerator[TurnEvent, None]:
        completed = outcome is TurnOutcome.COMPLETED
        m = run.message
        m.text = stream.text
        m.state = MessageState.COMPLETE if completed else MessageState.INCOMPLETE
        m.finish_reason = (
            stream.finished.finish_reason if completed and stream.finished else outcome.value
        )
        m.reasoning = list(stream.reasoning())
        set_usage(m, usage)
        m.model = answered_by(run, stream)

        run.finalized = True
        stored = await self._final.land(run, m, usage)
        if stored is not None:  # the database is away: the turn failed, the answer is kept
            outcome, error = TurnOutcome.FAILED, stored
        run.ended = True
        yield turn_ended(run, outcome, error)

    async def _return_calls(
        self, run: TurnRun, stream: RoundStream, usage: Usage | None
    ) -> AsyncGenerator[TurnEvent, None]:
        """A round that called the caller's own functions: stored with its calls, which go
        back to the caller (RETURNED); the turn is complete (finish reason "tool_calls")."""
        calls = returned_calls(run, stream.tool_calls)
        run.message.tool_calls = calls
        run.message.text = stream.text
        await self._store.store_tool_round(run.user_id, run.session_id, run.message, calls, None)
        for call in calls:
            yield ToolCallUpdate(call)
        async for event in self._end(run, TurnOutcome.COMPLETED, None, stream, usage):
            yield event

    async def _tool_round(
        self, run: TurnRun, stream: RoundStream, usage: Usage | None
    ) -> AsyncGenerator[TurnEvent, None]:
        """Store the calls, run the allowed ones, then ask approval or start the next round."""
        m = run.message
        m.text, m.model, m.finish_reason = stream.text, answered_by(run, stream), "tool_calls"
        m.reasoning = list(stream.reasoning())
        set_usage(m, usage)
        calls: list[ToolCall] = []
        runnable: list[tuple[ToolCall, ToolInfo]] = []
        for request in stream.tool_calls:
            info = run.tools.get(request.name)
            # Model-chosen strings are cut to what their columns hold.
            call = ToolCall(
                id=(request.id or f"call_{uuid.uuid4().hex[:12]}")[:128],
                tool_name=request.name[:128],
                arguments=dict(request.arguments),
                state=ToolCallState.RUNNING,
                server=info.server if info else "",
            )
            reason = info.approval_reason() if info else None
            if info is None:
                call.state, call.is_error = ToolCallState.FAILED, True
                call.result_text = f"unknown tool {request.name!r}: it is not offered here"
            elif reason is not None:
                # Whatever the model read (tool output included), only the user approves.
                call.state, call.approval_reason = ToolCallState.PENDING_APPROVAL, reason
            else:
                runnable.append((call, info))
            calls.append(call)
        m.tool_calls = calls
        await self._store.store_tool_round(run.user_id, run.session_id, m, calls, usage)
        for call in calls:
            if call.state is not ToolCallState.RUNNING:  # runnable ones report as they start
                yield ToolCallUpdate(call)
        async for event in self.run_tools(run, runnable):
            yield event
        pending = [c for c in calls if c.state is ToolCallState.PENDING_APPROVAL]
        if pending:
            async for event in self.await_approval(run, pending):
                yield event
            return
        await self._next_round(run, stream, calls)

    async def run_tools(
        self, run: TurnRun, runnable: list[tuple[ToolCall, ToolInfo]]
    ) -> AsyncGenerator[TurnEvent, None]:
        """Run the round's allowed calls, storing each result as it ends."""
        if not runnable or self._tools is None:
            return
        for call, _ in runnable:
            call.state = ToolCallState.RUNNING
            yield ToolCallUpdate(call)
        async for event in run_calls(
            self._tools,
            runnable,
            user_id=run.user_id,
            timeout=self._tool_timeout(run),
            heartbeat=self._config.heartbeat_seconds,
            started=run.started,
            observer=self._observer,
        ):
            if isinstance(event, ToolCallUpdate):
                await self._store.update_call(run.user_id, run.message.id, event.call)
            yield event

    async def await_approval(
        self, run: TurnRun, pending: list[ToolCall]
    ) -> AsyncGenerator[TurnEvent, None]:
        """End the turn waiting for the user's decisions on ``pending``."""
        run.finalized = True
        run.message.state = MessageState.COMPLETE
        await self._store.end_for_approval(run.user_id, run.session_id, run.turn_id, run.message)
        yield ApprovalRequired(pending)
        run.ended = True
        yield turn_ended(run, TurnOutcome.AWAITING_APPROVAL, pending=pending)

    async def _next_round(self, run: TurnRun, stream: RoundStream, calls: list[ToolCall]) -> None:
        m = run.message
        m.state = MessageState.COMPLETE  # its calls have run
        placeholder, _ = await self._store.next_round(run.user_id, run.session_id, m, run.model)
        run.rounds += 1
        # The round's reasoning goes back with its calls (Anthropic checks its signatures).
        messages = [*run.request.messages, assistant_message(stream.text, calls, m.reasoning)]
        messages += [tool_result_message(c) for c in calls]
        tools = run.offered_specs()
        if run.rounds >= self._config.max_tool_rounds:
            tools = ()
            messages.append(ChatMessage(role=ChatRole.USER, text=NO_MORE_TOOLS))
        run.request = dataclasses.replace(run.request, messages=tuple(messages), tools=tools)
        run.message = placeholder
        run.answers.append(placeholder.name)
        self._observer.round_started(run.turn_id, placeholder.id)
        run.stream = self.open_stream(run)

    def _tool_timeout(self, run: TurnRun) -> float:
        timeout = self._config.tool_timeout_seconds
        if run.deadline is not None:
            # Never past the caller's deadline: leave a moment to report the result.
            timeout = min(timeout, max(0.1, run.deadline - time.monotonic() - 0.2))
        return timeout
