"""The session's tree kept in memory, as store/message_paths.py reads it in SQL: paths by
parent, sibling positions, newest descendants, a turn's rounds."""

from __future__ import annotations

import copy
import dataclasses

from aichat_backend import names
from aichat_backend.domain import (
    Message,
    MessageState,
    Role,
    Session,
    ToolCallState,
    memory_window,
    message_not_found,
)
from aichat_backend.errors import FailedPrecondition
from aichat_backend.reasons import Reason
from aichat_backend.records import HistoryWindow, PathPage
from aichat_devtools.memory_store.state import MemoryState, StoredCall

NOT_DECIDED_BEFORE_FORK = "Not approved: the conversation was forked while it waited."


def message_in(s: MemoryState, user: str, session_id: str, message_id: str) -> Message:
    m = s.messages.get((user, message_id))
    if m is None or m.session_id != session_id:
        raise message_not_found(session_id, message_id)
    return m


def path_to(s: MemoryState, user: str, session_id: str, leaf: str) -> list[Message]:
    """The stored messages from the root to ``leaf``, oldest first ([] for '')."""
    out: list[Message] = []
    current = leaf
    while current:
        m = s.messages.get((user, current))
        if m is None or m.session_id != session_id:
            break
        out.append(m)
        current = m.parent_id
    return out[::-1]


def with_siblings(s: MemoryState, user: str, m: Message) -> Message:
    """A read copy of ``m`` with its place among its siblings."""
    out = s.read(user, m, with_content=False)
    same = [
        x
        for (u, _), x in s.messages.items()
        if u == user and x.session_id == m.session_id and x.parent_id == m.parent_id
    ]
    same.sort(key=lambda x: x.seq)
    i = next(n for n, x in enumerate(same) if x.id == m.id)
    out.sibling_index, out.sibling_count = i, len(same)
    out.previous_sibling = same[i - 1].id if i > 0 else ""
    out.next_sibling = same[i + 1].id if i + 1 < len(same) else ""
    return out


def active(s: MemoryState, user: str, session_id: str) -> str:
    return s.session(user, session_id).session.active_message_id


def context(
    s: MemoryState, user: str, session_id: str, window: HistoryWindow, leaf: str | None
) -> tuple[Session, list[Message]]:
    stored = s.session(user, session_id)
    target = stored.session.active_message_id if leaf is None else leaf
    if leaf:
        message_in(s, user, session_id, leaf)
    limit = window.extra + memory_window(
        window.requested, stored.session.memory_limit, window.default, window.maximum
    )
    found = path_to(s, user, session_id, target)[-limit:] if limit > 0 else []
    return copy.deepcopy(stored.session), [s.read(user, m, with_content=True) for m in found]


def path_page(
    s: MemoryState,
    user: str,
    session_id: str,
    leaf: str | None,
    after_seq: int | None,
    limit: int,
    max_chars: int,
    size: object,
) -> PathPage:
    target = active(s, user, session_id) if leaf is None else leaf
    rest = [
        m for m in path_to(s, user, session_id, target) if after_seq is None or m.seq > after_seq
    ]
    page: list[Message] = []
    total = 0
    for m in rest[:limit]:
        shown = with_siblings(s, user, m)
        total += size(shown)  # type: ignore[operator]
        if total > max_chars and page:
            break
        page.append(shown)
    return PathPage(page, target, len(page) < len(rest))


def newest_descendant(s: MemoryState, user: str, session_id: str, message_id: str) -> str:
    start = message_in(s, user, session_id, message_id)
    below = {start.id}
    newest = start
    for m in sorted(s.in_session(user, session_id), key=lambda x: x.seq):
        if m.parent_id in below:
            below.add(m.id)
            newest = m if m.seq > newest.seq else newest
    return newest.id


def question_of(s: MemoryState, user: str, session_id: str, message_id: str) -> str:
    message_in(s, user, session_id, message_id)
    for m in reversed(path_to(s, user, session_id, message_id)):
        if m.role is Role.USER:
            return m.id
    raise FailedPrecondition(
        "there is no user message at or above this message to answer again",
        reason=Reason.NOTHING_TO_REGENERATE,
        metadata={"message": names.message(session_id, message_id)},
    )


def turn_rounds(s: MemoryState, user: str, first_answer_id: str) -> list[Message]:
    first = s.messages.get((user, first_answer_id))
    if first is None:
        return []
    chain = [first]
    mine = [m for (u, _), m in s.messages.items() if u == user]
    while True:
        after = [m for m in mine if m.parent_id == chain[-1].id and m.role is Role.ASSISTANT]
        if not after:
            return chain
        chain.append(after[0])


def later_turn_began(s: MemoryState, user: str, m: Message) -> bool:
    """A later user message, or a later answer to a user message (a regenerate)."""
    for later in s.in_session(user, m.session_id):
        if later.seq <= m.seq:
            continue
        parent = s.messages.get((user, later.parent_id))
        if later.role is Role.USER or (parent is not None and parent.role is Role.USER):
            return True
    return False


def copy_path(s: MemoryState, user: str, source: str, message_id: str, target: str) -> int:
    path = path_to(s, user, source, message_id)
    ids = {m.id: f"{m.id}-{target}" for m in path}
    stored = s.session(user, target)
    for seq, m in enumerate(path, start=1):
        copied = dataclasses.replace(
            copy.deepcopy(m),
            id=ids[m.id],
            session_id=target,
            seq=seq,
            parent_id=ids.get(m.parent_id, ""),
        )
        if copied.state is MessageState.STREAMING:
            copied.state = MessageState.INCOMPLETE
        s.add_message(user, copied)
        for (u, mid, cid), c in list(s.calls.items()):
            if u != user or mid != m.id:
                continue
            call = copy.deepcopy(c.call)
            if call.state is ToolCallState.PENDING_APPROVAL:
                call.state, call.result_text = ToolCallState.DENIED, NOT_DECIDED_BEFORE_FORK
            elif call.state in (ToolCallState.APPROVED, ToolCallState.RUNNING):
                call.state, call.is_error = ToolCallState.FAILED, True
                call.result_text = "the conversation was forked while the tool ran"
            kept = StoredCall(ids[m.id], target, c.position, call, c.create_time_us)
            s.calls[(user, ids[m.id], cid)] = kept
    stored.last_seq = stored.session.message_count = len(path)
    stored.session.tools_locked = True
    stored.session.active_message_id = ids[path[-1].id] if path else ""
    return len(path)
