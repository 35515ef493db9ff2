"""A turn's context read: the session and its last messages, the window as the domain rule
says (one statement on PostgreSQL, which applies the rule in SQL), the user's own only."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aichat_backend.config import Settings
from aichat_backend.domain import Attachment, Role, Session, memory_window
from aichat_backend.errors import NotFound
from aichat_backend.store.database import Database
from aichat_backend.store.messages_repo import MessageRepository
from aichat_backend.store.sessions_repo import SessionRepository

pytestmark = pytest.mark.timeout(60)

MESSAGES = 7
DEFAULT, MAXIMUM = 4, 6


@pytest.fixture
async def db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(Settings(database_url=database_url, data_dir=str(tmp_path)))
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


async def _session(db: Database, user: str, memory_limit: int) -> Session:
    async with db.transaction() as tx:
        session = await SessionRepository(tx, user).create(
            Session(user_id=user, id=uuid.uuid4().hex, memory_limit=memory_limit)
        )
        repo = MessageRepository(tx, user)
        for i in range(MESSAGES):
            content = b"x" * (i + 1)
            files = (
                [Attachment("a.txt", "text/plain", len(content), "0" * 64, content, "x")]
                if i % 3 == 0
                else []
            )
            role = Role.USER if i % 2 == 0 else Role.ASSISTANT
            await repo.append(session.id, role, f"m{i}", attachments_in=files)
    return session


async def test_the_window_follows_the_domain_rule(db: Database, user: str) -> None:
    for session_limit in (0, 3, 50):
        session = await _session(db, user, session_limit)
        for requested in (0, 2, 5, 500):
            async with db.read() as tx:
                found, history = await MessageRepository(tx, user).context(
                    session.id, requested, DEFAULT, MAXIMUM
                )
            window = memory_window(requested, session_limit, DEFAULT, MAXIMUM)
            assert found.id == session.id and found.memory_limit == session_limit
            expected = [f"m{i}" for i in range(MESSAGES)][-window:]
            assert [m.text for m in history] == expected, (session_limit, requested)
            for m in history:  # files come with their content, once each
                i = int(m.text[1:])
                sizes = [len(a.content or b"") for a in m.attachments]
                assert sizes == ([i + 1] if i % 3 == 0 else [])


async def test_an_empty_session_and_someone_elses(db: Database, user: str) -> None:
    async with db.transaction() as tx:
        empty = await SessionRepository(tx, user).create(
            Session(user_id=user, id=uuid.uuid4().hex, display_name="empty")
        )
    async with db.read() as tx:
        found, history = await MessageRepository(tx, user).context(empty.id, 0, 20, 100)
    assert found.display_name == "empty" and history == []
    for owner, session_id in itertools.product(("someone-else", user), (empty.id, "missing")):
        if (owner, session_id) == (user, empty.id):
            continue
        async with db.read() as tx:
            with pytest.raises(NotFound):
                await MessageRepository(tx, owner).context(session_id, 0, 20, 100)
