"""Stored history → what the provider is sent: the system prompt, then recent messages."""

from __future__ import annotations

from collections.abc import Sequence

from aichat_backend.domain import Attachment, Message, MessageState, Role
from aichat_backend.providers.base import ChatMessage, ChatRole, ImagePart


def with_attachments(
    text: str, attachments: Sequence[Attachment]
) -> tuple[str, tuple[ImagePart, ...]]:
    parts = [text] if text else []
    images: list[ImagePart] = []
    for a in attachments:
        if a.text_content is not None:
            # Marked as file content, so the model can tell it from the user's own words.
            parts.append(
                f'<attachment filename="{a.filename}" type="{a.mime_type}">\n'
                f"{a.text_content}\n</attachment>"
            )
        elif a.content:
            images.append(ImagePart(mime_type=a.mime_type, data=a.content))
    return "\n\n".join(parts), tuple(images)


def to_chat_messages(history: Sequence[Message]) -> list[ChatMessage]:
    result: list[ChatMessage] = []
    for m in history:
        if m.role is Role.USER:
            text, images = with_attachments(m.text, m.attachments)
            result.append(ChatMessage(role=ChatRole.USER, text=text, images=images))
        elif m.role is Role.ASSISTANT:
            if m.state is MessageState.STREAMING or not m.text:
                # A turn still running elsewhere, or one that failed before any text.
                continue
            result.append(ChatMessage(role=ChatRole.ASSISTANT, text=m.text))
        elif m.role is Role.SYSTEM:
            result.append(ChatMessage(role=ChatRole.SYSTEM, text=m.text))
    return result


def memory_window(requested: int, session_limit: int, default: int, maximum: int) -> int:
    """Messages of context: the turn's request, else the session's, else the default."""
    for value in (requested, session_limit):
        if value > 0:
            return min(value, maximum)
    return min(default, maximum)
