"""SQLite databases with the schema in place, copied from one migrated file per worker.

Migrating a new SQLite database costs ~55 ms of CPU, and the suite makes hundreds of them
(one per test); a copy of a file migrated once per worker costs well under a millisecond.
PostgreSQL needs no such thing: each worker has one database for all its tests (users
keep them apart). The tests of migrations make their own empty databases, never these.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from aichat_backend.config import Settings
from aichat_backend.store.database import SCHEMA_REVISION, Database


async def _migrate(url: str) -> None:
    db = Database(Settings(database_url=url))
    try:
        await db.migrate()
        assert await db.at_newest_revision()
    finally:
        await db.dispose()


class SqliteTemplate:
    """A SQLite file migrated once; ``copy_to`` gives each test its own copy."""

    def __init__(self, folder: Path) -> None:
        self._file = folder / f"template-{SCHEMA_REVISION}.db"
        asyncio.run(_migrate(f"sqlite:///{self._file}"))
        # Closed: no write-ahead log is left beside it, so the file alone is the database.
        assert not self._file.with_name(self._file.name + "-wal").exists()

    def copy_to(self, path: Path) -> str:
        shutil.copyfile(self._file, path)
        return f"sqlite:///{path}"
