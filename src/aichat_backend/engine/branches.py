"""A session's tree as its owner sees it: pages of a branch, switching the active branch,
forking a path into a new session.

The active path is the conversation a client shows: the root to the session's active
message. Any message names a branch: the path through it to its newest descendant (the
message written last below it), which is where the user left that branch.
"""

from __future__ import annotations

import uuid

from aichat_backend import names, page_tokens
from aichat_backend.domain import Message, Page, Session, message_not_found
from aichat_backend.engine.page_bytes import by_bytes
from aichat_backend.engine.session_store import SessionStore
from aichat_backend.engine.sessions import SESSION_ID_RE, check_request_id, check_text
from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason

MAX_FORK_TITLE = 200


def branch_selection_conflict() -> InvalidArgument:
    return InvalidArgument(
        "name a branch or ask for all branches, not both",
        reason=Reason.INVALID_BRANCH_SELECTION,
        field="all_branches",
    )


def message_in(session_id: str, name: str, field: str) -> str:
    """The id of a message named in a request about ``session_id`` (another session's
    message is NOT_FOUND there, as a missing one)."""
    parsed = names.parse_message(name, field)
    if parsed.session_id != session_id:
        raise message_not_found(session_id, parsed.message_id)
    return parsed.message_id


class Branches:
    def __init__(self, store: SessionStore, page_max_bytes: int) -> None:
        self._store = store
        self._page_max_bytes = page_max_bytes

    async def list_path(
        self, user_id: str, session_id: str, branch: str, page_size: int, page_token: str
    ) -> Page[Message]:
        """A page of the active path, or of the branch through the message ``branch``
        names; a token keeps the first page's path even if the session moves on."""
        limit = page_tokens.clamp_page_size(page_size)
        kind = f"path:{session_id}"
        leaf: str | None = None
        after: int | None = None
        if page_token:
            leaf, after = page_tokens.decode(page_token, kind, user_id, 2)
            if not isinstance(leaf, str) or not isinstance(after, int):
                raise page_tokens.invalid_token()
        elif branch:
            message_id = message_in(session_id, branch, "branch")
            leaf = await self._store.branch_leaf(user_id, session_id, message_id)
        budget = self._page_max_bytes
        page = await self._store.list_path(user_id, session_id, leaf, after, limit, budget)
        items = page.messages
        # The read was bounded in characters; the page is bounded in bytes as it is sent.
        fit = by_bytes(items, budget)
        if items and (fit < len(items) or page.more):
            items = items[:fit]
            return Page(items, page_tokens.encode(kind, user_id, [page.leaf_id, items[-1].seq]))
        return Page(items, "")

    async def switch(self, user_id: str, name: str, exact: bool) -> Session:
        parsed = names.parse_message(name)
        return await self._store.switch_branch(user_id, parsed.session_id, parsed.message_id, exact)

    async def fork(
        self, user_id: str, message: str, session_id: str, display_name: str, request_id: str
    ) -> Session:
        parsed = names.parse_message(message, "message")
        if session_id and not SESSION_ID_RE.match(session_id):
            raise InvalidArgument(
                "session_id must be 1-63 lowercase letters, digits or hyphens, starting "
                "with a letter and not ending with a hyphen",
                reason=Reason.INVALID_SESSION_ID,
                field="session_id",
            )
        check_request_id(request_id)
        check_text("display_name", display_name)
        if len(display_name) > MAX_FORK_TITLE:
            raise InvalidArgument(
                f"display_name must be at most {MAX_FORK_TITLE} characters",
                reason=Reason.INVALID_FIELD,
                field="display_name",
            )
        return await self._store.fork_session(
            user_id,
            parsed.session_id,
            parsed.message_id,
            session_id or str(uuid.uuid4()),
            display_name,
            request_id,
        )
