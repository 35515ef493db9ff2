"""A conversation the caller gives whole (the OpenAI-compatible API) as the turn's context.

Its messages become domain messages once; the model's context is made from those by the
same conversion a stored history goes through (``context.to_chat_messages``), and the turn
stores the same objects around its user message. So what the session holds is what the
model read, without reading it back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from aichat_backend.domain import Message, MessageState, Role
from aichat_backend.engine import attachments as attachment_rules
from aichat_backend.engine.context import to_chat_messages
from aichat_backend.engine.requests import MAX_TEXT_CHARS, Conversation, GivenMessage
from aichat_backend.engine.sessions import check_text
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import ChatMessage, ToolSpec
from aichat_backend.reasons import Reason
from aichat_backend.tools.base import ToolInfo

# (the messages before the turn's user message, the turn's rounds already answered)
Given = tuple[list[Message], list[Message]]


async def given_messages(
    conversation: Conversation,
    session_id: str,
    limits: attachment_rules.AttachmentLimits,
    user_id: str,
) -> Given:
    """The conversation as the messages the turn stores and the model reads."""
    earlier = [await _message(g, session_id, limits, user_id) for g in conversation.earlier]
    rounds = [await _message(g, session_id, limits, user_id) for g in conversation.rounds]
    if any(m.role is not Role.ASSISTANT or not m.tool_calls for m in rounds):
        raise InvalidArgument(
            "after the last user message only answers with tool calls and their results may come",
            reason=Reason.INVALID_CONVERSATION,
            field="messages",
        )
    return earlier, rounds


async def _message(
    given: GivenMessage, session_id: str, limits: attachment_rules.AttachmentLimits, user_id: str
) -> Message:
    check_text("messages.content", given.text)
    if len(given.text) > MAX_TEXT_CHARS:
        raise InvalidArgument(
            f"a message may hold at most {MAX_TEXT_CHARS} characters",
            reason=Reason.MESSAGE_TOO_LONG,
            field="messages.content",
        )
    files = (
        await attachment_rules.prepare(given.attachments, limits, user_id)
        if given.attachments
        else []
    )
    return Message(
        session_id=session_id,
        id=uuid.uuid4().hex,
        seq=0,  # the store numbers it
        role=given.role,
        text=given.text,
        state=MessageState.COMPLETE,
        finish_reason="tool_calls" if given.tool_calls else "",
        attachments=files,
        tool_calls=list(given.tool_calls),
    )


def model_context(
    earlier: Sequence[Message], user: ChatMessage, rounds: Sequence[Message]
) -> tuple[ChatMessage, ...]:
    """What the model reads: the earlier messages, the user's, then the answered rounds."""
    return (
        *to_chat_messages(earlier),
        user,
        *to_chat_messages(rounds, open_with_user=False),
    )


def first_user_text(earlier: Sequence[Message], text: str) -> str:
    """What names the session: the conversation's first user message."""
    return next((m.text for m in earlier if m.role is Role.USER and m.text.strip()), text)


def check_client_tools(client: Sequence[ToolSpec], offered: dict[str, ToolInfo]) -> None:
    """The caller's functions must not take the name of a tool the session runs here."""
    for tool in client:
        if tool.name in offered:
            raise InvalidArgument(
                f"tool {tool.name!r} is the name of a tool this session runs; name your "
                "function differently",
                reason=Reason.INVALID_FIELD,
                field="tools",
            )
