"""ChatService's requests as the engine's: a turn (StreamChat, SendMessage, and the
tree's RegenerateAnswer and EditMessage, which are StreamChat turns hung elsewhere) and a
resolution of tool calls."""

from __future__ import annotations

import time

import grpc
from aichat.v1 import chat_service_pb2 as cpb
from google.protobuf import json_format

from aichat_backend.engine.approvals import Decision
from aichat_backend.engine.chat import ResolveRequest, TurnRequest
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


def session_of(message_name: str) -> str:
    """The session of a message's name, for naming its turn before the request is checked
    (a malformed name is refused by the engine's check, with the field it belongs to)."""
    parts = message_name.split("/")
    return "/".join(parts[:2]) if len(parts) == 4 and parts[2] == "messages" else ""


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
