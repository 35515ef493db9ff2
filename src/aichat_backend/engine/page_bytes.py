"""Pages bounded by bytes as well as by count, so no page nears the gRPC message limit.

A session of 1 MB messages made a 50-message ListMessages page of ~24 MB, which gRPC
refused to send. Sizes here are estimates from the domain objects (the engine knows no
protobuf), generous enough that the real message stays under the bound.
"""

from __future__ import annotations

from aichat_backend.domain import Message

EXPORT_PAGE = 100  # messages per read of an export, fewer when they are large


def approximate_size(message: Message) -> int:
    """Bytes a message takes on the wire, near enough to bound a page (never content)."""
    size = 256 + len(message.text.encode("utf-8", "replace"))
    for block in message.reasoning:  # shown as Message.reasoning.text
        size += len(block.text.encode("utf-8", "replace"))
    for call in message.tool_calls:
        size += 128 + len(call.result_text.encode("utf-8", "replace")) + len(str(call.arguments))
    return size + 256 * len(message.attachments)


def by_bytes(items: list[Message], max_bytes: int) -> int:
    """How many of ``items`` fit in ``max_bytes`` (always at least one)."""
    total = 0
    for count, message in enumerate(items):
        total += approximate_size(message)
        if total > max_bytes and count > 0:
            return count
    return len(items)
