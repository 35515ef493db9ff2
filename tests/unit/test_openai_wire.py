"""The OpenAI-compatible API's formats, byte for byte where the SDKs read them."""

from __future__ import annotations

import json

from aichat_backend.api.openai_compat.errors import HTTP_STATUS, openai_error
from aichat_backend.api.openai_compat.wire import DONE, Chunks, Extension, ReturnedCall
from aichat_backend.errors import ErrorKind, NotFound, ResourceExhausted
from aichat_backend.reasons import Reason


def _event(raw: bytes) -> dict[str, object]:
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    parsed: dict[str, object] = json.loads(raw[len(b"data: ") : -2])
    return parsed


def test_every_error_kind_has_the_http_code_the_sdks_map() -> None:
    assert set(HTTP_STATUS) == set(ErrorKind)
    assert HTTP_STATUS[ErrorKind.RESOURCE_EXHAUSTED] == 429
    assert HTTP_STATUS[ErrorKind.UNAVAILABLE] == 503


def test_an_error_is_openais_json_with_retry_after() -> None:
    err = openai_error(
        ResourceExhausted("slow down", reason=Reason.RATE_LIMITED, retry_after=0.25), "req-1"
    )
    assert err.status == 429
    assert err.headers == {"retry-after": "1", "retry-after-ms": "250", "x-request-id": "req-1"}
    assert json.loads(err.body()) == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    missing = openai_error(NotFound("gone", reason=Reason.SESSION_NOT_FOUND, field="session"))
    assert (missing.status, missing.error["code"], missing.error["param"]) == (
        404,
        "session_not_found",
        None,
    )
    assert _event(missing.sse()) == {"error": missing.error}


def test_chunks_are_chat_completion_chunks() -> None:
    chunks = Chunks("chatcmpl-1", 1700000000, "m", include_usage=True)
    head = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
    }
    first = _event(chunks.role())
    assert first == {
        **head,
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        "usage": None,
    }
    text = _event(chunks.content('say "hi"\n'))
    assert text["choices"] == [
        {"index": 0, "delta": {"content": 'say "hi"\n'}, "logprobs": None, "finish_reason": None}
    ]
    calls = _event(chunks.tool_calls([ReturnedCall("c1", "f", {"a": 1})]))
    assert calls["choices"][0]["delta"] == {  # type: ignore[index]
        "tool_calls": [
            {
                "index": 0,
                "id": "c1",
                "type": "function",
                "function": {"name": "f", "arguments": '{"a": 1}'},
            }
        ]
    }
    finish = _event(chunks.finish("stop", Extension("sessions/s", "sessions/s/turns/t")))
    assert finish["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert finish["aichat"] == {
        "session": "sessions/s",
        "turn": "sessions/s/turns/t",
        "outcome": "completed",
    }
    assert finish["usage"] is None
    usage = _event(chunks.usage({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}))
    assert usage == {
        **head,
        "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    assert DONE == b"data: [DONE]\n\n"
    # Without include_usage no chunk names usage at all.
    assert "usage" not in _event(Chunks("c", 1, "m", include_usage=False).content("x"))
