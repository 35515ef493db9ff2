"""OpenAI's response formats: ``chat.completion``, ``chat.completion.chunk`` and SSE framing.

A streamed completion is ``data: {chunk}`` events, the first with the assistant's role,
then one per delta, one with ``finish_reason``, one with ``usage`` (only when the request
asked ``stream_options.include_usage``; then every chunk carries ``"usage": null``), and
``data: [DONE]``. A chunk is a fixed head (id, object, created, model) written once and
the delta's JSON after it: a relayed token costs one ``json.dumps`` of its text.

What aichat adds rides in an ``aichat`` object on the completion (and on the chunk that
finishes a stream): the session and turn the answer is stored under, how the turn ended,
and the tool calls waiting for the user's approval. The SDKs keep fields they do not
know (``completion.model_extra["aichat"]`` in Python).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aichat_backend.providers.tool_arguments import arguments_json

DONE = b"data: [DONE]\n\n"
# An SSE comment: clients skip it; it keeps Envoy and proxies from calling the stream idle.
KEEPALIVE = b": keep-alive\n\n"

# Compact, as OpenAI writes it.
_dumps = partial(json.dumps, separators=(",", ":"))


@dataclass(slots=True)
class ReturnedCall:
    """A call of the caller's own function, as the response hands it back."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments_json(self.arguments)},
        }


@dataclass(slots=True)
class Extension:
    """The ``aichat`` object: where the turn is stored and how it ended."""

    session: str
    turn: str = ""
    outcome: str = "completed"
    pending: list[ReturnedCall] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"session": self.session, "turn": self.turn, "outcome": self.outcome}
        if self.pending:
            out["pending_tool_calls"] = [c.to_json() for c in self.pending]
        return out


def approval_note(pending: Sequence[ReturnedCall], session: str) -> str:
    """What a client that shows only the content learns of a turn waiting for approval."""
    calls = ", ".join(f"{c.name} (call {c.id})" for c in pending)
    session_id = session.removeprefix("sessions/")
    return (
        f"\n\n[aichat] Waiting for your approval of {calls}: approve or deny it in the web "
        f"chat (/web/#session={session_id}) or with ResolveToolCalls on {session}."
    )


def usage_json(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion(
    completion_id: str,
    created: int,
    model: str,
    text: str,
    calls: Sequence[ReturnedCall],
    finish_reason: str,
    usage: dict[str, int],
    extension: Extension,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = [c.to_json() for c in calls]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage,
        "aichat": extension.to_json(),
    }


class Chunks:
    """The ``data:`` events of one streamed completion."""

    __slots__ = ("_head", "_tail")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._head = (
            f'data: {{"id":{_dumps(completion_id)},"object":"chat.completion.chunk",'
            f'"created":{created},"model":{_dumps(model)},"choices":[{{"index":0,"delta":'
        ).encode()
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def role(self) -> bytes:
        return self._choice(b'{"role":"assistant","content":""}', b"null")

    def content(self, text: str) -> bytes:
        return self._choice(b'{"content":' + _dumps(text).encode() + b"}", b"null")

    def tool_calls(self, calls: Sequence[ReturnedCall]) -> bytes:
        deltas = [{"index": i, **c.to_json()} for i, c in enumerate(calls)]
        return self._choice(_dumps({"tool_calls": deltas}).encode(), b"null")

    def finish(self, reason: str, extension: Extension) -> bytes:
        """The chunk with the finish reason (and aichat's extension object)."""
        head = self._head[: -len(b'"choices":[{"index":0,"delta":')]
        body = (
            head
            + b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":'
            + _dumps(reason).encode()
            + b'}],"aichat":'
            + _dumps(extension.to_json()).encode()
        )
        return body + self._tail

    def usage(self, usage: dict[str, int]) -> bytes:
        head = self._head[: -len(b'"choices":[{"index":0,"delta":')]
        return head + b'"choices":[],"usage":' + _dumps(usage).encode() + b"}\n\n"

    def _choice(self, delta: bytes, finish: bytes) -> bytes:
        return (
            self._head + delta + b',"logprobs":null,"finish_reason":' + finish + b"}]" + self._tail
        )
