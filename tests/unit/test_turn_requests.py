"""StreamChatRequest and SendMessageRequest are one request in two forms (stream, unary).

The servicer converts both through one function (``chat_service.turn_request``); this
keeps the two messages field-for-field the same, so a field added to one cannot be
silently dropped by that single path.
"""

from __future__ import annotations

import contextvars

import grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb

from aichat_backend.api.chat_service import turn_request
from aichat_backend.engine.chat import TurnRequest
from aichat_backend.request_context import bind


def _shape(descriptor: object) -> list[tuple[str, int, int, str]]:
    return [
        (f.name, f.number, f.type, f.message_type.full_name if f.message_type else "")
        for f in descriptor.fields  # type: ignore[attr-defined]
    ]


def test_both_requests_have_the_same_fields() -> None:
    assert _shape(cpb.StreamChatRequest.DESCRIPTOR) == _shape(cpb.SendMessageRequest.DESCRIPTOR)


class _Context:
    def time_remaining(self) -> float | None:
        return None


def test_both_requests_become_the_same_turn() -> None:
    fields = {
        "session": "sessions/s1",
        "text": "hello",
        "attachments": [rpb.Attachment(filename="a.txt", mime_type="text/plain", content=b"x")],
        "options": cpb.ChatOptions(model="m", temperature=0.5, max_output_tokens=7, memory_limit=3),
        "request_id": "r1",
    }
    context: grpc.aio.ServicerContext = _Context()  # type: ignore[assignment]

    def convert() -> tuple[TurnRequest, TurnRequest]:
        bind("u1", "req", "test")
        stream = turn_request(cpb.StreamChatRequest(**fields), context)
        return stream, turn_request(cpb.SendMessageRequest(**fields), context)

    stream, unary = contextvars.copy_context().run(convert)
    stream.received = unary.received
    assert stream == unary
    assert (stream.user_id, stream.session, stream.model, stream.temperature) == (
        "u1",
        "sessions/s1",
        "m",
        0.5,
    )
    assert stream.attachments == [("a.txt", "text/plain", b"x")]
