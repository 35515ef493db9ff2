"""One contract for the engine's ports, run against every implementation.

The same tests drive the in-memory MemoryStore (what the engine's tests use), SQLite and
PostgreSQL (what the service uses), so the three cannot drift: a rule the engine relies
on (a claim is exclusive, the last write is idempotent, a decision is recorded once...)
holds in all of them or a test here fails.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aichat_backend.domain import Message, Session
from aichat_backend.engine.session_store import SessionStore
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.records import NewTurn, TurnClaim
from aichat_backend.store.database import Database
from aichat_backend.store.session_store import SqlSessionStore
from aichat_backend.store.tables import usage_daily
from aichat_backend.store.turn_store import SqlTurnStore
from aichat_devtools.memory_store import MemoryStore
from tests.support.migrated import SqliteTemplate
from tests.support.server import make_settings

pytestmark = pytest.mark.timeout(30)


@dataclass
class Stores:
    turns: TurnStore
    sessions: SessionStore
    kind: str
    db: Database | None = None
    memory: MemoryStore | None = None
    user: str = field(default_factory=lambda: f"u-{uuid.uuid4().hex[:10]}")

    async def new_session(self, user: str | None = None, **fields: object) -> str:
        sid = f"s-{uuid.uuid4().hex[:12]}"
        draft = Session(user_id=user or self.user, id=sid, **fields)  # type: ignore[arg-type]
        await self.sessions.create_session(user or self.user, draft, "")
        return sid

    async def begin(
        self, session_id: str, text: str = "hi", *, turn: str = "", lease: float = 60, **kw: object
    ) -> tuple[str, Message, Message]:
        turn = turn or uuid.uuid4().hex
        new = NewTurn(
            session_id=session_id,
            claim=TurnClaim(turn, kw.pop("owner", "replica-a"), lease),  # type: ignore[arg-type]
            text=text,
            attachments=kw.pop("attachments", []),  # type: ignore[arg-type]
            model="m",
            title=kw.pop("title", "a title"),  # type: ignore[arg-type]
            answer_id=uuid.uuid4().hex,
            **kw,  # type: ignore[arg-type]
        )
        begun = await self.turns.begin_turn(self.user, new)
        return turn, begun.user_message, begun.answer

    def counted(self, found: int, ours: int) -> bool:
        """A count over the whole store: exact where the store is this test's own."""
        return found == ours if self.kind != "postgresql" else found >= ours

    async def usage(self, user: str) -> list[tuple[str, int, int, int]]:
        """(model, input tokens, output tokens, model calls) rows of the user's usage."""
        if self.memory is not None:
            return [(k[2], *v) for k, v in self.memory.usage() if k[0] == user]  # type: ignore[misc]
        assert self.db is not None
        async with self.db.read() as tx:
            rows = (
                await tx.execute(select(usage_daily).where(usage_daily.c.user_id == user))
            ).mappings()
            return [(r["model"], r["input_tokens"], r["output_tokens"], r["turns"]) for r in rows]

    async def usage_parts(self, user: str) -> list[tuple[Any, ...]]:
        """(model, reasoning, cached input, cache write tokens, cost nanos, currency) rows."""
        if self.memory is not None:
            found = [(k[2], vars(d)) for k, d in self.memory.usage_days() if k[0] == user]
        else:
            assert self.db is not None
            async with self.db.read() as tx:
                query = select(usage_daily).where(usage_daily.c.user_id == user)
                found = [(r["model"], dict(r)) for r in (await tx.execute(query)).mappings()]
        return [(model, *(row[name] for name in USAGE_PARTS)) for model, row in found]


USAGE_PARTS = ("reasoning_tokens", "cached_input_tokens", "cache_write_tokens")
USAGE_PARTS += ("cost_nanos", "currency")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Which implementation: "memory", or the database URL of a SQL one."""
    if request.param == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("migrated_sqlite")
        return template.copy_to(tmp_path / "contract.db")
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database_url")
        return url
    return "memory"


@pytest.fixture
async def stores(store_url: str, tmp_path: Path) -> AsyncIterator[Stores]:
    if store_url == "memory":
        memory = MemoryStore(idempotency_ttl_seconds=3600)
        yield Stores(memory, memory, "memory", memory=memory)
        return
    url = store_url
    db = Database(make_settings(url, data_dir=tmp_path))
    await db.migrate()
    try:
        yield Stores(SqlTurnStore(db, 3600), SqlSessionStore(db, 3600), db.dialect, db=db)
    finally:
        await db.dispose()
