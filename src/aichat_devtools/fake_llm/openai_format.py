"""OpenAI Chat Completions: error bodies, SSE ``data:`` chunks and the whole reply."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aichat_devtools.fake_llm.http_wire import dumps
from aichat_devtools.fake_llm.script import Piece, Script, finish_reason, usage

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

    def __init__(self, script: Script, body: Any, pieces: list[Piece]) -> None:
        self.script = script
        self.pieces = pieces
        self.model = str(body.get("model", "fake-model"))
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        options = body.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        self.usage = usage(script, body, pieces)
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
            prompt, completion = self.usage
            usage = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
            out += f"data: {dumps(usage)}\n\n".encode()
        return out + b"data: [DONE]\n\n"

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return f"data: {dumps(self.error(status, message, error_type))}\n\n".encode()

    def whole(self) -> dict[str, Any]:
        text = "".join(p.text for p in self.pieces if p.text is not None)
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
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
        prompt, completion = self.usage
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
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            "system_fingerprint": "fp_fake",
        }
