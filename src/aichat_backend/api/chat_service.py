"""ChatService: requests become engine turns, engine events become stream messages."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Protocol

import grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc
from google.protobuf import empty_pb2

from aichat_backend import names
from aichat_backend.api import convert
from aichat_backend.api.models_pb import models_to_pb
from aichat_backend.api.turn_events import OUTCOME_TO_PB, usage_pb
from aichat_backend.api.turn_limits import NO_LIMITS, TurnGate, TurnLimits
from aichat_backend.api.turn_requests import (
    resolve_request,
    session_of,
    turn_request,
)
from aichat_backend.api.turn_stream import (
    TurnRecorder,
    TurnStreams,
    after_seq,
    join,
    joined_turn,
    resume,
)
from aichat_backend.engine import events as ev
from aichat_backend.engine.chat import ChatEngine, TurnRequest
from aichat_backend.errors import AichatError, Internal
from aichat_backend.providers.model_check import ModelChecker
from aichat_backend.reasons import Reason
from aichat_backend.request_context import current_user


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
        return _stream(self._engine.stream_turn(req), self._limits, self._streams, recorder, turns)

    def RegenerateAnswer(
        self, request: cpb.RegenerateAnswerRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        # A StreamChat turn whose user message is one stored already (engine/turn_branch).
        options = request.options
        recorder = self._turns.recorder(session_of(request.name))
        req = turn_request(
            cpb.StreamChatRequest(options=options, request_id=request.request_id),
            context,
            turn_id=recorder.turn_id,
        )
        req.regenerate = request.name
        return self._run(req, recorder, options)

    def EditMessage(
        self, request: cpb.EditMessageRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        # A StreamChat turn hung beside the edited message instead of after the last one.
        options = request.options
        recorder = self._turns.recorder(session_of(request.name))
        chat = cpb.StreamChatRequest(
            text=request.text,
            attachments=request.attachments,
            options=options,
            request_id=request.request_id,
        )
        req = turn_request(chat, context, turn_id=recorder.turn_id)
        req.edit_of, req.drop_attachments = request.name, request.drop_attachments
        return self._run(req, recorder, options)

    def _run(
        self, req: TurnRequest, recorder: TurnRecorder, options: cpb.ChatOptions
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        turns = self._turns
        if turns.detach(options.detached if options.HasField("detached") else None):
            req.deadline = turns.detached.deadline()
            return turns.detached.run(self._engine.stream_turn(req), recorder, current_user())
        return _stream(self._engine.stream_turn(req), self._limits, self._streams, recorder, turns)

    def run_turn(
        self, req: TurnRequest, recorder: TurnRecorder
    ) -> AsyncGenerator[cpb.StreamChatResponse, None]:
        """A turn as StreamChat runs it when its caller stays (limits, the stream gauge, the
        numbered and logged events), for the other doors onto it (the OpenAI-compatible API)."""
        return _stream(
            self._engine.stream_turn(req), self._limits, self._streams, recorder, self._turns
        )

    @property
    def turns(self) -> TurnStreams:
        return self._turns

    @property
    def engine(self) -> ChatEngine:
        return self._engine

    def ResolveToolCalls(
        self, request: cpb.ResolveToolCallsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        # As StreamChat. Its first answer is the round it resumes, which does not carry the
        # turn's id: nothing of it is sent before its log row is stored (see TurnRecorder).
        turns = self._turns
        recorder = turns.recorder(request.session, send_ahead=False)
        req = resolve_request(request, context, turn_id=recorder.turn_id)
        if turns.detach(request.detached if request.HasField("detached") else None):
            req.deadline = turns.detached.deadline()
            return turns.detached.run(self._engine.resolve(req), recorder, current_user())
        return _stream(self._engine.resolve(req), self._limits, self._streams, recorder, turns)

    def StreamTurnEvents(
        self, request: cpb.StreamTurnEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        after = after_seq(request, tuple(context.invocation_metadata() or ()))  # type: ignore[arg-type]
        return resume(self._turns.reader, current_user(), request, after)

    async def CancelTurn(
        self, request: cpb.CancelTurnRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        turn = names.parse_turn(request.name, "name")
        name = names.turn(turn.session_id, turn.turn_id)
        await self._turns.cancels.cancel(current_user(), turn.session_id, turn.turn_id, name)
        return empty_pb2.Empty()

    async def SendMessage(
        self, request: cpb.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> cpb.SendMessageResponse:
        try:
            return await self._send_message(request, context)
        except AichatError as exc:
            turn = joined_turn(exc)
            if not turn:
                raise
        # The same request runs already (its request_id): wait for that turn's end, then
        # answer with its stored result, as a retry after it would get.
        with contextlib.suppress(AichatError):  # a failed turn: its result says so
            async for _ in join(self._turns.reader, current_user(), turn):
                pass
        return await self._send_message(request, context)

    async def _send_message(
        self, request: cpb.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> cpb.SendMessageResponse:
        # The answer is returned whole: no delta per token on the way. A turn that names a
        # request_id is logged too (its events are few), so a duplicate can wait for it.
        recorder = self._turns.recorder(request.session) if request.request_id else None
        req = turn_request(
            request, context, relay_text=False, turn_id=recorder.turn_id if recorder else ""
        )
        turn = self._engine.stream_turn(req)
        try:
            async with self._limits.turn(current_user()) as slot, aclosing(turn) as events:
                async for event in events:
                    if recorder is not None:
                        recorder.record(event)
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
        except Exception as exc:
            if recorder is not None:
                recorder.failed(exc)
            raise
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
    turns: TurnStreams,
) -> AsyncGenerator[cpb.StreamChatResponse, None]:
    """A turn's events as stream messages, numbered, named and logged (the recorder),
    inside the user's limits: one generator per held stream (the limits are a slot around
    it, not a layer of their own). An event is sent once its log may have sent it (see
    ``SEND_AHEAD``): at once, unless the database holds the log's flushes back."""
    if gauge is not None:
        gauge.inc()
    joined = ""
    try:
        async with limits.turn(current_user()) as slot, aclosing(events):
            async for event in events:
                if isinstance(event, ev.TurnEnded):
                    await slot.count(event)
                    out = recorder.record(event)
                    yield (
                        out if out.sequence <= recorder.seq_limit else await recorder.sendable(out)
                    )
                    if event.error is not None:
                        # gRPC clients also see the failure as the RPC's status.
                        raise event.error
                    continue
                out = recorder.record(event)
                yield out if out.sequence <= recorder.seq_limit else await recorder.sendable(out)
    except Exception as exc:
        # A duplicate of a running turn's request (its request_id) reads that turn.
        joined = joined_turn(exc) if recorder.seq == 0 else ""
        if not joined:
            recorder.failed(exc)  # the log's last event says why
            raise
    finally:
        if gauge is not None:
            gauge.dec()
    if joined:
        async for out in join(turns.reader, current_user(), joined):
            yield out
