"""Anthropic Messages: error bodies, ``event:``/``data:`` SSE pairs and the whole reply."""

from __future__ import annotations

import uuid
from typing import Any

from aichat_devtools.fake_llm.http_wire import dumps
from aichat_devtools.fake_llm.script import Piece, Script, finish_reason, usage

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


class AnthropicFormat:
    request_id_header = "request-id"

    def __init__(self, script: Script, body: Any, pieces: list[Piece]) -> None:
        self.script = script
        self.pieces = pieces
        self.model = str(body.get("model", "fake-model"))
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.usage = usage(script, body, pieces)
        self.block = -1  # index of the open content block, -1 before the first
        self.block_is_text = False

    @staticmethod
    def _event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {dumps(data)}\n\n".encode()

    def error(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        default_type = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type or default_type, "message": message}}

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.usage[0],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        return self._event("message_start", {"type": "message_start", "message": message}) + (
            self._event("ping", {"type": "ping"})
        )

    def _stop_block(self) -> bytes:
        if self.block < 0:
            return b""
        return self._event(
            "content_block_stop", {"type": "content_block_stop", "index": self.block}
        )

    def piece(self, piece: Piece) -> bytes:
        out = b""
        if piece.text is not None:
            if not self.block_is_text or self.block < 0:
                out += self._stop_block()
                self.block += 1
                self.block_is_text = True
                out += self._event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": self.block,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            delta: dict[str, Any] = {"type": "text_delta", "text": piece.text}
        else:
            if piece.tool_first:
                out += self._stop_block()
                self.block += 1
                self.block_is_text = False
                call_id, name, _args = self.script.tool_calls[piece.tool_index]
                out += self._event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": self.block,
                        "content_block": {
                            "type": "tool_use",
                            "id": call_id,
                            "name": name,
                            "input": {},
                        },
                    },
                )
            delta = {"type": "input_json_delta", "partial_json": piece.args}
        return out + self._event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self.block, "delta": delta},
        )

    def end(self) -> bytes:
        stop_reason = _ANTHROPIC_STOP.get(finish_reason(self.script), "end_turn")
        return (
            self._stop_block()
            + self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": self.usage[1]},
                },
            )
            + self._event("message_stop", {"type": "message_stop"})
        )

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return self._event("error", self.error(status, message, error_type))

    def whole(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        text = "".join(p.text for p in self.pieces if p.text is not None)
        if text:
            content.append({"type": "text", "text": text})
        content += [
            {"type": "tool_use", "id": call_id, "name": name, "input": args}
            if isinstance(args, dict)
            else {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            for call_id, name, args in self.script.tool_calls
        ]
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": _ANTHROPIC_STOP.get(finish_reason(self.script), "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": self.usage[0], "output_tokens": self.usage[1]},
        }
