"""Anthropic Messages: error bodies, ``event:``/``data:`` SSE pairs and the whole reply."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aichat_devtools.fake_llm.http_wire import dumps
from aichat_devtools.fake_llm.script import Piece, Script, finish_reason
from aichat_devtools.fake_llm.thinking import Signer

if TYPE_CHECKING:
    from aichat_devtools.fake_llm.upstream_rules import Metered

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

    def __init__(
        self, script: Script, body: Any, pieces: list[Piece], metered: Metered, signer: Signer
    ) -> None:
        self.script = script
        self.pieces = pieces
        self.model = str(body.get("model", "fake-model"))
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.metered = metered
        self.signer = signer
        self.block = -1  # index of the open content block, -1 before the first
        self.block_kind = ""  # "text", "thinking", "tool", or "" once closed
        self.thinking: list[str] = []  # the open thinking block's text, for its signature

    @staticmethod
    def _event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {dumps(data)}\n\n".encode()

    def error(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        default_type = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type or default_type, "message": message}}

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        """Anthropic's split: ``input_tokens`` is what came after the last cache point."""
        m = self.metered
        usage: dict[str, Any] = {
            "input_tokens": m.input_tokens - m.cache_read - m.cache_write,
            "cache_creation_input_tokens": m.cache_write,
            "cache_read_input_tokens": m.cache_read,
            "output_tokens": output_tokens,
        }
        if m.reasoning_tokens and output_tokens == m.output_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": m.reasoning_tokens}
        return usage

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(1),
        }
        return self._event("message_start", {"type": "message_start", "message": message}) + (
            self._event("ping", {"type": "ping"})
        )

    def _stop_block(self) -> bytes:
        if not self.block_kind:
            return b""
        out = b""
        if self.block_kind == "thinking":
            # The signature comes last, just before the block ends, as the real API's.
            delta = {
                "type": "signature_delta",
                "signature": self.signer.sign("".join(self.thinking)),
            }
            out = self._delta(delta)
            self.thinking = []
        self.block_kind = ""
        return out + self._event(
            "content_block_stop", {"type": "content_block_stop", "index": self.block}
        )

    def _start_block(self, kind: str, content_block: dict[str, Any]) -> bytes:
        out = self._stop_block()
        self.block += 1
        self.block_kind = kind
        return out + self._event(
            "content_block_start",
            {"type": "content_block_start", "index": self.block, "content_block": content_block},
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self.block, "delta": delta},
        )

    def piece(self, piece: Piece) -> bytes:
        out = b""
        if piece.redacted is not None:
            data = self.signer.redacted_data(piece.redacted)
            out = self._start_block("redacted", {"type": "redacted_thinking", "data": data})
            return out + self._stop_block()
        if piece.reasoning is not None:
            if self.block_kind != "thinking":
                out = self._start_block(
                    "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                )
            self.thinking.append(piece.reasoning)
            return out + self._delta({"type": "thinking_delta", "thinking": piece.reasoning})
        if piece.text is not None:
            if self.block_kind != "text":
                out = self._start_block("text", {"type": "text", "text": ""})
            return out + self._delta({"type": "text_delta", "text": piece.text})
        if piece.tool_first:
            call_id, name, _args = self.script.tool_calls[piece.tool_index]
            out = self._start_block(
                "tool", {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            )
        return out + self._delta({"type": "input_json_delta", "partial_json": piece.args})

    def end(self) -> bytes:
        stop_reason = _ANTHROPIC_STOP.get(finish_reason(self.script), "end_turn")
        return (
            self._stop_block()
            + self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": self._usage(self.metered.output_tokens),
                },
            )
            + self._event("message_stop", {"type": "message_stop"})
        )

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return self._event("error", self.error(status, message, error_type))

    def whole(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        thought = "".join(p.reasoning for p in self.pieces if p.reasoning is not None)
        if thought:
            signature = self.signer.sign(thought)
            content.append({"type": "thinking", "thinking": thought, "signature": signature})
        content += [
            {"type": "redacted_thinking", "data": self.signer.redacted_data(p.redacted)}
            for p in self.pieces
            if p.redacted is not None
        ]
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
            "usage": self._usage(self.metered.output_tokens),
        }
