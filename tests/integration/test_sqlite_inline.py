"""The embedded SQLite database runs on the event loop: what keeps that safe."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from aichat_backend.config import Settings
from aichat_backend.domain import Role, Session
from aichat_backend.errors import DatabaseUnavailable
from aichat_backend.store.database import Database, WalCheckpointer
from aichat_backend.store.messages_repo import MessageRepository
from aichat_backend.store.sessions_repo import SessionRepository

pytestmark = pytest.mark.timeout(30)


async def _database(tmp_path: Path) -> Database:
    db = Database(Settings(database_url=f"sqlite:///{tmp_path / 'aichat.db'}"))
    await db.migrate()
    async with db.transaction() as tx:
        await SessionRepository(tx, "alice").create(Session(user_id="alice", id="s1"))
    return db


async def test_commits_never_checkpoint_on_the_loop_the_checkpointer_does(
    tmp_path: Path,
) -> None:
    db = await _database(tmp_path)
    async with db.transaction() as tx:
        autocheckpoint = (await tx.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
    assert autocheckpoint == 0  # a commit never copies the WAL (and fsyncs) on the loop

    checkpoints = db._checkpoints
    assert isinstance(checkpoints, WalCheckpointer)
    for i in range(50):
        async with db.transaction() as tx:
            await MessageRepository(tx, "alice").append("s1", Role.USER, f"message {i}")
    wal = tmp_path / "aichat.db-wal"
    assert wal.stat().st_size > 0
    # From its own thread, in the background, about a second after the writes.
    await asyncio.wait_for(checkpoints.checkpointed.wait(), timeout=10)

    await db.dispose()
    assert not wal.exists() or wal.stat().st_size == 0  # truncated at shutdown
    # Everything written is in the database file itself.
    with sqlite3.connect(tmp_path / "aichat.db") as conn:
        (count,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    assert count == 50
    await db.dispose()  # a second dispose is harmless


async def test_transactions_queue_in_order_and_a_failed_one_rolls_back(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    order: list[int] = []

    async def write(i: int) -> None:
        async with db.transaction() as tx:
            await MessageRepository(tx, "alice").append("s1", Role.USER, f"m{i}")
            await asyncio.sleep(0)  # another task may run: it must wait for this transaction
            order.append(i)

    await asyncio.gather(*(write(i) for i in range(20)))
    assert order == list(range(20))

    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await MessageRepository(tx, "alice").append("s1", Role.USER, "never stored")
            raise RuntimeError("boom")
    async with db.transaction() as tx:
        texts = [m.text for m in await MessageRepository(tx, "alice").recent("s1", 100)]
    assert "never stored" not in texts and len(texts) == 20
    await db.dispose()


async def test_a_file_locked_by_another_process_is_unavailable_not_a_hang(
    tmp_path: Path,
) -> None:
    db = Database(
        Settings(database_url=f"sqlite:///{tmp_path / 'aichat.db'}", db_request_timeout_seconds=0.3)
    )
    await db.migrate()
    other = sqlite3.connect(tmp_path / "aichat.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # e.g. a second replica mid-write on the same file
    try:
        with pytest.raises(DatabaseUnavailable):
            async with db.transaction() as tx:
                await SessionRepository(tx, "alice").create(Session(user_id="alice", id="s2"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with db.transaction() as tx:  # and it recovers once the lock is gone
        await SessionRepository(tx, "alice").create(Session(user_id="alice", id="s2"))
    await db.dispose()
