"""Pages bounded by bytes as well as by count, so no page nears the gRPC message limit.

A session of 1 MB messages made a 50-message ListMessages page of ~24 MB, which gRPC
refused to send. Sizes here are estimates from the domain objects (the engine knows no
protobuf), generous enough that the real message stays under the bound.

And a page is bounded before it is read: a read of 1001 messages of 4 MB each is 4 GB
however few of them are then sent. ``read_page`` asks the store for the next messages'
sizes first (``SessionStore.message_sizes``: this estimate, in characters, made by the
database) and reads only as many as fit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aichat_backend.domain import Message
from aichat_backend.engine.session_store import SessionStore

EXPORT_PAGE = 100  # messages per read of an export, fewer when they are large
# An export is streamed: small reads cost a round trip each and keep it small.
EXPORT_PAGE_BYTES = 1024 * 1024


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


def fit(sizes: list[int], max_bytes: int) -> int:
    """How many of the leading ``sizes`` fit in ``max_bytes`` (at least one, if any)."""
    total = 0
    for count, size in enumerate(sizes):
        total += size
        if total > max_bytes and count > 0:
            return count
    return len(sizes)


async def read_page(
    store: SessionStore,
    user_id: str,
    session_id: str,
    after_seq: int | None,
    limit: int,
    max_bytes: int,
) -> tuple[list[Message], bool]:
    """Up to ``limit`` messages after ``after_seq`` (no attachment content), no more than
    fit ``max_bytes`` (one at least); and whether more follow. SESSION_NOT_FOUND if the
    session is not the user's."""
    sized = await store.message_sizes(user_id, session_id, limit + 1, after_seq)
    count = fit(sized[:limit], max_bytes)
    if not count:
        return [], False
    items = await store.list_messages(user_id, session_id, count, after_seq)
    return items, len(sized) > count


def export_pages(
    store: SessionStore, user_id: str, session_id: str
) -> Callable[[], AsyncIterator[list[Message]]]:
    """A reader of a session's messages for an export, a page of ``EXPORT_PAGE_BYTES`` at a
    time (no attachment content); it can be run more than once."""

    async def pages() -> AsyncIterator[list[Message]]:
        after: int | None = None
        more = True
        while more:
            # One short read per page: a slow reader of the export holds no connection.
            batch, more = await read_page(
                store, user_id, session_id, after, EXPORT_PAGE, EXPORT_PAGE_BYTES
            )
            if not batch:
                return
            yield batch
            after = batch[-1].seq

    return pages


def export_path_pages(
    store: SessionStore, user_id: str, session_id: str
) -> Callable[[], AsyncIterator[list[Message]]]:
    """As ``export_pages``, for the session's active path only (the conversation as it is
    shown); every page keeps the path the first one read, should the session move on."""

    async def pages() -> AsyncIterator[list[Message]]:
        leaf: str | None = None
        after: int | None = None
        while True:
            page = await store.list_path(
                user_id, session_id, leaf, after, EXPORT_PAGE, EXPORT_PAGE_BYTES
            )
            if not page.messages:
                return
            yield page.messages
            if not page.more:
                return
            leaf, after = page.leaf_id, page.messages[-1].seq

    return pages
