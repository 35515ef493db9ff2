"""OpenAI Chat Completions: error bodies, SSE ``data:`` chunks and the whole reply."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from aichat_devtools.fake_llm.http_wire import dumps
from aichat_devtools.fake_llm.script import Piece, Script, finish_reason
from aichat_devtools.fake_llm.thinking import Signer

if TYPE_CHECKING:
    from aichat_devtools.fake_llm.upstream_rules import Metered

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


class OpenAIFormat:
    request_id_header = "x-request-id"

    def __init__(
        self, script: Script, body: Any, pieces: list[Piece], metered: Metered, _signer: Signer
    ) -> None:
        self.script = script
        self.pieces = pieces
        self.model = str(body.get("model", "fake-model"))
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        options = body.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        self.metered = metered
        # Text chunks are the hot path of a benchmark: splice the token into a template.
        usage_null = ',"usage":null' if self.include_usage else ""
        model = json.dumps(self.model)
        self._text_prefix = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk",'
            f'"created":{self.created},"model":{model},'
            '"service_tier":"default","system_fingerprint":"fp_fake",'
            '"choices":[{"index":0,"delta":{"content":'
        )
        self._text_suffix = '},"logprobs":null,"finish_reason":null}]' + usage_null + "}\n\n"

    def error(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        default_type, code = _OPENAI_ERRORS.get(status, ("server_error", None))
        return {
            "error": {
                "message": message,
                "type": error_type or default_type,
                "param": None,
                "code": code,
            }
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return f"data: {dumps(chunk)}\n\n".encode()

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def piece(self, piece: Piece) -> bytes:
        if piece.text is not None:
            return (self._text_prefix + json.dumps(piece.text) + self._text_suffix).encode()
        if piece.reasoning is not None:
            # DeepSeek's shape: no content while it reasons, the text in its own field.
            return self._chunk({"content": None, self.script.reasoning_field: piece.reasoning})
        call: dict[str, Any] = {"index": piece.tool_index}
        if piece.tool_first:
            call_id, name, _args = self.script.tool_calls[piece.tool_index]
            call.update(id=call_id, type="function", function={"name": name, "arguments": ""})
            head = self._chunk({"tool_calls": [call]})
            call = {"index": piece.tool_index}
        else:
            head = b""
        call["function"] = {"arguments": piece.args}
        return head + self._chunk({"tool_calls": [call]})

    def end(self) -> bytes:
        out = self._chunk({}, finish_reason(self.script))
        if self.include_usage:
            usage = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": self._usage(),
            }
            out += f"data: {dumps(usage)}\n\n".encode()
        return out + b"data: [DONE]\n\n"

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return f"data: {dumps(self.error(status, message, error_type))}\n\n".encode()

    def whole(self) -> dict[str, Any]:
        text = "".join(p.text for p in self.pieces if p.text is not None)
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        thought = "".join(p.reasoning for p in self.pieces if p.reasoning is not None)
        if thought:
            message[self.script.reasoning_field] = thought
        if self.script.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
                for call_id, name, args in self.script.tool_calls
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(self.script),
                }
            ],
            "usage": self._usage(),
            "system_fingerprint": "fp_fake",
        }

    def _usage(self) -> dict[str, Any]:
        """OpenAI's usage object, with what was read from the cache and spent reasoning."""
        m = self.metered
        return {
            "prompt_tokens": m.input_tokens,
            "completion_tokens": m.output_tokens,
            "total_tokens": m.input_tokens + m.output_tokens,
            "prompt_tokens_details": {"cached_tokens": m.cache_read, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": m.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
