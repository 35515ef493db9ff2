"""A chat completion request's top-level parameters: each one honoured or refused.

Nothing is silently ignored: a parameter this service does not honour is refused with
OpenAI's 400 naming it (``param``), except at the value that means what we do anyway
(``n: 1``, ``top_p: 1``, ``logprobs: false``...). ``null`` means "not given", as in
OpenAI's API.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import ToolSpec
from aichat_backend.reasons import Reason

# The metadata key (and the header, X-Aichat-Session) that names the session a turn goes to.
SESSION_METADATA_KEY = "aichat_session"
MAX_STOP = 4

# Parameters accepted only at the value that is this service's own behaviour.
_DEFAULT_ONLY: dict[str, Any] = {
    "n": 1,
    "top_p": 1,
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logprobs": False,
    "parallel_tool_calls": True,
    "store": True,  # every turn is stored here; store: false cannot be honoured
    "response_format": {"type": "text"},
}
_HONOURED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "user",
        "tools",
        "tool_choice",
        "metadata",
    }
)


@dataclass(slots=True)
class CompletionParams:
    model: str
    messages: list[Any]
    stream: bool = False
    include_usage: bool = False
    temperature: float | None = None
    max_tokens: int = 0  # 0: the model's own limit
    stop: tuple[str, ...] = ()
    end_user: str = ""
    tools: tuple[ToolSpec, ...] = ()
    offer_tools: bool = True  # tool_choice "none" offers none
    session: str = ""  # metadata.aichat_session
    labels: dict[str, str] = field(default_factory=dict)  # the rest of metadata


def unsupported(param: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"{param}: {why}",
        reason=Reason.UNSUPPORTED_PARAMETER,
        field=param,
        metadata={"param": param},
    )


def invalid(param: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{param}: {why}", reason=Reason.INVALID_FIELD, field=param)


def parse_params(body: dict[str, Any]) -> CompletionParams:
    given = {k: v for k, v in body.items() if v is not None}
    for key, value in given.items():
        if key in _HONOURED:
            continue
        if key in _DEFAULT_ONLY:
            if value != _DEFAULT_ONLY[key]:
                raise unsupported(key, f"only {json.dumps(_DEFAULT_ONLY[key])} is supported")
            continue
        raise unsupported(key, "this parameter is not supported by this server")
    model = given.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "you must provide a model name (GET /v1/models lists them)")
    messages = given.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "must be a non-empty array of messages")
    params = CompletionParams(model=model, messages=messages)
    params.stream = _bool(given, "stream")
    params.include_usage = _stream_options(given.get("stream_options"), params.stream)
    params.temperature = _temperature(given.get("temperature"))
    params.max_tokens = _max_tokens(given)
    params.stop = _stop(given.get("stop"))
    params.end_user = _string(given, "user")
    params.tools = _tools(given.get("tools"))
    params.offer_tools = _tool_choice(given.get("tool_choice"))
    params.session, params.labels = _metadata(given.get("metadata"))
    return params


def _bool(given: dict[str, Any], key: str) -> bool:
    value = given.get(key, False)
    if not isinstance(value, bool):
        raise invalid(key, "must be true or false")
    return value


def _string(given: dict[str, Any], key: str) -> str:
    value = given.get(key, "")
    if not isinstance(value, str) or len(value) > 256:
        raise invalid(key, "must be a string of at most 256 characters")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _stream_options(value: Any, stream: bool) -> bool:
    if value is None:
        return False
    if not stream:
        raise invalid("stream_options", "is only allowed when stream is true")
    if not isinstance(value, dict):
        raise invalid("stream_options", "must be an object")
    for key in value:
        if key != "include_usage":
            raise unsupported(f"stream_options.{key}", "only include_usage is supported")
    usage = value.get("include_usage", False)
    if not isinstance(usage, bool):
        raise invalid("stream_options.include_usage", "must be true or false")
    return usage


def _temperature(value: Any) -> float | None:
    if value is None:
        return None
    if not _number(value) or not 0 <= value <= 2:
        raise invalid("temperature", "must be a number from 0 to 2")
    return float(value)


def _max_tokens(given: dict[str, Any]) -> int:
    found = {k: given[k] for k in ("max_tokens", "max_completion_tokens") if k in given}
    for key, value in found.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise invalid(key, "must be a whole number of at least 1")
    if len(set(found.values())) > 1:
        raise invalid("max_completion_tokens", "max_tokens says otherwise: send one of them")
    return next(iter(found.values()), 0)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise invalid("stop", f"must be a string or up to {MAX_STOP} non-empty strings")
    return tuple(stops)


def _tools(value: Any) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("tools", "must be an array of functions")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise unsupported(f"{where}.type", 'only tools of type "function" are supported')
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise invalid(f"{where}.function", "must name the function")
        if fn.get("strict"):
            raise unsupported(f"{where}.function.strict", "strict schemas are not supported")
        parameters = fn.get("parameters") or {"type": "object", "properties": {}}
        description = fn.get("description") or ""
        if not isinstance(parameters, dict) or not isinstance(description, str):
            raise invalid(f"{where}.function", "parameters must be a JSON schema object")
        specs.append(ToolSpec(name=fn["name"], description=description, input_schema=parameters))
    return tuple(specs)


def _tool_choice(value: Any) -> bool:
    if value is None or value == "auto":
        return True
    if value == "none":
        return False
    raise unsupported("tool_choice", 'only "auto" and "none" are supported')


def _metadata(value: Any) -> tuple[str, dict[str, str]]:
    if value is None:
        return "", {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid("metadata", "must be an object of string values")
    labels = dict(value)
    return labels.pop(SESSION_METADATA_KEY, ""), labels
