"""Compaction checkpoints in every TurnStore (issue 26): a summary is kept on its message,
once (a second keeps the first), read back with the turn's context and with the owner's
messages, and is nobody else's to write."""

from __future__ import annotations

import pytest

from aichat_backend.domain import ContextSummary
from aichat_backend.errors import NotFound
from aichat_backend.records import HistoryWindow
from tests.contract.conftest import Stores

pytestmark = pytest.mark.timeout(30)

WINDOW = HistoryWindow(requested=0, default=20, maximum=100)


async def test_a_summary_is_kept_once_on_its_message_and_read_back(stores: Stores) -> None:
    sid = await stores.new_session()
    _, user_msg, answer = await stores.begin(sid, "first question")
    first = ContextSummary("they said hello", 2, 300, 5, "cheap", create_time_us=1_000)
    kept = await stores.turns.store_summary(stores.user, sid, answer.id, first)
    assert kept == first
    # Idempotent: a compaction run again (a retried or concurrent turn) keeps the first.
    again = ContextSummary("another text", 2, 300, 3, "other", create_time_us=2_000)
    assert await stores.turns.store_summary(stores.user, sid, answer.id, again) == first

    context = await stores.turns.load_context(stores.user, sid, WINDOW)
    assert [m.context_summary for m in context.history] == [None, first]
    listed = await stores.sessions.list_messages(stores.user, sid, 10, -1)
    assert [m.context_summary for m in listed] == [None, first]
    assert listed[0].id == user_msg.id  # the folded messages stay listed


async def test_only_the_owner_can_keep_a_summary_on_a_message(stores: Stores) -> None:
    sid = await stores.new_session()
    _, _, answer = await stores.begin(sid)
    summary = ContextSummary("s", 1, 10, 1, "m")
    with pytest.raises(NotFound):
        await stores.turns.store_summary("someone-else", sid, answer.id, summary)
    with pytest.raises(NotFound):
        await stores.turns.store_summary(stores.user, sid, "no-such-message", summary)
