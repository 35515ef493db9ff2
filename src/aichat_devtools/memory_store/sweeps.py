"""The crash sweep of MemoryStore, as store/turn_leases.py does it in SQL."""

from __future__ import annotations

from aichat_backend.domain import Message, MessageState, ToolCallState, now_us
from aichat_devtools.memory_store import tree
from aichat_devtools.memory_store.state import UNFINISHED, MemoryState


def sweep_interrupted(s: MemoryState) -> int:
    now = now_us()

    def live(user: str, session_id: str) -> bool:
        stored = s.sessions.get((user, session_id))
        if stored is None or stored.turn_id is None or stored.expires_us is None:
            return False
        return stored.expires_us >= now

    def superseded(user: str, m: Message) -> bool:
        return tree.later_turn_began(s, user, m)

    swept = [
        (u, m)
        for (u, _), m in s.messages.items()
        if m.state is MessageState.STREAMING and (not live(u, m.session_id) or superseded(u, m))
    ]
    for u, m in swept:
        m.state, m.finish_reason = MessageState.INTERRUPTED, "interrupted"
        for (cu, mid, _), c in s.calls.items():
            if cu == u and mid == m.id and c.call.state in UNFINISHED:
                c.call.state, c.call.is_error = ToolCallState.FAILED, True
                c.call.result_text = "interrupted: the server stopped while the tool ran"
        stored = s.sessions.get((u, m.session_id))
        stale = stored is not None and stored.expires_us is not None and stored.expires_us < now
        if stored is not None and stored.turn_id is not None and stale:
            stored.turn_id = stored.owner = stored.expires_us = None
    return len(swept)
