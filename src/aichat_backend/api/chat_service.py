"""ChatService: requests become engine turns, engine events become stream messages."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Protocol

import grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc
from google.protobuf import json_format

from aichat_backend.api import convert
from aichat_backend.api.models_pb import models_to_pb
from aichat_backend.api.turn_events import OUTCOME_TO_PB, usage_pb
from aichat_backend.api.turn_limits import NO_LIMITS, TurnGate, TurnLimits
from aichat_backend.api.turn_stream import TurnRecorder, TurnStreams, after_seq, resume
from aichat_backend.engine import events as ev
from aichat_backend.engine.approvals import Decision
from aichat_backend.engine.chat import ChatEngine, ResolveRequest, TurnRequest
from aichat_backend.errors import Internal
from aichat_backend.providers.model_check import ModelChecker
from aichat_backend.reasons import Reason
from aichat_backend.request_context import current_user


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


# The two requests of a turn are field-for-field the same message on the wire (a stream
# and a unary form); this is their one conversion (tests/unit/test_turn_requests.py
# keeps the two in step).
TurnMessage = cpb.StreamChatRequest | cpb.SendMessageRequest


def turn_request(
    request: TurnMessage,
    context: grpc.aio.ServicerContext,
    relay_text: bool = True,
    turn_id: str = "",
) -> TurnRequest:
    options = request.options
    return TurnRequest(
        user_id=current_user(),
        session=request.session,
        text=request.text,
        attachments=[(a.filename, a.mime_type, a.content) for a in request.attachments],
        model=options.model,
        temperature=options.temperature if options.HasField("temperature") else None,
        max_output_tokens=max(options.max_output_tokens, 0),
        memory_limit=options.memory_limit,
        request_id=request.request_id,
        deadline=_deadline(context),
        relay_text=relay_text,
        turn_id=turn_id,
        reasoning_effort=options.reasoning_effort or None,
        thinking_budget_tokens=(
            options.thinking_budget_tokens if options.HasField("thinking_budget_tokens") else None
        ),
    )


def resolve_request(
    request: cpb.ResolveToolCallsRequest,
    context: grpc.aio.ServicerContext,
    turn_id: str = "",
) -> ResolveRequest:
    return ResolveRequest(
        user_id=current_user(),
        session=request.session,
        decisions=[
            Decision(
                tool_call_id=d.tool_call_id,
                approved=d.approved,
                edited_arguments=(
                    json_format.MessageToDict(d.edited_arguments)
                    if d.HasField("edited_arguments")
                    else None
                ),
                reason=d.reason,
            )
            for d in request.decisions
        ],
        request_id=request.request_id,
        deadline=_deadline(context),
        turn_id=turn_id,
    )


class ChatServicer(chat_service_pb2_grpc.ChatServiceServicer):
    def __init__(
        self,
        engine: ChatEngine,
        limits: TurnLimits | None = None,
        streams: StreamGauge | None = None,
        model_checks: ModelChecker | None = None,
        *,
        turns: TurnStreams,
    ) -> None:
        self._engine = engine
        self._model_checks = model_checks
        self._limits: TurnGate = limits if limits is not None else NO_LIMITS
        self._streams = streams
        self._turns = turns

    # The streaming methods return the response generator rather than being generators
    # themselves: one layer less that every message of every held stream passes through.
    def StreamChat(
        self, request: cpb.StreamChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        # Numbered, named and logged; detached turns run on without the caller.
        turns, options = self._turns, request.options
        recorder = turns.recorder(request.session)
        req = turn_request(request, context, turn_id=recorder.turn_id)
        if turns.detach(options.detached if options.HasField("detached") else None):
            req.deadline = turns.detached.deadline()
            return turns.detached.run(self._engine.stream_turn(req), recorder, current_user())
        return _stream(self._engine.stream_turn(req), self._limits, self._streams, recorder)

    def ResolveToolCalls(
        self, request: cpb.ResolveToolCallsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        # As StreamChat.
        turns = self._turns
        recorder = turns.recorder(request.session)
        req = resolve_request(request, context, turn_id=recorder.turn_id)
        if turns.detach(request.detached if request.HasField("detached") else None):
            req.deadline = turns.detached.deadline()
            return turns.detached.run(self._engine.resolve(req), recorder, current_user())
        return _stream(self._engine.resolve(req), self._limits, self._streams, recorder)

    def StreamTurnEvents(
        self, request: cpb.StreamTurnEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        after = after_seq(request, tuple(context.invocation_metadata() or ()))  # type: ignore[arg-type]
        return resume(self._turns.reader, current_user(), request, after)

    async def SendMessage(
        self, request: cpb.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> cpb.SendMessageResponse:
        # The answer is returned whole: no delta per token on the way.
        turn = self._engine.stream_turn(turn_request(request, context, relay_text=False))
        async with self._limits.turn(current_user()) as slot, aclosing(turn) as events:
            async for event in events:
                if not isinstance(event, ev.TurnEnded):
                    continue
                await slot.count(event)
                if event.error is not None:
                    raise event.error
                response = cpb.SendMessageResponse(
                    message=convert.message_to_pb(event.message),
                    usage=usage_pb(event),
                    outcome=OUTCOME_TO_PB[event.outcome],
                    pending_tool_calls=[convert.tool_call_to_pb(c) for c in event.pending],
                )
                if event.user_message is not None:
                    response.user_message.CopyFrom(convert.message_to_pb(event.user_message))
                return response
        raise Internal("the turn ended without a result", reason=Reason.TURN_WITHOUT_RESULT)

    async def ListModels(
        self, request: cpb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ListModelsResponse:
        return cpb.ListModelsResponse(
            models=models_to_pb(self._engine.catalogue, self._model_checks)
        )


class StreamGauge(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...


async def _stream(
    events: AsyncGenerator[ev.TurnEvent, None],
    limits: TurnGate,
    gauge: StreamGauge | None,
    recorder: TurnRecorder,
) -> AsyncIterator[cpb.StreamChatResponse]:
    """A turn's events as stream messages, numbered, named and logged (the recorder),
    inside the user's limits: one generator per held stream (the limits are a slot around
    it, not a layer of their own)."""
    if gauge is not None:
        gauge.inc()
    try:
        async with limits.turn(current_user()) as slot, aclosing(events):
            async for event in events:
                if isinstance(event, ev.TurnEnded):
                    await slot.count(event)
                    yield recorder.record(event)
                    if event.error is not None:
                        # gRPC clients also see the failure as the RPC's status.
                        raise event.error
                    continue
                yield recorder.record(event)
    except Exception as exc:
        recorder.failed(exc)  # the log's last event says why
        raise
    finally:
        if gauge is not None:
            gauge.dec()
