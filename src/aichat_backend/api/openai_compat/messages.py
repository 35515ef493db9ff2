"""A request's ``messages`` as a turn.

Without a session they are the whole conversation, as in OpenAI's API: the leading
system (or developer) messages become the new session's system prompt, the last user
message is the turn's, what came before it its context, and what follows it (answers
that called the caller's functions, each with the caller's result) the turn's rounds
already answered. With a session, the session holds the conversation: only the last
message, the user's new one, is read.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from aichat_backend.domain import Role, ToolCall, ToolCallState
from aichat_backend.engine.requests import Conversation, GivenMessage
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.tool_arguments import parse_arguments
from aichat_backend.reasons import Reason

from .params import invalid, unsupported

Files = list[tuple[str, str, bytes]]
_SYSTEM_ROLES = ("system", "developer")
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


@dataclass(slots=True)
class TurnInput:
    text: str
    files: Files
    system_prompt: str = ""
    conversation: Conversation = field(default_factory=Conversation)


def bad_conversation(why: str) -> InvalidArgument:
    return InvalidArgument(why, reason=Reason.INVALID_CONVERSATION, field="messages")


def last_user_message(messages: list[Any]) -> TurnInput:
    """With a session: the new message, the last of the list, must be the user's."""
    where = f"messages[{len(messages) - 1}]"
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise bad_conversation(
            "with a session the last message must be the user's new one (the session holds "
            "the conversation); the caller's own tools are used without a session"
        )
    _check_keys(last, where, {"role", "content"})
    text, files = _user_content(last.get("content"), where)
    return TurnInput(text, files)


def whole_conversation(messages: list[Any]) -> TurnInput:
    """Without a session: the messages are the whole conversation."""
    system: list[str] = []
    items: list[GivenMessage] = []
    users: list[tuple[str, Files]] = []  # the user messages' content, by their place in items
    waiting: dict[str, ToolCall] = {}  # calls of the last answer still without a result
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise invalid(where, "must be an object")
        role = m.get("role")
        if waiting and role != "tool":
            raise bad_conversation(
                f"{where}: an answer with tool_calls must be followed by a tool message for "
                f"each call (no result for {next(iter(waiting))!r})"
            )
        if role in _SYSTEM_ROLES:
            _check_keys(m, where, {"role", "content"})
            text = _text_content(m.get("content"), where)
            if items:
                items.append(GivenMessage(Role.SYSTEM, text))
            else:
                system.append(text)
        elif role == "user":
            _check_keys(m, where, {"role", "content"})
            text, files = _user_content(m.get("content"), where)
            items.append(GivenMessage(Role.USER, text, attachments=files))
            users.append((text, files))
        elif role == "assistant":
            answer = _assistant(m, where)
            items.append(answer)
            waiting = {c.id: c for c in answer.tool_calls}
        elif role == "tool":
            _tool_result(m, where, waiting)
        else:
            raise unsupported(f"{where}.role", f"role {str(role)[:40]!r} is not supported")
    if waiting:
        raise bad_conversation("the last answer's tool_calls have no tool messages with results")
    last = max((i for i, g in enumerate(items) if g.role is Role.USER), default=-1)
    if last < 0:
        raise bad_conversation("the conversation needs a user message")
    rounds = items[last + 1 :]
    if any(g.role is not Role.ASSISTANT or not g.tool_calls for g in rounds):
        raise bad_conversation(
            "the conversation must end with a user message, or with the results of the "
            "tool calls that followed it"
        )
    text, files = users[-1]
    return TurnInput(
        text,
        files,
        system_prompt="\n\n".join(system),
        conversation=Conversation(earlier=items[:last], rounds=rounds),
    )


def _check_keys(m: dict[str, Any], where: str, allowed: set[str]) -> None:
    for key, value in m.items():
        if key not in allowed and value is not None:
            raise unsupported(f"{where}.{key}", "is not supported on this message")


def _text_content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                raise unsupported(f"{where}.content[{j}]", "only text parts are allowed here")
            texts.append(str(part.get("text") or part.get("refusal") or ""))
        return "\n".join(texts)
    raise invalid(f"{where}.content", "must be a string or an array of parts")


def _user_content(content: Any, where: str) -> tuple[str, Files]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "must be a string or an array of parts")
    texts: list[str] = []
    files: Files = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            files.append(_image(part.get("image_url"), at, len(files) + 1))
        else:
            raise unsupported(at, "only text and image_url parts are supported")
    return "\n".join(texts), files


def _image(image: Any, at: str, n: int) -> tuple[str, str, bytes]:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise invalid(f"{at}.image_url.url", "must be a data: URL")
    if image.get("detail") not in (None, "auto"):
        raise unsupported(f"{at}.image_url.detail", 'only "auto" is supported')
    head, _, data = url.partition(",")
    if not head.startswith("data:") or not head.endswith(";base64"):
        raise InvalidArgument(
            f"{at}.image_url.url: only data: URLs (base64) are accepted; this server does not "
            "fetch images",
            reason=Reason.UNSUPPORTED_ATTACHMENT,
            field=f"{at}.image_url.url",
        )
    mime = head[len("data:") : -len(";base64")]
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{at}.image_url.url", "the data: URL is not valid base64") from None
    return f"image-{n}.{_EXTENSIONS.get(mime, 'bin')}", mime, content


def _assistant(m: dict[str, Any], where: str) -> GivenMessage:
    _check_keys(m, where, {"role", "content", "tool_calls", "refusal"})
    content = m.get("content")
    text = "" if content is None else _text_content(content, where)
    calls: list[ToolCall] = []
    for j, call in enumerate(m.get("tool_calls") or ()):
        at = f"{where}.tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(fn, dict)
            or call.get("type", "function") != "function"
            or not isinstance(call.get("id"), str)
            or not isinstance(fn.get("name"), str)
        ):
            raise invalid(at, "must be a function call with an id, a name and arguments")
        arguments = fn.get("arguments") or ""
        calls.append(
            ToolCall(
                id=call["id"][:128],
                tool_name=fn["name"][:128],
                arguments=parse_arguments(arguments if isinstance(arguments, str) else ""),
                state=ToolCallState.SUCCEEDED,
            )
        )
    return GivenMessage(Role.ASSISTANT, text, tool_calls=calls)


def _tool_result(m: dict[str, Any], where: str, waiting: dict[str, ToolCall]) -> None:
    _check_keys(m, where, {"role", "content", "tool_call_id"})
    call = waiting.pop(str(m.get("tool_call_id")), None)
    if call is None:
        raise bad_conversation(
            f"{where}: a tool message must answer a call of the answer just before it "
            f"(unknown tool_call_id {str(m.get('tool_call_id'))[:80]!r})"
        )
    call.result_text = _text_content(m.get("content"), where)
